"""Replayed history: tool calls, tool results, reasoning, and the real Codex turns."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.translate.errors import InvalidRequest
from proxy.translate.reasoning_codec import encode_reasoning
from proxy.translate.request import TranslationPolicy, translate_request

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "codex_requests.json"


def msgs(input_: Any, **policy: Any) -> list[dict[str, Any]]:
    return translate_request({"model": "m", "input": input_}, TranslationPolicy(**policy), now=1)[0]["messages"]


def fc(call_id: str, name: str = "get_weather", args: str = '{"city":"Paris"}', **extra: Any) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": args, **extra}


def fco(call_id: str, output: Any = "sunny") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def call(call_id: str, name: str = "get_weather", args: str = '{"city":"Paris"}') -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def test_parallel_calls_grouped_into_one_assistant_message_before_results() -> None:
    out = msgs([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        fc("c1", id="fc_1", status="completed"),
        fc("c2", args='{"city":"Rome"}'),
        fco("c1"),
        fco("c2", "rainy"),
    ])
    assert out == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [call("c1"), call("c2", args='{"city":"Rome"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rainy"},
    ]


def test_call_merges_into_directly_preceding_assistant_text() -> None:
    out = msgs([
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
        fc("c1"),
        fco("c1"),
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]},
    ])
    assert out == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ]


def test_sequential_call_rounds_make_separate_assistant_messages() -> None:
    out = msgs([{"role": "user", "content": "x"}, fc("c1"), fco("c1"), fc("c2"), fco("c2")])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "assistant", "tool"]
    assert out[1]["tool_calls"] == [call("c1")] and out[3]["tool_calls"] == [call("c2")]


def test_function_call_output_as_array_of_parts() -> None:
    out = msgs([
        {"role": "user", "content": "x"},
        fc("c1"), fc("c2"),
        fco("c1", [{"type": "input_text", "text": "line 1"}, {"type": "input_text", "text": "line 2"}]),
        fco("c2", [
            {"type": "input_text", "text": "see image"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
            {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"},
        ]),
    ])
    assert out[2] == {"role": "tool", "tool_call_id": "c1", "content": "line 1\nline 2"}
    assert out[3] == {
        "role": "tool",
        "tool_call_id": "c2",
        "content": [
            {"type": "text", "text": "see image"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}},
        ],
    }


def test_namespaced_call_maps_to_flattened_name() -> None:
    out = msgs([{"role": "user", "content": "x"}, fc("c1", name="spawn_agent", args="{}", namespace="multi_agent_v1"),
                fco("c1")])
    assert out[1]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"


def test_custom_tool_call_round_trip() -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi \"quoted\" ✓\n*** End Patch\n"
    out = msgs([
        {"role": "user", "content": "add a file"},
        {"type": "custom_tool_call", "id": "ctc_1", "status": "completed", "call_id": "c9", "name": "apply_patch", "input": patch},
        {"type": "custom_tool_call_output", "call_id": "c9", "output": "Done!"},
    ])
    tc = out[1]["tool_calls"][0]
    assert tc["id"] == "c9" and tc["function"]["name"] == "apply_patch"
    assert orjson.loads(tc["function"]["arguments"]) == {"input": patch}
    assert out[2] == {"role": "tool", "tool_call_id": "c9", "content": "Done!"}


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[1].call_id"),
        ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input[1].name"),
        ({"type": "function_call", "call_id": "c", "name": "f"}, "input[1].arguments"),
        ({"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}, "input[1].arguments"),
        ({"type": "function_call", "call_id": 7, "name": "f", "arguments": "{}"}, "input[1].call_id"),
        ({"type": "function_call_output", "call_id": "c"}, "input[1].output"),
        ({"type": "function_call_output", "output": "x"}, "input[1].call_id"),
        ({"type": "function_call_output", "call_id": "c", "output": 3}, "input[1].output"),
        ({"type": "custom_tool_call", "call_id": "c", "name": "apply_patch"}, "input[1].input"),
    ],
)
def test_malformed_calls_are_400(item: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        msgs([{"role": "user", "content": "x"}, item])
    assert info.value.param == param


# ---------------------------------------------------------------- reasoning


def rs(summary: list[str] | None = None, content: list[str] | None = None, enc: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": t} for t in summary or []]}
    item["content"] = None if content is None else [{"type": "reasoning_text", "text": t} for t in content]
    if enc is not None:
        item["encrypted_content"] = enc
    return item


def test_reasoning_from_our_blob_beats_content_and_summary() -> None:
    out = msgs([{"role": "user", "content": "x"}, rs(["sum"], ["vis"], encode_reasoning("full thoughts")), fc("c1"), fco("c1")])
    assert out[1]["reasoning_content"] == "full thoughts"
    assert out[1]["tool_calls"] == [call("c1")]


def test_reasoning_content_beats_summary_and_foreign_blob_is_ignored() -> None:
    out = msgs([{"role": "user", "content": "x"}, rs(["sum"], ["step 1", "step 2"], "gAAAA-openai"), {"role": "assistant", "content": "ans"}])
    assert out[1] == {"role": "assistant", "content": "ans", "reasoning_content": "step 1\nstep 2"}


def test_reasoning_summary_fallback_joined() -> None:
    out = msgs([{"role": "user", "content": "x"}, rs(["a", "b"], enc="enc_stub_opaque_blob"), {"role": "assistant", "content": "ans"}])
    assert out[1]["reasoning_content"] == "a\n\nb"


def test_reasoning_attaches_to_preceding_assistant_when_call_merges_into_it() -> None:
    out = msgs([
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "Let me look."},
        rs(["thinking"]),
        fc("c1"),
        fco("c1"),
    ])
    assert out[1] == {"role": "assistant", "content": "Let me look.", "reasoning_content": "thinking", "tool_calls": [call("c1")]}


def test_reasoning_dropped_when_policy_says_so_or_when_orphaned() -> None:
    assert "reasoning_content" not in msgs(
        [{"role": "user", "content": "x"}, rs(["t"]), {"role": "assistant", "content": "a"}], reasoning_in_history=False
    )[1]
    out = msgs([{"role": "user", "content": "x"}, rs(["t"]), {"role": "user", "content": "y"}, {"role": "assistant", "content": "a"}])
    assert all("reasoning_content" not in m for m in out)
    assert msgs([{"role": "user", "content": "x"}, rs(["t"])]) == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    "item",
    [
        {"type": "reasoning"},
        {"type": "reasoning", "summary": None, "content": None, "encrypted_content": None},
        {"type": "reasoning", "summary": "oops", "content": 5, "encrypted_content": 9},
        {"type": "reasoning", "summary": [{"type": "summary_text"}, "x", None]},
    ],
)
def test_malformed_reasoning_items_are_never_rejected(item: dict[str, Any]) -> None:
    out = msgs([{"role": "user", "content": "x"}, item, {"role": "assistant", "content": "a"}])
    assert out == [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}]


def test_round_trip_of_our_own_output_items() -> None:
    """Items shaped exactly like our responses emit are accepted back as input."""
    output = [
        {
            "type": "reasoning",
            "id": "rs_0123456789abcdef0123456789abcdef",
            "status": "completed",
            "summary": [{"type": "summary_text", "text": "Short."}],
            "content": [{"type": "reasoning_text", "text": "Long thoughts."}],
            "encrypted_content": encode_reasoning("Long thoughts."),
        },
        {
            "type": "message",
            "id": "msg_0123456789abcdef0123456789abcdef",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Calling tools.", "annotations": [], "logprobs": [
                {"token": "Calling", "logprob": -0.1, "bytes": [67], "top_logprobs": []}]}],
        },
        {"type": "function_call", "id": "fc_0123456789abcdef0123456789abcdef", "status": "completed",
         "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "custom_tool_call", "id": "ctc_0123456789abcdef0123456789abcdef", "status": "completed",
         "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch\n"},
    ]
    out = msgs([{"role": "user", "content": "go"}, *output,
                fco("call_1"), {"type": "custom_tool_call_output", "call_id": "call_2", "output": "ok"}])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool"]
    assert out[1]["content"] == "Calling tools."
    assert out[1]["reasoning_content"] == "Long thoughts."
    assert [c["id"] for c in out[1]["tool_calls"]] == ["call_1", "call_2"]


# ---------------------------------------------------------------- Codex CLI


def codex(name: str) -> dict[str, Any]:
    return json.loads(FIXTURES.read_text(encoding="utf-8"))[name]


@pytest.mark.parametrize("turn", ["gpt55_turn2", "fallback_turn2"])
def test_codex_turn2_exact_message_sequence(turn: str) -> None:
    body = codex(turn)
    chat, ctx = translate_request(body, TranslationPolicy(), now=1)
    m = chat["messages"]
    dev = [it for it in body["input"] if it.get("role") == "developer"]
    users = [it for it in body["input"] if it.get("role") == "user"]
    expected_system = "\n\n".join("\n".join(p["text"] for p in d["content"]) for d in dev)
    assert m == [
        {"role": "system", "content": expected_system},
        {"role": "user", "content": users[0]["content"][0]["text"]},
        {"role": "user", "content": "List the files in this directory"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I should list the files.",
            "tool_calls": [{"id": "call_stub_1", "type": "function",
                            "function": {"name": "exec_command", "arguments": "{\"cmd\": \"ls\"}"}}],
        },
        {"role": "tool", "tool_call_id": "call_stub_1", "content": body["input"][-1]["output"]},
    ]
    assert expected_system.startswith("You are") and "<skills_instructions>" in expected_system
    assert ctx.include_encrypted_reasoning is True
    assert ctx.stream is True


def test_codex_gpt55_turn1_request_shape() -> None:
    chat, ctx = translate_request(codex("gpt55_turn1"), TranslationPolicy(), now=1)
    names = [t["function"]["name"] for t in chat["tools"]]
    assert names == ["exec_command", "write_stdin", "request_user_input", "apply_patch",
                     "view_image", "get_goal", "create_goal", "update_goal"]
    assert chat["tool_choice"] == "auto" and chat["parallel_tool_calls"] is True
    assert chat["reasoning_effort"] == "high"
    assert "verbosity" not in chat and "prompt_cache_key" not in chat and "store" not in chat
    assert ctx.custom_tools == frozenset({"apply_patch"})
    assert len(ctx.warnings) == 1 and "tool_search" in ctx.warnings[0] and "web_search" in ctx.warnings[0]
    apply_patch = chat["tools"][3]["function"]
    assert apply_patch["parameters"]["required"] == ["input"]
    desc = apply_patch["parameters"]["properties"]["input"]["description"]
    assert "lark" in desc and "begin_patch" in desc and "FREEFORM" in desc
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "user"]
    # the exec_command schema is passed through untouched, key order included
    src = codex("gpt55_turn1")["tools"][0]["parameters"]
    assert chat["tools"][0]["function"]["parameters"] == src
    assert list(chat["tools"][0]["function"]["parameters"]["properties"]) == list(src["properties"])
    assert chat["tools"][0]["function"]["strict"] is False


def test_codex_fallback_turn1_namespace_tools() -> None:
    chat, ctx = translate_request(codex("fallback_turn1"), TranslationPolicy(), now=1)
    names = [t["function"]["name"] for t in chat["tools"]]
    assert "multi_agent_v1__spawn_agent" in names
    assert ctx.namespaced["multi_agent_v1__spawn_agent"] == ("multi_agent_v1", "spawn_agent")
    assert "reasoning_effort" not in chat
    assert ctx.echo["reasoning"] == {"effort": None, "summary": "auto"}


def test_codex_turns_rejected_when_builtins_policy_is_reject() -> None:
    with pytest.raises(InvalidRequest) as info:
        translate_request(codex("gpt55_turn1"), TranslationPolicy(builtin_tools="reject"), now=1)
    assert info.value.param == "tools[8]"  # tool_search


def _refusal(input_: list[dict[str, Any]]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        msgs(input_)
    return info.value


def ctc(call_id: str) -> dict[str, Any]:
    return {"type": "custom_tool_call", "call_id": call_id, "name": "apply_patch", "input": "*** Begin Patch"}


def ctco(call_id: str) -> dict[str, Any]:
    return {"type": "custom_tool_call_output", "call_id": call_id, "output": "Done!"}


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ([fc("c1")], "No tool output found for function call c1."),
        ([ctc("c7")], "No tool output found for custom tool call c7."),
        # Several calls: the first one left unanswered is named, whatever answers the others.
        ([fc("c1"), fc("c2"), fc("c3"), fco("c3"), fco("c1")], "No tool output found for function call c2."),
        ([fc("c1"), fco("c1"), {"role": "user", "content": "and?"}, fc("c2")],
         "No tool output found for function call c2."),
        ([fc("c1"), ctc("c2"), fco("c1")], "No tool output found for custom tool call c2."),
        ([{"role": "user", "content": "go"}, fc("c5"), {"role": "user", "content": "never mind"}],
         "No tool output found for function call c5."),
    ],
)
def test_a_call_no_output_answers_is_openais_400(tail: list[dict[str, Any]], message: str) -> None:
    """OpenAI refuses an input with a call that no output after it answers (its 400 word for word,
    param ``input``, no code): a chat backend given ``tool_calls`` with no ``tool`` message after
    them refuses the history less clearly (or its template breaks). Forwarded before."""
    e = _refusal([{"role": "user", "content": "x"}, *tail])
    assert (e.message, e.param, e.code) == (message, "input", None)


def test_an_output_before_its_call_is_refused_as_the_orphan_it_is() -> None:
    """Order counts: an output answers only a call made before it (the orphan's 400 comes first)."""
    e = _refusal([{"role": "user", "content": "x"}, fco("c1"), fc("c1")])
    assert (e.message, e.param) == ("No tool call found for function call output with call_id c1.", "input")


def test_calls_answered_in_any_order_later_in_the_input_are_served() -> None:
    out = msgs([
        {"role": "user", "content": "x"}, fc("c1"), ctc("c2"), fc("c3"),
        fco("c3"), {"role": "user", "content": "(meanwhile)"}, ctco("c2"), fco("c1"),
    ])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "user", "tool", "tool"]
    assert [c["id"] for c in out[1]["tool_calls"]] == ["c1", "c2", "c3"]


