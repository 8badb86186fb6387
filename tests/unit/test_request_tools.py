"""Responses `tools` / `tool_choice` → chat `tools` / `tool_choice`."""
from __future__ import annotations

from typing import Any

import pytest

from proxy.translate.errors import InvalidRequest
from proxy.translate.request import TranslationPolicy, translate_request

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {"zeta": {"type": "string"}, "city": {"type": "string"}, "alpha": {"type": "integer"}}},
    "strict": True,
}
PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: \"*** Begin Patch\" LF"},
}
NS = {
    "type": "namespace",
    "name": "agents",
    "description": "Sub-agents.",
    "tools": [
        {"type": "function", "name": "spawn", "description": "Spawn", "parameters": {"type": "object", "properties": {}}},
        {"type": "custom", "name": "script", "description": "Run a script"},
    ],
}


def tr(body: dict[str, Any], **policy: Any) -> tuple[dict[str, Any], Any]:
    return translate_request({"model": "m", "input": "hi", **body}, TranslationPolicy(**policy), now=1)


def err(body: dict[str, Any], **policy: Any) -> InvalidRequest:
    """The core's refusal (the edge answers it as a 400 invalid_request_error: tests/integration/test_core_edge.py)."""
    with pytest.raises(InvalidRequest) as info:
        tr(body, **policy)
    return info.value


def test_function_tool_keeps_schema_and_key_order() -> None:
    chat, ctx = tr({"tools": [WEATHER]})
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["parameters"], "strict": True}}]
    assert list(chat["tools"][0]["function"]["parameters"]) == ["type", "required", "properties"]
    assert list(chat["tools"][0]["function"]["parameters"]["properties"]) == ["zeta", "city", "alpha"]
    assert ctx.echo["tools"] == [WEATHER]


def test_minimal_function_tool_echo_has_all_fields() -> None:
    chat, ctx = tr({"tools": [{"type": "function", "name": "f"}]})
    assert chat["tools"] == [{"type": "function", "function": {"name": "f"}}]
    # strict: the non-strict (best effort) mode the backend applies to a tool sent without it, as
    # OpenAI's Response shows a tool it did not make strict (never null: the echo says what applied).
    assert ctx.echo["tools"] == [{"type": "function", "name": "f", "description": None, "parameters": None, "strict": False}]
    assert "strict" not in chat["tools"][0]["function"]  # the backend's own default, unchanged
    _, ctx = tr({"tools": [{"type": "function", "name": "f", "strict": None}, {**WEATHER, "strict": False}]})
    assert [t["strict"] for t in ctx.echo["tools"]] == [False, False]


def test_custom_tool_becomes_function_with_string_input() -> None:
    chat, ctx = tr({"tools": [PATCH]})
    fn = chat["tools"][0]["function"]
    assert fn["name"] == "apply_patch" and fn["description"] == "Edit files with a patch."
    params = fn["parameters"]
    assert params["type"] == "object" and params["required"] == ["input"]
    assert params["properties"]["input"]["type"] == "string"
    desc = params["properties"]["input"]["description"]
    assert "Edit files with a patch." in desc and "lark" in desc and "*** Begin Patch" in desc
    assert ctx.custom_tools == frozenset({"apply_patch"})
    assert ctx.echo["tools"] == [PATCH]  # echoed as the client sent it, as OpenAI does


def test_custom_tool_echo_has_every_field_of_the_sdk_type() -> None:
    """A custom tool is echoed as a custom tool (it was echoed as the function the backend saw,
    which the openai SDK parsed as a FunctionTool named apply_patch): description null when
    absent, format the documented default (text) when absent, a grammar's syntax lark when absent
    (the proxy's reading of it upstream)."""
    _, ctx = tr({"tools": [{"type": "custom", "name": "c"},
                           {"type": "custom", "name": "t", "format": {"type": "text"}},
                           {"type": "custom", "name": "g", "format": {"type": "grammar", "definition": "start: x"}},
                           {"type": "custom", "name": "r", "format": {"type": "grammar", "syntax": "regex",
                                                                      "definition": "[a-z]+"}}]})
    assert ctx.echo["tools"] == [
        {"type": "custom", "name": "c", "description": None, "format": {"type": "text"}},
        {"type": "custom", "name": "t", "description": None, "format": {"type": "text"}},
        {"type": "custom", "name": "g", "description": None,
         "format": {"type": "grammar", "definition": "start: x", "syntax": "lark"}},
        {"type": "custom", "name": "r", "description": None,
         "format": {"type": "grammar", "definition": "[a-z]+", "syntax": "regex"}},
    ]
    assert ctx.custom_tools == frozenset({"c", "t", "g", "r"})


