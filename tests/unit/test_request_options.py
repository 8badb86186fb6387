"""Every request parameter of the pinned openai SDK is read, and OpenAI's newer options
(proxy.translate.options) are checked, forwarded, echoed or refused."""
from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import response_create_params

from proxy.translate.errors import InvalidRequest
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.response import response_object
from tests.conformance import OPTION_KEYS, SENT_KEYS, check_response

SDK_PARAMS = sorted(set(response_create_params.ResponseCreateParamsBase.__annotations__) | {"stream"})
USAGE = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
         "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
         "output_tokens_details": {"reasoning_tokens": 0}}


def tr(body: dict[str, Any], **policy: Any) -> tuple[dict[str, Any], Any]:
    return translate_request({"model": "m", "input": "hi", **body}, TranslationPolicy(**policy), now=1,
                             background_mode=True)


def err(body: dict[str, Any], **policy: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        tr(body, **policy)
    return info.value


def completed(ctx: Any) -> dict[str, Any]:
    return check_response(dict(response_object(ctx, status="completed", completed_at=1, usage=USAGE)))


@pytest.mark.parametrize("param", SDK_PARAMS)
def test_every_request_parameter_of_the_sdk_is_read(param: str) -> None:
    """A wrong-typed value of any field the SDK's ResponseCreateParams declares is a 400 naming it:
    none is ignored as an unknown field would be (context_management, prompt_cache_options,
    moderation, background_options, image and access_programs were, whatever they held). A field
    a newer SDK adds fails here until someone decides what it means on a chat backend."""
    e = err({param: [True]})
    assert e.param is not None and (e.param == param or e.param.startswith((param + ".", param + "["))), e.param


def test_the_new_options_are_accepted_when_valid_and_echo_parses() -> None:
    body = {
        "access_programs": {"cyber": "standard"},
        "background_options": {"completion_window": "8h", "continuation_id": "batch-7"},
        "background": True,
        "context_management": [{"type": "compaction", "compact_threshold": 200_000}],
        "image": {"context_compression": "auto"},
        "prompt_cache_options": {"mode": "explicit", "ttl": "30m", "comparison_response_id": "resp_1", "prewarm": False},
    }
    chat, ctx = tr(body)
    assert not {"access_programs", "background_options", "context_management", "image", "prompt_cache_options",
                "moderation"} & set(chat)  # FORWARD_PROMPT_CACHE_OPTIONS is off by default
    response = completed(ctx)
    assert list(response)[len(SENT_KEYS):] == list(OPTION_KEYS)
    assert response["access_programs"] == {"cyber": "standard"}
    assert response["image"] == {"context_compression": "disabled"}  # the policy that applied: none compresses
    assert response["prompt_cache_options"] == {"mode": "explicit", "ttl": "30m", "comparison_response_id": "resp_1"}
    assert response["prompt_cache_diagnostics"] == {"type": "unavailable"}
    assert any("context_management" in w for w in ctx.warnings)


def test_a_request_without_them_shows_none_of_their_keys() -> None:
    _, ctx = tr({"access_programs": None, "image": None, "prompt_cache_options": None, "context_management": None,
                 "moderation": None, "background_options": None})
    assert list(completed(ctx)) == list(SENT_KEYS) and ctx.warnings == []


def test_prompt_cache_options_are_forwarded_when_configured_and_echoed_with_their_defaults() -> None:
    """OpenAI's Chat Completions takes mode and a ttl of 30m (the SDK's chat PromptCacheOptions)."""
    chat, ctx = tr({"prompt_cache_options": {"mode": "implicit", "ttl": "30m"}}, forward_prompt_cache_options=True)
    assert chat["prompt_cache_options"] == {"mode": "implicit", "ttl": "30m"}
    chat, ctx = tr({"prompt_cache_options": {"ttl": "12h"}}, forward_prompt_cache_options=True)
    assert "prompt_cache_options" not in chat and any("12h" in w for w in ctx.warnings)
    assert completed(ctx)["prompt_cache_options"] == {"mode": "implicit", "ttl": "12h", "comparison_response_id": None}
    chat, ctx = tr({"prompt_cache_options": {}})
    assert completed(ctx)["prompt_cache_options"] == {"mode": "implicit", "ttl": "30m", "comparison_response_id": None}
    assert "prompt_cache_diagnostics" not in completed(ctx)


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"moderation": {"model": "omni-moderation-latest"}}, "moderation", "unsupported_parameter"),
    ({"moderation": {"model": "omni-moderation-latest", "policy": {"input": {"mode": "block"}}}}, "moderation",
     "unsupported_parameter"),
    ({"prompt_cache_options": {"prewarm": True}}, "prompt_cache_options.prewarm", "unsupported_value"),
    ({"image": {"context_compression": "enabled"}}, "image.context_compression", "unsupported_value"),
    ({"access_programs": {"cyber": "daybreak_red"}}, "access_programs.cyber", "permission_denied"),
    ({"access_programs": {"cyber": "daybreak_blue"}}, "access_programs.cyber", "permission_denied"),
])
def test_what_cannot_be_honoured_and_would_mislead_is_refused(body: dict[str, Any], param: str, code: str) -> None:
    e = err(body)
    assert (e.param, e.code) == (param, code), e.message
    # The SDK's AccessPrograms.cyber: "Requests that require unavailable Daybreak access return 403".
    assert e.status == (403 if param == "access_programs.cyber" else 400)
    assert "this server" in e.message  # says why, and what to send instead


