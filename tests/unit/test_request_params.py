"""Sampling/format/reasoning parameters, validation, and the echo a Response carries."""
from __future__ import annotations

import re
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import Response
from openresponses_types import ResponseResource

from proxy.translate.context import ECHO_KEYS
from proxy.translate.errors import InvalidRequest
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.response import response_object
from proxy.translate.validate import model_name
from tests.conformance import _ort_response_view


def tr(body: dict[str, Any], **policy: Any) -> tuple[dict[str, Any], Any]:
    return translate_request({"model": "m", "input": "hi", **body}, TranslationPolicy(**policy), now=1)


def err(body: dict[str, Any], **policy: Any) -> InvalidRequest:
    """The core's refusal (the edge answers it as a 400 invalid_request_error: tests/integration/test_core_edge.py)."""
    with pytest.raises(InvalidRequest) as info:
        translate_request(body, TranslationPolicy(**policy), now=1)
    return info.value


def response_from(ctx: Any) -> dict[str, Any]:
    """The Response the service would send for this context (the real assembler)."""
    return dict(response_object(ctx, status="completed", completed_at=ctx.created_at))


def test_context_basics() -> None:
    chat, ctx = translate_request({"model": "qwen3", "input": "hi"}, TranslationPolicy(), now=1234)
    assert re.fullmatch(r"resp_[0-9a-f]{32}", ctx.response_id)
    assert ctx.created_at == 1234 and ctx.model == "qwen3" and ctx.stream is False
    assert tuple(ctx.echo) == ECHO_KEYS
    assert ctx.echo == {
        "previous_response_id": None, "instructions": None, "tools": [], "tool_choice": "auto",
        "truncation": "disabled", "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "top_logprobs": 0, "temperature": 1.0,
        "reasoning": {"effort": None, "summary": None}, "max_output_tokens": None, "max_tool_calls": None,
        "store": True, "background": False, "service_tier": "auto", "metadata": {}, "safety_identifier": None,
        "prompt_cache_key": None, "prompt_cache_retention": None, "user": None,
    }
    assert chat == {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                    "stream_options": {"include_usage": True}}
    assert ctx.custom_tools == frozenset() and ctx.namespaced == {} and ctx.allowed_tools is None
    assert ctx.include_encrypted_reasoning is False and ctx.include_logprobs is False and ctx.warnings == []
    _, ctx2 = translate_request({"model": "qwen3", "input": "hi", "stream": True}, TranslationPolicy())
    assert ctx2.stream is True and ctx2.response_id != ctx.response_id and ctx2.created_at > 1_600_000_000


def test_sampling_params_forwarded_and_echoed() -> None:
    chat, ctx = tr({"temperature": 0.2, "top_p": 0.9, "presence_penalty": -1, "frequency_penalty": 1.5,
                    "max_output_tokens": 100, "instructions": "sys", "metadata": {"k": "v"}, "store": False,
                    "truncation": "auto", "max_tool_calls": 3, "safety_identifier": "user-1"})
    assert chat["temperature"] == 0.2 and chat["top_p"] == 0.9
    assert chat["presence_penalty"] == -1 and chat["frequency_penalty"] == 1.5
    assert chat["max_tokens"] == 100 and "max_completion_tokens" not in chat
    assert chat["user"] == "user-1"
    for key in ("store", "metadata", "truncation", "max_tool_calls", "instructions", "safety_identifier"):
        assert key not in chat
    e = ctx.echo
    assert (e["temperature"], e["top_p"], e["presence_penalty"], e["frequency_penalty"]) == (0.2, 0.9, -1, 1.5)
    assert e["max_output_tokens"] == 100 and e["instructions"] == "sys" and e["metadata"] == {"k": "v"}
    assert e["store"] is False and e["truncation"] == "auto" and e["max_tool_calls"] == 3
    assert e["safety_identifier"] == "user-1"


def test_max_tokens_field_policy() -> None:
    chat, _ = tr({"max_output_tokens": 64}, max_tokens_field="max_completion_tokens")
    assert chat["max_completion_tokens"] == 64 and "max_tokens" not in chat


def test_deprecated_user_maps_to_chat_user() -> None:
    chat, ctx = tr({"user": "u-7"})
    assert chat["user"] == "u-7" and ctx.echo["safety_identifier"] is None