def test_a_grammar_syntax_the_sdk_does_not_know_is_400() -> None:
    """The SDK's Grammar.syntax is 'lark' or 'regex': any other went upstream as a grammar of
    that name, and its echo would have failed the SDK's types."""
    e = err({"tools": [{"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "ebnf",
                                                                   "definition": "x"}}]})
    assert e.param == "tools[0].format.syntax" and "'lark' or 'regex'" in e.message
    e = err({"tools": [{"type": "namespace", "name": "n", "tools": [
        {"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": 1, "definition": "x"}}]}]})
    assert e.param == "tools[0].tools[0].format.syntax"


def test_namespace_tool_is_echoed_as_sent_with_its_tools_under_their_own_names() -> None:
    _, ctx = tr({"tools": [NS, WEATHER]})
    assert ctx.echo["tools"] == [
        {"type": "namespace", "name": "agents", "description": "Sub-agents.", "tools": [
            {"type": "function", "name": "spawn", "description": "Spawn", "parameters": {"type": "object", "properties": {}},
             "strict": False},
            {"type": "custom", "name": "script", "description": "Run a script", "format": {"type": "text"}},
        ]},
        WEATHER,
    ]
    # The SDK's NamespaceTool requires a description: one left out is echoed empty.
    _, ctx = tr({"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "f"}]}]})
    assert ctx.echo["tools"][0]["description"] == ""
    assert err({"tools": [{"type": "namespace", "name": "n", "description": 5, "tools": []}]}).param == "tools[0].description"


def test_namespace_tools_are_flattened() -> None:
    chat, ctx = tr({"tools": [NS, WEATHER]})
    assert [t["function"]["name"] for t in chat["tools"]] == ["agents__spawn", "agents__script", "get_weather"]
    assert ctx.namespaced == {"agents__spawn": ("agents", "spawn"), "agents__script": ("agents", "script")}
    assert ctx.custom_tools == frozenset({"agents__script"})


@pytest.mark.parametrize("builtin", [
    {"type": "web_search"}, {"type": "tool_search", "execution": "client"}, {"type": "file_search", "vector_store_ids": []},
    {"type": "image_generation"}, {"type": "local_shell"}, {"type": "computer_use_preview"}, {"type": "mcp", "server_label": "x"},
    {"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "shell"}, {"type": "apply_patch"},
])
def test_builtin_tools_dropped_with_one_warning_or_rejected(builtin: dict[str, Any]) -> None:
    chat, ctx = tr({"tools": [WEATHER, builtin, {"type": "web_search_preview"}]})
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_weather"]
    assert len(ctx.warnings) == 1 and builtin["type"] in ctx.warnings[0]
    assert [t["name"] for t in ctx.echo["tools"]] == ["get_weather"]
    e = err({"tools": [WEATHER, builtin]}, builtin_tools="reject")
    assert e.param == "tools[1]" and builtin["type"] in e.message


def test_no_upstream_tools_means_no_tool_fields() -> None:
    chat, ctx = tr({"tools": [{"type": "web_search"}], "tool_choice": "required", "parallel_tool_calls": False})
    assert "tools" not in chat and "tool_choice" not in chat and "parallel_tool_calls" not in chat
    assert ctx.echo["tools"] == [] and ctx.echo["tool_choice"] == "required"
    assert ctx.echo["parallel_tool_calls"] is False
    chat, _ = tr({"tools": []})
    assert "tools" not in chat


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_tool_choice_strings_pass_through(choice: str) -> None:
    chat, ctx = tr({"tools": [WEATHER], "tool_choice": choice, "parallel_tool_calls": False})
    assert chat["tool_choice"] == choice and ctx.echo["tool_choice"] == choice
    assert chat["parallel_tool_calls"] is False


def test_tool_choice_function_and_custom() -> None:
    chat, ctx = tr({"tools": [WEATHER, PATCH], "tool_choice": {"type": "function", "name": "get_weather"}})
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert ctx.echo["tool_choice"] == {"type": "function", "name": "get_weather"}
    chat, ctx = tr({"tools": [WEATHER, PATCH], "tool_choice": {"type": "custom", "name": "apply_patch"}})
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    # The SDK's ToolChoiceCustom, as sent (it was echoed as a function choice).
    assert ctx.echo["tool_choice"] == {"type": "custom", "name": "apply_patch"}


def test_tool_choice_namespaced_by_inner_or_flat_name() -> None:
    for choice in ({"type": "function", "name": "spawn"}, {"type": "function", "name": "agents__spawn"},
                   {"type": "function", "name": "spawn", "namespace": "agents"}):
        chat, ctx = tr({"tools": [NS], "tool_choice": choice})
        assert chat["tool_choice"] == {"type": "function", "function": {"name": "agents__spawn"}}
        assert ctx.echo["tool_choice"] == choice  # as the client named it, with its namespace when it gave one


def test_tool_choice_unknown_tool_is_400() -> None:
    e = err({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}})
    assert e.param == "tool_choice" and "nope" in e.message
    assert err({"tool_choice": {"type": "function", "name": "get_weather"}}).param == "tool_choice"
    assert err({"tools": [WEATHER], "tool_choice": {"type": "function"}}).param == "tool_choice.name"


def test_allowed_tools_filters_upstream_tools() -> None:
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_weather"}, {"type": "custom", "name": "apply_patch"}]}
    chat, ctx = tr({"tools": [NS, WEATHER, PATCH], "tool_choice": choice})
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_weather", "apply_patch"]
    assert chat["tool_choice"] == "required"
    assert ctx.allowed_tools == frozenset({"get_weather", "apply_patch"})
    assert ctx.echo["tool_choice"] == choice  # the entries as the client named them
    assert [t["name"] for t in ctx.echo["tools"]] == ["agents", "get_weather", "apply_patch"]  # every tool, as sent


def test_allowed_tools_validation() -> None:
    base = {"tools": [WEATHER]}
    assert err({**base, "tool_choice": {"type": "allowed_tools", "mode": "sometimes", "tools": []}}).param == "tool_choice.mode"
    assert err({**base, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": "x"}}).param == "tool_choice.tools"
    assert err({**base, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "x"}]}}).param == "tool_choice.tools[0]"
    chat, ctx = tr({**base, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}, {"type": "web_search"}]}})
    assert chat["tool_choice"] == "auto" and ctx.allowed_tools == frozenset({"get_weather"}) and ctx.warnings
    e = err({**base, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]}}, builtin_tools="reject")
    assert e.param == "tool_choice.tools[0]"


