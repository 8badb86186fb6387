"""Parameter values the pinned openai SDK's own types admit, sent through the SDK to the real
service: each must be accepted (never a 400 for a value the client library offers, except an
option this server cannot honour and whose silent loss would mislead: those are refused, naming
it, at the end of this file), reach the backend where the proxy forwards it, and come back echoed
as OpenAI echoes it.

Every answer is validated by tests/conformance.py (through the ``openai_client`` tap).
"""
from __future__ import annotations

import typing
from typing import Any

import openai
import pytest
from openai.types.responses.service_tier import ServiceTier
from openai.types.shared.reasoning_effort import ReasoningEffort

from tests.conftest import API_KEY


def _literals(alias: object) -> list[str]:
    """The string values of an ``Optional[Literal[...]]`` alias of the SDK."""
    (lit,) = [a for a in typing.get_args(alias) if a is not type(None)]
    return list(typing.get_args(lit))


def _answer(client: Any, stream: bool, **kwargs: Any) -> Any:
    """The final Response of a JSON ``create``, or of the ``responses.stream`` helper."""
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as events:
        return events.get_final_response()


def test_the_values_once_refused_are_among_those_tested():
    # The tests below take their values from the SDK; this keeps them from silently losing
    # the ones that were 400s ('max'; 'fast', 'ultrafast') should the SDK's aliases change shape.
    assert {"minimal", "xhigh", "max"} <= set(_literals(ReasoningEffort))
    assert {"flex", "priority", "fast", "ultrafast"} <= set(_literals(ServiceTier))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("effort", _literals(ReasoningEffort))
def test_every_reasoning_effort_of_the_sdk_is_forwarded_and_echoed(openai_client, mock, effort, stream):
    model = f"sdk-effort-{effort}"
    mock.script(model, {"text": "ok"})
    response = _answer(openai_client, stream, model=model, input="hi", reasoning={"effort": effort})
    assert response.status == "completed" and response.output_text == "ok"
    assert response.reasoning.effort == effort
    assert mock.requests(model)[-1]["body"]["reasoning_effort"] == effort