def test_user_is_echoed_as_sent_beside_safety_identifier() -> None:
    """OpenAI's Response carries ``user`` (null when not sent); it was taken and never echoed."""
    _, ctx = tr({"user": "u-7"})
    assert ctx.echo["user"] == "u-7" and response_from(ctx)["user"] == "u-7"
    chat, ctx = tr({"user": "u-7", "safety_identifier": "s-1"})
    assert chat["user"] == "s-1"  # the field that replaces it wins upstream
    assert (ctx.echo["user"], ctx.echo["safety_identifier"]) == ("u-7", "s-1")
    _, ctx = tr({})
    assert response_from(ctx)["user"] is None
    # Checked even beside a safety_identifier (it was not read at all then).
    assert err({"model": "m", "input": "hi", "safety_identifier": "s", "user": 5}).param == "user"


@pytest.mark.parametrize("retention", ["in_memory", "24h"])
def test_prompt_cache_retention_is_echoed_not_forwarded(retention: str) -> None:
    """The SDK's Literal["in_memory", "24h"]: it was ignored (any value, never echoed)."""
    chat, ctx = tr({"prompt_cache_retention": retention, "prompt_cache_key": "k"}, forward_prompt_cache_key=True)
    assert ctx.echo["prompt_cache_retention"] == retention and response_from(ctx)["prompt_cache_retention"] == retention
    assert "prompt_cache_retention" not in chat
    assert tr({})[1].echo["prompt_cache_retention"] is None


@pytest.mark.parametrize("retention", ["in_memory", "24h"])
def test_prompt_cache_retention_is_forwarded_when_configured(retention: str) -> None:
    """OpenAI's Chat Completions takes it (the SDK's CompletionCreateParams.prompt_cache_retention): like
    prompt_cache_key, forwarded for a backend configured to take it (it was never forwarded)."""
    chat, ctx = tr({"prompt_cache_retention": retention}, forward_prompt_cache_retention=True)
    assert chat["prompt_cache_retention"] == retention and ctx.echo["prompt_cache_retention"] == retention
    assert "prompt_cache_key" not in chat  # each field on its own flag
    assert "prompt_cache_retention" not in tr({}, forward_prompt_cache_retention=True)[0]


@pytest.mark.parametrize("bad", ["in-memory", "1h", "", 24, True, {"ttl": "24h"}])
def test_a_prompt_cache_retention_the_sdk_does_not_offer_is_400(bad: Any) -> None:
    e = err({"model": "m", "input": "hi", "prompt_cache_retention": bad})
    assert e.param == "prompt_cache_retention"
    assert "'in_memory', '24h'" in e.message


def test_top_level_verbosity_is_read_as_text_verbosity() -> None:
    """Chat Completions' top-level ``verbosity`` (the Responses API's is ``text.verbosity``) was
    ignored, like every unknown parameter: taken, never forwarded or echoed. It has a Responses
    home, so it is read there when ``text.verbosity`` is absent: validated, forwarded by the same
    policy and echoed as ``text.verbosity``."""
    chat, ctx = tr({"verbosity": "low"})
    assert ctx.echo["text"] == {"format": {"type": "text"}, "verbosity": "low"} and "verbosity" not in chat
    chat, ctx = tr({"verbosity": "high", "text": {"format": {"type": "json_object"}}}, forward_verbosity=True)
    assert chat["verbosity"] == "high" and ctx.echo["text"] == {"format": {"type": "json_object"}, "verbosity": "high"}
    chat, ctx = tr({"verbosity": "high", "text": {"verbosity": "low"}}, forward_verbosity=True)
    assert chat["verbosity"] == "low" and ctx.echo["text"]["verbosity"] == "low"  # the Responses field wins
    e = err({"model": "m", "input": "hi", "verbosity": "loud"})
    assert e.param == "verbosity" and "'low', 'medium', 'high'" in e.message