def test_a_compaction_item_stands_for_the_calls_before_it() -> None:
    """A call before a compaction item is not required an output (the summary replaced that
    history, as the orphan check does not pair outputs after it); one after it is."""
    from proxy.translate.compaction import compaction_item

    item = compaction_item("the summary")
    msgs([{"role": "user", "content": "x"}, fc("c1"), item, {"role": "user", "content": "go on"}])
    msgs([{"role": "user", "content": "x"}, fc("c1"), item, fco("c1")])
    msgs([item, fc("c2"), fco("c2")])
    e = _refusal([item, fc("c2"), {"role": "user", "content": "go on"}])
    assert e.message == "No tool output found for function call c2."


def test_an_item_s_own_fault_is_named_before_an_unanswered_call() -> None:
    e = _refusal([{"role": "user", "content": "x"}, fc("c1"), {"role": "user", "content": 5}])
    assert e.param == "input[2].content"


def test_conversation_items_are_not_paired_as_they_are_added_piece_by_piece() -> None:
    """``POST /conversations/{id}/items`` adds a turn's output (a call) before the client runs it:
    the pairing is the input's, checked when a response stands on the conversation."""
    from proxy.translate.messages import check_items

    check_items([{"role": "user", "content": "x"}, fc("c1")], "items")
    check_items([fco("c1")], "items")