@pytest.mark.parametrize(("body", "param"), [
    ({"access_programs": "standard"}, "access_programs"),
    ({"access_programs": {"cyber": "gold"}}, "access_programs.cyber"),
    ({"background_options": {"completion_window": "1h"}}, "background_options.completion_window"),
    ({"background_options": {"continuation_id": 7}}, "background_options.continuation_id"),
    ({"background_options": {"completion_window": "2h"}}, "background_options.completion_window"),  # not background
    ({"background": True, "stream": True, "background_options": {"completion_window": "2h"}},
     "background_options.completion_window"),
    ({"background": True, "service_tier": "flex", "background_options": {"completion_window": "8h"}},
     "background_options.completion_window"),
    ({"context_management": {"type": "compaction"}}, "context_management"),
    ({"context_management": ["compaction"]}, "context_management[0]"),
    ({"context_management": [{}]}, "context_management[0].type"),
    ({"context_management": [{"type": "truncate"}]}, "context_management[0].type"),
    ({"context_management": [{"type": "compaction", "compact_threshold": "big"}]},
     "context_management[0].compact_threshold"),
    ({"context_management": [{"type": "compaction", "compact_threshold": -1}]},
     "context_management[0].compact_threshold"),
    ({"image": {"context_compression": "maybe"}}, "image.context_compression"),
    ({"moderation": {}}, "moderation.model"),
    ({"moderation": {"model": 1}}, "moderation.model"),
    ({"moderation": {"model": "m", "policy": []}}, "moderation.policy"),
    ({"moderation": {"model": "m", "policy": {"output": {"mode": "warn"}}}}, "moderation.policy.output.mode"),
    ({"moderation": {"model": "m", "policy": {"input": {}}}}, "moderation.policy.input.mode"),
    ({"prompt_cache_options": []}, "prompt_cache_options"),
    ({"prompt_cache_options": {"mode": "auto"}}, "prompt_cache_options.mode"),
    ({"prompt_cache_options": {"ttl": "24h"}}, "prompt_cache_options.ttl"),
    ({"prompt_cache_options": {"prewarm": "yes"}}, "prompt_cache_options.prewarm"),
    ({"prompt_cache_options": {"comparison_response_id": 5}}, "prompt_cache_options.comparison_response_id"),
])
def test_a_malformed_option_is_400_naming_it(body: dict[str, Any], param: str) -> None:
    assert err(body).param == param


def test_background_windows_that_need_nothing_more_are_taken() -> None:
    for body in ({"background_options": {"completion_window": "soonest"}},
                 {"background": True, "service_tier": "default", "background_options": {"completion_window": "2h"}}):
        _, ctx = tr(body)
        assert list(completed(ctx)) == list(SENT_KEYS)


def test_a_compaction_threshold_of_zero_is_taken() -> None:
    """The SDK types ``compact_threshold`` as any integer (the Agents SDK's compaction policies can
    send 0): only a negative one, or a non-integer, is a 400."""
    for threshold in (0, 1, None):
        tr({"context_management": [{"type": "compaction", "compact_threshold": threshold}]})