def test_an_absent_verbosity_or_reasoning_is_echoed_as_openai_shows_it() -> None:
    """OpenAI's Response always has ``text.verbosity`` (``medium``, the spec's "the model's
    default", when not requested) and a ``reasoning`` object (null fields when not requested);
    the echo had no verbosity and a null ``reasoning``. Nothing is sent upstream for either."""
    chat, ctx = tr({"text": {"format": {"type": "text"}}})
    assert ctx.echo["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert ctx.echo["reasoning"] == {"effort": None, "summary": None} and not ctx.reasoning_as_summary
    assert "verbosity" not in chat and "reasoning_effort" not in chat
    chat, _ = tr({}, forward_verbosity=True)
    assert "verbosity" not in chat


def test_sampling_numbers_are_echoed_as_numbers_openai_writes() -> None:
    """A request's integer 0 or 1 is echoed 0.0 / 1.0, as OpenAI writes its floats (it went back as 1)."""
    chat, ctx = tr({"temperature": 0, "top_p": 1, "presence_penalty": -2, "frequency_penalty": 2})
    assert chat["temperature"] == 0 and type(chat["temperature"]) is int  # upstream as sent
    for key, want in (("temperature", 0.0), ("top_p", 1.0), ("presence_penalty", -2.0), ("frequency_penalty", 2.0)):
        assert ctx.echo[key] == want and type(ctx.echo[key]) is float, key


def test_a_safety_identifier_of_openais_length_is_taken() -> None:
    """OpenAI takes 128 characters (a SHA-512 hex digest of a user name); the spec says 64."""
    digest = "ab" * 64
    chat, ctx = tr({"safety_identifier": digest})
    assert chat["user"] == digest and ctx.echo["safety_identifier"] == digest
    chat, _ = tr({"user": digest})
    assert chat["user"] == digest


def test_logprobs() -> None:
    chat, ctx = tr({"top_logprobs": 5})
    assert chat["logprobs"] is True and chat["top_logprobs"] == 5 and ctx.include_logprobs and ctx.echo["top_logprobs"] == 5
    chat, ctx = tr({"include": ["message.output_text.logprobs"]})
    assert chat["logprobs"] is True and "top_logprobs" not in chat and ctx.include_logprobs
    chat, ctx = tr({"top_logprobs": 0, "include": ["reasoning.encrypted_content"]})
    assert "logprobs" not in chat and not ctx.include_logprobs and ctx.include_encrypted_reasoning


def test_text_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}, "required": ["b", "a"],
              "additionalProperties": False}
    chat, ctx = tr({"text": {"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True,
                                        "description": "A thing"}, "verbosity": "high"}})
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True, "description": "A thing"}}
    assert list(chat["response_format"]["json_schema"]["schema"]["properties"]) == ["b", "a"]
    assert "verbosity" not in chat
    assert ctx.echo["text"] == {"format": {"type": "json_schema", "name": "thing", "description": "A thing",
                                           "schema": schema, "strict": True}, "verbosity": "high"}
    chat, ctx = tr({"text": {"format": {"type": "json_schema", "name": "t", "schema": schema}}})
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
    assert ctx.echo["text"]["format"]["strict"] is False


def test_text_format_json_object_text_and_verbosity_policy() -> None:
    chat, ctx = tr({"text": {"format": {"type": "json_object"}}})
    assert chat["response_format"] == {"type": "json_object"}
    assert ctx.echo["text"] == {"format": {"type": "json_object"}, "verbosity": "medium"}
    chat, ctx = tr({"text": {"format": {"type": "text"}, "verbosity": "low"}}, forward_verbosity=True)
    assert "response_format" not in chat and chat["verbosity"] == "low"
    assert ctx.echo["text"] == {"format": {"type": "text"}, "verbosity": "low"}


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh", "max"])
def test_reasoning_effort_passes_through(effort: str) -> None:
    chat, ctx = tr({"reasoning": {"effort": effort, "summary": "detailed"}})
    assert chat["reasoning_effort"] == effort
    assert ctx.echo["reasoning"] == {"effort": effort, "summary": "detailed"}


def test_reasoning_summary_only_is_echoed_not_sent() -> None:
    chat, ctx = tr({"reasoning": {"summary": "auto"}})
    assert "reasoning_effort" not in chat and ctx.echo["reasoning"] == {"effort": None, "summary": "auto"}
    _, ctx = tr({"reasoning": {"generate_summary": "concise"}})
    assert ctx.echo["reasoning"]["summary"] == "concise"


@pytest.mark.parametrize(
    ("reasoning", "as_summary"),
    [
        (None, False),
        ({"effort": "high"}, False),
        ({"effort": "high", "summary": None}, False),
        ({"summary": "auto"}, True),
        ({"effort": "low", "summary": "concise"}, True),
        ({"summary": "detailed"}, True),
        ({"generate_summary": "auto"}, True),  # deprecated spelling
    ],
)
def test_reasoning_summary_switches_the_stream_to_summaries(reasoning: Any, as_summary: bool) -> None:
    body = {} if reasoning is None else {"reasoning": reasoning}
    _, ctx = tr(body)
    assert ctx.reasoning_as_summary is as_summary


def test_policy_flags_forward_service_tier_and_prompt_cache_key() -> None:
    body = {"service_tier": "flex", "prompt_cache_key": "k1"}
    chat, ctx = tr(body)
    assert "service_tier" not in chat and "prompt_cache_key" not in chat
    assert ctx.echo["service_tier"] == "flex" and ctx.echo["prompt_cache_key"] == "k1"
    chat, _ = tr(body, forward_service_tier=True, forward_prompt_cache_key=True)
    assert chat["service_tier"] == "flex" and chat["prompt_cache_key"] == "k1"