# What OpenAI's ended Response shows for each requested tier, the tier that served it: `auto` is
# the project's tier, `default` on a normal project, and `fast` is served as `priority` (the SDK's
# own docstring: "Unless otherwise configured, the Project will use 'default'", "The response will
# show service_tier=priority regardless of if you specify service_tier=fast or priority").
# `response.created` shows the requested one, as OpenAI's stream does (`auto` when none was).
_TIER_ECHO = {"auto": "default", "fast": "priority"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("tier", _literals(ServiceTier))
def test_every_service_tier_of_the_sdk_is_accepted_and_echoed(openai_client, mock, tier, stream):
    model = f"sdk-tier-{tier}"
    mock.script(model, {"text": "ok"})
    response = _answer(openai_client, stream, model=model, input="hi", service_tier=tier)
    assert response.status == "completed" and response.output_text == "ok"
    assert response.service_tier == _TIER_ECHO.get(tier, tier)
    assert "service_tier" not in mock.requests(model)[-1]["body"]  # FORWARD_SERVICE_TIER is off


@pytest.mark.parametrize("tier", [None, "auto", "flex", "fast"])
def test_the_stream_shows_the_requested_tier_until_the_served_one(openai_client, mock, tier):
    """OpenAI's ``response.created`` / ``response.in_progress`` show the requested tier (``auto``
    when none was), ``response.completed`` the one that served it. An absent tier was shown as
    ``default`` from the start, and ``auto`` as ``auto`` to the end."""
    mock.script("sdk-tier-stream", {"text": "ok"})
    kwargs: dict[str, Any] = {} if tier is None else {"service_tier": tier}
    with openai_client.responses.stream(model="sdk-tier-stream", input="hi", **kwargs) as events:
        seen = {ev.type: ev.response.service_tier for ev in events if hasattr(ev, "response")}
    requested = tier or "auto"
    assert seen == {"response.created": requested, "response.in_progress": requested,
                    "response.completed": _TIER_ECHO.get(requested, requested)}
    response = openai_client.responses.create(model="sdk-tier-stream", input="hi", **kwargs)
    assert response.service_tier == _TIER_ECHO.get(requested, requested)


def test_a_forwarded_fast_tier_reaches_the_backend_as_sent(proxy_factory, mock):
    forwarding = proxy_factory(FORWARD_SERVICE_TIER="true")
    mock.script("sdk-tier-fwd", {"text": "ok"})
    with openai.OpenAI(base_url=forwarding.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        for tier in ("fast", "ultrafast"):
            response = client.responses.create(model="sdk-tier-fwd", input="hi", service_tier=tier)
            assert response.service_tier == _TIER_ECHO.get(tier, tier)
            assert mock.requests("sdk-tier-fwd")[-1]["body"]["service_tier"] == tier


# --------------------------------------------------------------- the echo of every request parameter

_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
          "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
_NAMESPACE = {"type": "namespace", "name": "crm", "description": "CRM tools.", "tools": [
    {"type": "function", "name": "lookup", "description": "Find a customer.", "parameters": _SCHEMA, "strict": True},
    {"type": "custom", "name": "note", "description": "Write a note.", "format": {"type": "text"}},
]}
_FUNCTION = {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": _SCHEMA, "strict": False}
# Every parameter the Response echoes, each with a value other than its default.
_EVERYTHING: dict[str, Any] = {
    "instructions": "Be brief.",
    "max_output_tokens": 64,
    "max_tool_calls": 3,
    "metadata": {"run": "7"},
    "parallel_tool_calls": False,
    "reasoning": {"effort": "low", "summary": "concise"},
    "store": False,
    "temperature": 0.25,
    "top_p": 0.5,
    "top_logprobs": 2,
    "truncation": "auto",
    "text": {"format": {"type": "json_schema", "name": "answer", "schema": _SCHEMA, "strict": True}, "verbosity": "low"},
    "tools": [_FUNCTION, _PATCH, _NAMESPACE, {"type": "web_search"}],
    "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [
        {"type": "function", "name": "get_weather"}, {"type": "custom", "name": "apply_patch"}]},
    "service_tier": "flex",
    "safety_identifier": "user-hash-1",
    "prompt_cache_key": "cache-1",
    "prompt_cache_retention": "24h",
    "user": "end-user-1",
    # The spec's, not the SDK's create() keywords.
    "extra_body": {"presence_penalty": 0.5, "frequency_penalty": -0.5},
}
# What OpenAI's Response echoes for it: the values as sent, every field of each type present (the
# dropped built-in web_search, which no model saw, is not among the tools).
_EVERYTHING_ECHO: dict[str, Any] = {
    **{k: v for k, v in _EVERYTHING.items() if k not in ("tools", "text", "extra_body")},
    **_EVERYTHING["extra_body"],
    "previous_response_id": None,
    "background": False,
    "text": {"format": {"type": "json_schema", "name": "answer", "description": None, "schema": _SCHEMA, "strict": True},
             "verbosity": "low"},
    "tools": [_FUNCTION, _PATCH, {**_NAMESPACE, "tools": [{**_NAMESPACE["tools"][0]}, _NAMESPACE["tools"][1]]}],
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_echoed_parameter_comes_back_as_openai_echoes_it(openai_client, mock, stream):
    """One request setting every echoed parameter to a value that is not its default: the Response
    the SDK parses (``to_dict``: exactly the keys the JSON had) echoes each as OpenAI does — in
    ``response.created`` too, where only the service tier is the requested one (here the same)."""
    mock.script("sdk-echo-all", {"text": '{"a": 1}'})
    if stream:
        with openai_client.responses.stream(model="sdk-echo-all", input="hi", **_EVERYTHING) as events:
            snapshots = [ev.response for ev in events if ev.type in ("response.created", "response.in_progress")]
            final = events.get_final_response()
        assert len(snapshots) == 2
        for snapshot in snapshots:
            assert {k: snapshot.to_dict()[k] for k in _EVERYTHING_ECHO} == _EVERYTHING_ECHO
    else:
        final = openai_client.responses.create(model="sdk-echo-all", input="hi", **_EVERYTHING)
    assert final.status == "completed"
    got = final.to_dict()
    assert {k: got[k] for k in _EVERYTHING_ECHO} == _EVERYTHING_ECHO
    assert "conversation" not in got and "prompt" not in got


def test_a_request_that_sets_nothing_is_echoed_with_openais_defaults(openai_client, mock):
    """The keys OpenAI's Response always has, with what it shows for a request that set none: ``user``
    and ``prompt_cache_retention`` null (they were missing), ``text.verbosity`` ``medium`` (missing),
    ``reasoning`` an object of nulls (was null), the served tier ``default``."""
    mock.script("sdk-echo-none", {"text": "ok"})
    raw = openai_client.responses.with_raw_response.create(model="sdk-echo-none", input="hi")
    body = raw.http_response.json()
    assert {k: body[k] for k in ("user", "prompt_cache_retention", "text", "reasoning", "service_tier", "tools",
                                 "tool_choice", "temperature", "top_p", "top_logprobs", "truncation", "metadata",
                                 "safety_identifier", "prompt_cache_key", "instructions", "max_output_tokens",
                                 "max_tool_calls", "parallel_tool_calls", "store", "background",
                                 "previous_response_id", "presence_penalty", "frequency_penalty")} == {
        "user": None, "prompt_cache_retention": None, "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "tools": [], "tool_choice": "auto",
        "temperature": 1.0, "top_p": 1.0, "top_logprobs": 0, "truncation": "disabled", "metadata": {},
        "safety_identifier": None, "prompt_cache_key": None, "instructions": None, "max_output_tokens": None,
        "max_tool_calls": None, "parallel_tool_calls": True, "store": True, "background": False,
        "previous_response_id": None, "presence_penalty": 0.0, "frequency_penalty": 0.0,
    }
    assert raw.parse().user is None


def test_a_chained_response_echoes_its_previous_response_id_and_its_own_values(openai_client, mock):
    """``previous_response_id`` is echoed, and nothing of the earlier request's echo carries over
    (instructions, user, retention: OpenAI does not carry instructions over)."""
    mock.script("sdk-echo-chain", {"text": "one"}, {"text": "two"})
    first = openai_client.responses.create(model="sdk-echo-chain", input="hi", instructions="A", user="u-1",
                                           prompt_cache_retention="in_memory")
    second = openai_client.responses.create(model="sdk-echo-chain", input="again", previous_response_id=first.id)
    assert (first.instructions, first.user, first.prompt_cache_retention) == ("A", "u-1", "in_memory")
    assert second.previous_response_id == first.id
    assert (second.instructions, second.user, second.prompt_cache_retention) == (None, None, None)
    assert openai_client.responses.retrieve(first.id).user == "u-1"  # stored as sent


@pytest.mark.parametrize(("param", "value"), [
    ("prompt_cache_retention", "in-memory"), ("prompt_cache_retention", "1h"), ("prompt_cache_retention", 24),
    ("user", 7), ("verbosity", "loud"),
])
def test_a_value_the_sdk_does_not_offer_is_an_openai_shaped_400_naming_it(openai_client, mock, param, value):
    mock.script("sdk-echo-bad", {"text": "never"})
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.responses.create(model="sdk-echo-bad", input="hi", extra_body={param: value})
    assert info.value.status_code == 400 and info.value.param == param
    assert info.value.body["type"] == "invalid_request_error" and param in info.value.body["message"]
    assert mock.requests("sdk-echo-bad") == []


def test_a_top_level_verbosity_is_read_as_text_verbosity(openai_client, mock, proxy_factory):
    """Chat Completions' top-level ``verbosity`` was ignored (neither forwarded nor echoed), as every
    unknown parameter is. It is read as ``text.verbosity`` when that is absent: echoed there, and
    forwarded where ``FORWARD_VERBOSITY`` is on."""
    mock.script("sdk-verbosity", {"text": "ok"}, {"text": "ok"})
    response = openai_client.responses.create(model="sdk-verbosity", input="hi", extra_body={"verbosity": "high"})
    assert response.text.verbosity == "high"
    assert "verbosity" not in mock.requests("sdk-verbosity")[-1]["body"]
    response = openai_client.responses.create(model="sdk-verbosity", input="hi", text={"verbosity": "low"},
                                              extra_body={"verbosity": "high"})
    assert response.text.verbosity == "low"  # the Responses field wins
    forwarding = proxy_factory(FORWARD_VERBOSITY="true")
    mock.script("sdk-verbosity-fwd", {"text": "ok"})
    with openai.OpenAI(base_url=forwarding.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        response = client.responses.create(model="sdk-verbosity-fwd", input="hi", extra_body={"verbosity": "low"})
    assert response.text.verbosity == "low"
    assert mock.requests("sdk-verbosity-fwd")[-1]["body"]["verbosity"] == "low"


def test_custom_tools_are_echoed_as_custom_tools_and_still_called_as_such(openai_client, mock):
    """A custom tool (Codex's apply_patch) was echoed as the function the backend saw, so the SDK
    parsed it as a FunctionTool; it is echoed as the CustomTool the client sent, and its call still
    comes back as a custom_tool_call."""
    mock.script("sdk-custom-echo", {"tool_calls": [{"name": "apply_patch", "arguments": '{"input": "*** Begin"}'}]})
    response = openai_client.responses.create(model="sdk-custom-echo", input="patch it", tools=[_PATCH, _NAMESPACE],
                                              tool_choice={"type": "custom", "name": "apply_patch"})
    assert [type(t).__name__ for t in response.tools] == ["CustomTool", "NamespaceTool"]
    assert [t.to_dict() for t in response.tools] == [_PATCH, _NAMESPACE]
    assert response.tool_choice.to_dict() == {"type": "custom", "name": "apply_patch"}
    assert response.output[-1].type == "custom_tool_call" and response.output[-1].input == "*** Begin"


# --------------------------------------------------------------- the SDK's newer options, built-in choices, strict

_LOOSE = {"type": "function", "name": "lookup", "description": "Find.", "parameters": _SCHEMA}  # no strict
_MCP = {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"}
_OPTIONS: dict[str, Any] = {
    "prompt_cache_options": {"mode": "explicit", "ttl": "30m", "comparison_response_id": "resp_0"},
    "image": {"context_compression": "auto"},
    "access_programs": {"cyber": "standard"},
    "context_management": [{"type": "compaction", "compact_threshold": 100000}],
    "background_options": {"completion_window": "soonest", "continuation_id": "batch-1"},
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_sdks_newer_options_are_taken_and_echoed_as_openai_shows_them(openai_client, mock, stream):
    """The SDK's ResponseCreateParams fields this server ignored whatever they held come back as the
    SDK's Response types them, and none reaches a backend not configured for it; a built-in
    tool_choice is echoed as the auto the backend ran with (its tool was dropped, and the Response's
    tools do not list it), a function tool without strict as strict false (was null)."""
    model = f"sdk-options-{stream}"
    mock.script(model, {"text": "ok"})
    response = _answer(openai_client, stream, model=model, input="hi", tools=[_LOOSE, _MCP],
                       tool_choice={"type": "mcp", "server_label": "deepwiki", "name": "ask_question"}, **_OPTIONS)
    assert response.status == "completed" and response.output_text == "ok"
    assert response.prompt_cache_options.to_dict() == {"mode": "explicit", "ttl": "30m",
                                                        "comparison_response_id": "resp_0"}
    assert response.prompt_cache_diagnostics.type == "unavailable"
    assert response.image.context_compression == "disabled"
    assert response.access_programs.cyber == "standard"
    assert response.tool_choice == "auto"
    assert [t.to_dict() for t in response.tools] == [{**_LOOSE, "strict": False}]
    sent = mock.requests(model)[-1]["body"]
    assert not set(_OPTIONS) & set(sent) and "tool_choice" not in sent
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "lookup", "description": "Find.", "parameters": _SCHEMA}}]  # strict left to the backend


@pytest.mark.parametrize("choice", [{"type": "web_search_preview"}, {"type": "file_search"},
                                    {"type": "computer_use_preview"}, {"type": "image_generation"},
                                    {"type": "code_interpreter"}])
def test_a_builtin_tool_choice_is_echoed_as_the_auto_the_backend_ran_with(openai_client, mock, choice):
    mock.script("sdk-builtin-choice", {"text": "ok"})
    response = openai_client.responses.create(model="sdk-builtin-choice", input="hi", tools=[_FUNCTION, choice],
                                              tool_choice=choice)
    assert response.tool_choice == "auto"
    assert [t.to_dict() for t in response.tools] == [_FUNCTION]
    assert "tool_choice" not in mock.requests("sdk-builtin-choice")[-1]["body"]


def test_a_namespaced_tool_choice_keeps_its_namespace(openai_client, mock):
    mock.script("sdk-ns-choice", {"text": "ok"})
    choice = {"type": "function", "name": "lookup", "namespace": "crm"}
    response = openai_client.responses.create(model="sdk-ns-choice", input="hi", tools=[_NAMESPACE],
                                              extra_body={"tool_choice": choice})
    assert response.tool_choice.to_dict() == choice
    assert mock.requests("sdk-ns-choice")[-1]["body"]["tool_choice"] == {
        "type": "function", "function": {"name": "crm__lookup"}}


def test_prompt_cache_options_reach_a_backend_configured_for_them(proxy_factory, mock):
    forwarding = proxy_factory(FORWARD_PROMPT_CACHE_OPTIONS="true")
    mock.script("sdk-pco-fwd", {"text": "ok"}, {"text": "ok"})
    with openai.OpenAI(base_url=forwarding.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        response = client.responses.create(model="sdk-pco-fwd", input="hi",
                                           prompt_cache_options={"mode": "explicit", "ttl": "30m"})
        assert response.prompt_cache_options.to_dict() == {"mode": "explicit", "ttl": "30m",
                                                            "comparison_response_id": None}
        assert mock.requests("sdk-pco-fwd")[-1]["body"]["prompt_cache_options"] == {"mode": "explicit", "ttl": "30m"}
        client.responses.create(model="sdk-pco-fwd", input="hi", prompt_cache_options={"ttl": "12h"})
        assert "prompt_cache_options" not in mock.requests("sdk-pco-fwd")[-1]["body"]  # chat takes only 30m


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"moderation": {"model": "omni-moderation-latest", "policy": {"input": {"mode": "block"}}}}, "moderation"),
    ({"prompt_cache_options": {"prewarm": True}}, "prompt_cache_options.prewarm"),
    ({"image": {"context_compression": "enabled"}}, "image.context_compression"),
    ({"context_management": [{"type": "truncation"}]}, "context_management[0].type"),
    ({"background_options": {"completion_window": "2h"}}, "background_options.completion_window"),
])
def test_an_option_that_cannot_be_honoured_or_is_malformed_is_a_400_naming_it(openai_client, mock, kwargs, param):
    mock.script("sdk-options-bad", {"text": "never"})
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.responses.create(model="sdk-options-bad", input="hi", **kwargs)
    assert info.value.status_code == 400 and info.value.param == param
    assert info.value.body["type"] == "invalid_request_error" and param.split(".")[0].split("[")[0] in info.value.body["message"]
    assert mock.requests("sdk-options-bad") == []


def test_an_unavailable_access_program_is_a_403(openai_client, mock):
    """As the SDK documents it (AccessPrograms.cyber: "Requests that require unavailable Daybreak
    access return 403"), so the client raises PermissionDeniedError; nothing reaches the backend."""
    mock.script("sdk-daybreak", {"text": "never"})
    with pytest.raises(openai.PermissionDeniedError) as info:
        openai_client.responses.create(model="sdk-daybreak", input="hi", access_programs={"cyber": "daybreak_red"})
    assert info.value.status_code == 403 and info.value.param == "access_programs.cyber"
    assert info.value.body["type"] == "invalid_request_error" and info.value.body["code"] == "permission_denied"
    assert mock.requests("sdk-daybreak") == []