def test_allowed_tools_mode_is_optional_and_none_is_plain_none() -> None:
    """The spec's AllowedToolsParam requires only type and tools (mode was a 400 when left out);
    mode "none" is echoed as the plain "none" the openai SDK can parse (its ToolChoiceAllowed has
    no mode "none": the allowed_tools echo failed its validation)."""
    entries = [{"type": "function", "name": "get_weather"}]
    for choice in ({"type": "allowed_tools", "tools": entries}, {"type": "allowed_tools", "mode": None, "tools": entries}):
        chat, ctx = tr({"tools": [WEATHER, PATCH], "tool_choice": choice})
        assert chat["tool_choice"] == "auto" and [t["function"]["name"] for t in chat["tools"]] == ["get_weather"]
        assert ctx.echo["tool_choice"] == {"type": "allowed_tools", "mode": "auto", "tools": entries}
    chat, ctx = tr({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "none", "tools": entries}})
    assert chat["tool_choice"] == "none" and ctx.echo["tool_choice"] == "none" and ctx.allowed_tools is None
    assert err({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "none", "tools": [
        {"type": "function", "name": "nope"}]}}).param == "tool_choice.tools[0]"
    # The spec's minItems: 1 (an empty list allowed nothing yet offered every tool's echo).
    e = err({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}})
    assert (e.param, e.code, e.message) == ("tool_choice.tools", "empty_array",
                                            "Invalid 'tool_choice.tools': expected at least one tool reference.")