def test_accepted_and_ignored_fields() -> None:
    chat, ctx = tr({"client_metadata": {"x": "y"}, "stream_options": {"include_obfuscation": False}, "background": False,
                    "previous_response_id": None, "conversation": None, "include": ["reasoning.encrypted_content"]})
    assert set(chat) == {"model", "messages", "stream", "stream_options"}
    assert chat["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
def test_stateful_features_are_refused_clearly(body: dict[str, Any], param: str) -> None:
    e = err({"model": "m", "input": "hi", **body})
    assert e.param == param
    assert "not supported" in e.message


@pytest.mark.parametrize(
    ("model", "ok"),
    [("gpt-4o", True), ("org/model:q4_K_M", True), ("x" * 256, True), ("", False), ("x" * 257, False),
     ("my model", False), ("m\n", False), ("m\x00", False), ("\tm", False), (5, False), (None, False), (True, False)],
)
def test_model_validation(model: Any, ok: bool) -> None:
    body: dict[str, Any] = {"input": "hi"} if model is None else {"model": model, "input": "hi"}
    if ok:
        assert translate_request(body, TranslationPolicy())[0]["model"] == model
    else:
        assert err(body).param == "model"


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("temperature", 2.01), ("temperature", -0.1), ("temperature", True), ("temperature", "1"), ("temperature", float("nan")),
        ("top_p", 1.5), ("top_p", -1), ("top_p", False),
        ("presence_penalty", 2.5), ("presence_penalty", -3), ("frequency_penalty", "0"), ("frequency_penalty", 9),
        ("max_output_tokens", 15), ("max_output_tokens", 100.0), ("max_output_tokens", True), ("max_output_tokens", "100"),
        ("max_tool_calls", 0), ("top_logprobs", 21), ("top_logprobs", -1), ("top_logprobs", 1.5),
        ("stream", "true"), ("stream", 1), ("store", "no"), ("parallel_tool_calls", "yes"), ("background", "no"),
        ("truncation", "sometimes"), ("service_tier", "gold"), ("instructions", ["x"]), ("include", "x"),
        ("safety_identifier", "x" * 129), ("prompt_cache_key", "k" * 65), ("user", 5), ("user", "u" * 129),
        ("metadata", []), ("client_metadata", "x"), ("stream_options", 1),
    ],
)
def test_param_validation(key: str, bad: Any) -> None:
    e = err({"model": "m", "input": "hi", key: bad})
    assert e.param == key
    assert key in e.message


def test_error_message_says_what_to_fix() -> None:
    assert err({"model": "m", "input": "hi", "temperature": 3.5}).message == (
        "Invalid 'temperature': expected a number between 0 and 2, got 3.5."
    )
    assert "16" in err({"model": "m", "input": "hi", "max_output_tokens": 8}).message


def test_boundaries_are_accepted() -> None:
    chat, _ = tr({"temperature": 0, "top_p": 1, "presence_penalty": -2, "frequency_penalty": 2,
                  "max_output_tokens": 16, "top_logprobs": 20, "max_tool_calls": 1, "stream": None})
    assert chat["temperature"] == 0 and chat["max_tokens"] == 16 and chat["top_logprobs"] == 20


def test_metadata_limits() -> None:
    _, ctx = tr({"metadata": {f"k{i}": "v" * 512 for i in range(16)}})
    assert len(ctx.echo["metadata"]) == 16
    assert err({"model": "m", "input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}).param == "metadata"
    assert err({"model": "m", "input": "hi", "metadata": {"k" * 65: "v"}}).param == "metadata"
    assert err({"model": "m", "input": "hi", "metadata": {"k": "v" * 513}}).param == "metadata"
    assert err({"model": "m", "input": "hi", "metadata": {"k": 1}}).param == "metadata"


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("json", "text"),
        ({"format": "json_object"}, "text.format"),
        ({"format": {"type": "xml"}}, "text.format.type"),
        ({"format": {}}, "text.format.type"),
        ({"format": {"type": "json_schema", "schema": {}}}, "text.format.name"),
        ({"format": {"type": "json_schema", "name": "bad name!", "schema": {}}}, "text.format.name"),
        ({"format": {"type": "json_schema", "name": "n"}}, "text.format.schema"),
        ({"format": {"type": "json_schema", "name": "n", "schema": "{}"}}, "text.format.schema"),
        ({"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": "yes"}}, "text.format.strict"),
        ({"verbosity": "loud"}, "text.verbosity"),
    ],
)
def test_text_validation(text: Any, param: str) -> None:
    assert err({"model": "m", "input": "hi", "text": text}).param == param


@pytest.mark.parametrize(
    ("reasoning", "param"),
    [("high", "reasoning"), ({"effort": "extreme"}, "reasoning.effort"), ({"summary": "long"}, "reasoning.summary")],
)
def test_reasoning_validation(reasoning: Any, param: str) -> None:
    assert err({"model": "m", "input": "hi", "reasoning": reasoning}).param == param


@pytest.mark.parametrize("body", [None, [], "text", 5])
def test_body_must_be_object(body: Any) -> None:
    assert err(body).code == "invalid_body"


_ECHO_BODIES: list[dict[str, Any]] = [
    {},
    {"instructions": "x", "temperature": 0.5, "top_p": 0.5, "max_output_tokens": 32, "max_tool_calls": 2,
     "metadata": {"a": "b"}, "store": False, "truncation": "auto", "service_tier": "flex", "top_logprobs": 3,
     "safety_identifier": "s", "prompt_cache_key": "p", "parallel_tool_calls": False,
     "reasoning": {"effort": "low", "summary": "auto"}, "text": {"format": {"type": "json_object"}, "verbosity": "low"}},
    {"tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
               {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
               {"type": "namespace", "name": "ns", "description": "d", "tools": [{"type": "function", "name": "g"}]},
               {"type": "web_search"}],
     "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}},
    {"tools": [{"type": "custom", "name": "c"}], "tool_choice": {"type": "custom", "name": "c"}},
    {"tools": [{"type": "function", "name": "f"}], "tool_choice": "required", "reasoning": {"effort": "xhigh"}},
]


@pytest.mark.parametrize("body", _ECHO_BODIES)
def test_echo_validates_against_both_response_models(body: dict[str, Any]) -> None:
    _, ctx = tr(body)
    resource = response_from(ctx)
    # Custom and namespace tools, and a choice naming a custom tool, exist only in OpenAI's
    # types (tests/conformance.py, exception 4).
    ResponseResource.model_validate(_ort_response_view(resource))
    Response.model_validate(resource)


def test_json_schema_echo_validates_against_openai_response() -> None:
    # The Open Responses spec (2026-04-24) types ResponseResource.text.format.schema
    # as null; we echo the request's schema like OpenAI does, so only the
    # openai model is checked here.
    _, ctx = tr({"text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}}})
    Response.model_validate(response_from(ctx))


@given(
    temperature=st.none() | st.floats(0, 2),
    top_p=st.none() | st.floats(0, 1),
    penalty=st.none() | st.floats(-2, 2),
    max_out=st.none() | st.integers(16, 10**6),
    top_logprobs=st.none() | st.integers(0, 20),
    effort=st.none() | st.sampled_from(["none", "low", "medium", "high", "xhigh"]),
    store=st.none() | st.booleans(),
)
def test_any_valid_params_give_a_valid_echo(temperature, top_p, penalty, max_out, top_logprobs, effort, store) -> None:
    body = {"temperature": temperature, "top_p": top_p, "presence_penalty": penalty, "frequency_penalty": penalty,
            "max_output_tokens": max_out, "top_logprobs": top_logprobs, "store": store,
            "reasoning": None if effort is None else {"effort": effort}}
    chat, ctx = tr(body)
    resource = response_from(ctx)
    ResponseResource.model_validate(resource)
    Response.model_validate(resource)
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        assert (key in chat) == (body[key] is not None)


def test_model_name_refuses_exactly_whitespace_and_control_characters() -> None:
    """A name is refused iff it holds whitespace or an unprintable character, for every code point
    of the Basic Multilingual Plane and every whitespace character beyond it
    (``validate.model_name`` looks for the space alone among printable characters)."""
    points = set(range(0x10000)) - set(range(0xD800, 0xE000))  # (no lone surrogate in decoded JSON)
    points |= {i for i in range(0x10000, sys.maxunicode + 1) if chr(i).isspace()}
    wrong = []
    for c in map(chr, sorted(points)):
        refused = c.isspace() or not c.isprintable()
        try:
            model_name({"model": f"a{c}b"})
        except InvalidRequest as exc:
            assert exc.param == "model"
            if not refused:
                wrong.append(c)
        else:
            if refused:
                wrong.append(c)
    assert not wrong, [hex(ord(c)) for c in wrong[:20]]
    assert all(c.isspace() and not model_ok(c) for c in "\t\n \u00a0\u2028\u3000")


def model_ok(c: str) -> bool:
    try:
        model_name({"model": f"a{c}b"})
    except InvalidRequest:
        return False
    return True