def test_builtin_tool_choice_follows_policy() -> None:
    chat, ctx = tr({"tools": [WEATHER, {"type": "web_search"}], "tool_choice": {"type": "web_search"}})
    assert "tool_choice" not in chat and ctx.echo["tool_choice"] == "auto"
    assert len(ctx.warnings) == 2
    e = err({"tools": [WEATHER], "tool_choice": {"type": "web_search"}}, builtin_tools="reject")
    assert e.param == "tool_choice"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": ["get_weather"]}, "tools[0]"),
        ({"tools": [{"name": "f"}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{"type": "function", "name": ""}]}, "tools[0].name"),
        ({"tools": [{"type": "function", "name": "f", "parameters": "x"}]}, "tools[0].parameters"),
        ({"tools": [{"type": "function", "name": "f", "strict": "yes"}]}, "tools[0].strict"),
        ({"tools": [{"type": "function", "name": "f", "description": 1}]}, "tools[0].description"),
        ({"tools": [{"type": "custom"}]}, "tools[0].name"),
        ({"tools": [{"type": "custom", "name": "c", "format": {"type": "grammar"}}]}, "tools[0].format.definition"),
        ({"tools": [{"type": "custom", "name": "c", "format": {"type": "yaml"}}]}, "tools[0].format.type"),
        ({"tools": [{"type": "namespace", "name": "n"}]}, "tools[0].tools"),
        ({"tools": [{"type": "namespace", "tools": []}]}, "tools[0].name"),
        ({"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]}, "tools[0].tools[0].type"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1]"),
        ({"tools": [{"type": "function", "name": "agents__spawn"}, NS]}, "tools[1].tools[0]"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": 3}, "tool_choice"),
        ({"tool_choice": {}}, "tool_choice.type"),
    ],
)
def test_tool_validation(body: dict[str, Any], param: str) -> None:
    assert err(body).param == param


@pytest.mark.parametrize("choice", [
    {"type": "web_search_preview"}, {"type": "web_search_preview_2025_03_11"}, {"type": "file_search"},
    {"type": "computer"}, {"type": "computer_use_preview"}, {"type": "computer_use"}, {"type": "image_generation"},
    {"type": "code_interpreter"}, {"type": "apply_patch"}, {"type": "shell"}, {"type": "programmatic_tool_calling"},
    {"type": "mcp", "server_label": "deepwiki", "name": "ask_question"}, {"type": "mcp", "server_label": "deepwiki"},
])
def test_a_builtin_tool_choice_is_echoed_as_the_auto_the_backend_ran_with(choice: dict[str, Any]) -> None:
    """The built-in tool is dropped, so the Response's tools do not list it: a choice forcing it
    would claim what did not happen. Echoed ``auto`` (what the backend chose with), and the
    Response validates as the SDK's and the Open Responses spec's, with nothing seen differently."""
    from proxy.translate.response import response_object
    from tests.conformance import check_response

    chat, ctx = tr({"tools": [WEATHER, {"type": choice["type"]}], "tool_choice": choice})
    assert "tool_choice" not in chat  # the backend chooses (auto)
    assert ctx.echo["tool_choice"] == "auto"
    assert [t["name"] for t in ctx.echo["tools"]] == [WEATHER["name"]]
    assert ctx.warnings and choice["type"] in ctx.warnings[-1]
    check_response(dict(response_object(ctx, status="completed", completed_at=1, usage={
        "input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0}})))


def test_a_namespaced_tool_choice_echo_parses() -> None:
    from proxy.translate.response import response_object
    from tests.conformance import check_response

    choice = {"type": "function", "name": "spawn", "namespace": "agents"}
    _, ctx = tr({"tools": [NS], "tool_choice": choice})
    assert ctx.echo["tool_choice"] == choice
    check_response(dict(response_object(ctx, status="in_progress")))
