"""Scenario corpus: upstream chunk sequences → events, checked by the conformance checker.

Every scenario runs twice — streaming (events through ``check_stream``) and
JSON mode (``emit_events=False``) — with a deterministic id source and clock,
and both must produce the same final Response.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from proxy.translate.context import ResponseContext
from proxy.translate.reasoning_codec import decode_reasoning
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_response, check_stream, default_echo

NOW = 1_800_000_000


def make_ctx(**kw: Any) -> ResponseContext:
    echo = default_echo(**kw.pop("echo", {}))
    return ResponseContext(response_id="resp_test", created_at=NOW - 5, model="test-model", echo=echo, **kw)


def ch(
    delta: dict | None = None,
    finish: str | None = None,
    *,
    logprobs: Any = None,
    usage: dict | None = None,
) -> dict:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    c: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice]}
    if usage is not None:
        c["usage"] = usage
    return c


def usage_chunk(**u: Any) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": u}


def tc(index: int | None = None, id: str | None = None, name: str | None = None, args: str | None = None) -> dict:
    call: dict[str, Any] = {}
    if index is not None:
        call["index"] = index
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    if fn:
        call["function"] = fn
    return call


def counting_ids() -> Callable[[str], str]:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter):04d}"


def run(ctx_kw: dict, chunks: list, *, emit: bool = True, finish: bool = True) -> tuple[list[dict], dict]:
    t = StreamTranslator(make_ctx(**ctx_kw), emit_events=emit, clock=lambda: NOW, new_id=counting_ids())
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    if finish:
        events += t.finish()
    assert t.done
    return events, t.response


def both(ctx_kw: dict, chunks: list) -> dict:
    """Run streaming + JSON mode; check the stream; assert the same final Response."""
    events, resp = run(ctx_kw, chunks)
    final = check_stream(events)
    assert final is resp
    json_events, json_resp = run(ctx_kw, chunks, emit=False)
    assert json_events == []
    check_response(json_resp)
    assert json_resp == resp
    return resp


def types(resp: dict) -> list[str]:
    return [it["type"] for it in resp["output"]]


def text_of(resp: dict) -> str:
    return "".join(p["text"] for it in resp["output"] if it["type"] == "message" for p in it["content"] if p["type"] == "output_text")


def reasoning_of(resp: dict) -> str:
    return "".join(p["text"] for it in resp["output"] if it["type"] == "reasoning" for p in it["content"])


USAGE = usage_chunk(prompt_tokens=10, completion_tokens=4, total_tokens=14)

# --------------------------------------------------------------- scenarios


def test_plain_text():
    resp = both({}, [ch({"role": "assistant", "content": ""}), ch({"content": "Hel"}), ch({"content": "lo ✓"}), ch({}, "stop"), USAGE])
    assert resp["status"] == "completed" and resp["completed_at"] == NOW
    assert types(resp) == ["message"] and text_of(resp) == "Hello ✓"
    assert resp["usage"]["input_tokens"] == 10 and resp["usage"]["output_tokens"] == 4
    assert resp["usage"]["total_tokens"] == 14


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_fields(field):
    chunks = [ch({field: "Let me "}), ch({field: "think."}), ch({"content": "42"}), ch({}, "stop"), USAGE]
    resp = both({}, chunks)
    assert types(resp) == ["reasoning", "message"]
    assert reasoning_of(resp) == "Let me think." and text_of(resp) == "42"
    rs = resp["output"][0]
    assert rs["summary"] == [] and "encrypted_content" not in rs


def test_reasoning_and_empty_content_in_same_delta():
    # vLLM sends content "" / null alongside reasoning deltas.
    chunks = [ch({"reasoning_content": "r1", "content": ""}), ch({"reasoning_content": "r2", "content": None}), ch({"content": "a"}), ch({}, "stop")]
    resp = both({}, chunks)
    assert types(resp) == ["reasoning", "message"] and reasoning_of(resp) == "r1r2"


def test_think_tags():
    chunks = [ch({"content": "<think>"}), ch({"content": "deep"}), ch({"content": "</think>\n\n"}), ch({"content": "Answer"}), ch({}, "stop")]
    resp = both({}, chunks)
    assert types(resp) == ["reasoning", "message"]
    assert reasoning_of(resp) == "deep" and text_of(resp) == "Answer"


THINK_CONTENT = "<think>Ré ✓ son</think>\n\nFinal ✓ answer"


@pytest.mark.parametrize("i", range(1, len(THINK_CONTENT)))
def test_think_tags_split_at_every_position(i):
    chunks = [ch({"content": THINK_CONTENT[:i]}), ch({"content": THINK_CONTENT[i:]}), ch({}, "stop")]
    resp = both({}, chunks)
    assert types(resp) == ["reasoning", "message"]
    assert reasoning_of(resp) == "Ré ✓ son" and text_of(resp) == "Final ✓ answer"


def test_think_tag_later_in_content_is_text():
    resp = both({}, [ch({"content": "Say <think>x</think>"}), ch({}, "stop")])
    assert types(resp) == ["message"] and text_of(resp) == "Say <think>x</think>"


def test_unterminated_think_with_length():
    resp = both({}, [ch({"content": "<think>never ends"}), ch({}, "length")])
    assert resp["status"] == "incomplete"
    assert types(resp) == ["reasoning"] and resp["output"][0]["status"] == "incomplete"


def test_encrypted_reasoning():
    resp = both({"include_encrypted_reasoning": True}, [ch({"reasoning": "secret plan"}), ch({"content": "ok"}), ch({}, "stop")])
    rs = resp["output"][0]
    assert decode_reasoning(rs["encrypted_content"]) == "secret plan"


def test_parallel_tool_calls_interleaved():
    chunks = [
        ch({"tool_calls": [tc(0, "call_A", "get_weather", "")]}),
        ch({"tool_calls": [tc(1, "call_B", "get_time", "")]}),
        ch({"tool_calls": [tc(0, args='{"city":')]}),
        ch({"tool_calls": [tc(1, args='{"tz":"UTC"}')]}),
        ch({"tool_calls": [tc(0, args='"Paris"}')]}),
        ch({}, "tool_calls"),
        USAGE,
    ]
    resp = both({}, chunks)
    assert types(resp) == ["function_call", "function_call"]
    a, b = resp["output"]
    assert (a["call_id"], a["name"], a["arguments"]) == ("call_A", "get_weather", '{"city":"Paris"}')
    assert (b["call_id"], b["name"], b["arguments"]) == ("call_B", "get_time", '{"tz":"UTC"}')
    assert a["id"].startswith("fc_") and a["id"] != a["call_id"]


def test_parallel_calls_in_one_delta():
    chunks = [ch({"tool_calls": [tc(0, "c0", "f", '{"x":1}'), tc(1, "c1", "g", '{"y":2}')]}), ch({}, "tool_calls")]
    resp = both({}, chunks)
    assert [it["name"] for it in resp["output"]] == ["f", "g"]


def test_arguments_before_name():
    chunks = [
        ch({"tool_calls": [tc(0, args='{"q":')]}),
        ch({"tool_calls": [tc(0, args='"x"}')]}),
        ch({"tool_calls": [tc(0, id="call_late", name="search")]}),
        ch({}, "tool_calls"),
    ]
    events, _ = run({}, chunks)
    resp = check_stream(events)
    (call,) = resp["output"]
    assert (call["name"], call["call_id"], call["arguments"]) == ("search", "call_late", '{"q":"x"}')
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert added[0]["item"]["name"] == "search"
    assert both({}, chunks) == resp


def test_later_call_waits_for_earlier_nameless_call():
    # Call 1 is complete before call 0 gets its name: output keeps first-appearance order.
    chunks = [
        ch({"tool_calls": [tc(0, args='{"a":1}')]}),
        ch({"tool_calls": [tc(1, "c1", "second", "{}")]}),
        ch({"tool_calls": [tc(0, "c0", "first")]}),
        ch({}, "tool_calls"),
    ]
    resp = both({}, chunks)
    assert [it["name"] for it in resp["output"]] == ["first", "second"]


def test_whole_call_in_last_chunk():
    chunks = [ch({"tool_calls": [tc(0, "call_1", "ls", '{"path":"/"}')]}, "tool_calls"), USAGE]
    resp = both({}, chunks)
    assert types(resp) == ["function_call"] and resp["output"][0]["arguments"] == '{"path":"/"}'


def test_missing_call_id_is_generated():
    resp = both({}, [ch({"tool_calls": [tc(0, name="f", args="{}")]}), ch({}, "tool_calls")])
    call = resp["output"][0]
    assert call["call_id"].startswith("call_") and call["call_id"] != call["id"]


def test_missing_index_whole_calls_and_fragments():
    chunks = [
        ch({"tool_calls": [tc(None, "call_x", "f", '{"a"')]}),
        ch({"tool_calls": [tc(None, args=":1}")]}),
        ch({"tool_calls": [tc(None, "call_y", "g", "{}")]}),
        ch({}, "tool_calls"),
    ]
    resp = both({}, chunks)
    assert [(c["call_id"], c["arguments"]) for c in resp["output"]] == [("call_x", '{"a":1}'), ("call_y", "{}")]


def test_same_index_reused_for_distinct_whole_calls():
    chunks = [ch({"tool_calls": [tc(0, "call_1", "f", "{}")]}), ch({"tool_calls": [tc(0, "call_2", "g", "{}")]}), ch({}, "tool_calls")]
    resp = both({}, chunks)
    assert [c["call_id"] for c in resp["output"]] == ["call_1", "call_2"]


def test_arguments_sent_as_object():
    resp = both({}, [ch({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": {"k": "v"}}}]}), ch({}, "tool_calls")])
    assert resp["output"][0]["arguments"] == '{"k":"v"}'


def test_legacy_function_call_delta():
    resp = both({}, [ch({"function_call": {"name": "f", "arguments": "{}"}}), ch({}, "function_call")])
    assert types(resp) == ["function_call"] and resp["status"] == "completed"


def test_text_whitespace_and_tool_calls():
    chunks = [
        ch({"reasoning_content": "need a tool"}),
        ch({"content": "\n\n"}),
        ch({"tool_calls": [tc(0, "c", "f", "{}")]}),
        ch({"content": "\n"}),
        ch({}, "tool_calls"),
    ]
    resp = both({}, chunks)
    assert types(resp) == ["reasoning", "function_call"]


def test_text_then_tool_call():
    chunks = [ch({"content": "Checking."}), ch({"tool_calls": [tc(0, "c", "f", "{}")]}), ch({}, "tool_calls")]
    resp = both({}, chunks)
    assert types(resp) == ["message", "function_call"] and text_of(resp) == "Checking."


def test_custom_tool():
    patch = "*** Begin Patch\n*** Add File: a.txt\n+héllo \"quoted\"\n*** End Patch"
    args = orjson.dumps({"input": patch}).decode()
    chunks = [ch({"tool_calls": [tc(0, "call_p", "apply_patch", args[:10])]}), ch({"tool_calls": [tc(0, args=args[10:])]}), ch({}, "tool_calls")]
    events, _ = run({"custom_tools": frozenset({"apply_patch"})}, chunks)
    resp = check_stream(events)
    (item,) = resp["output"]
    assert item["type"] == "custom_tool_call" and item["id"].startswith("ctc_")
    assert (item["name"], item["call_id"], item["input"]) == ("apply_patch", "call_p", patch)
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    assert kinds.count("response.custom_tool_call_input.done") == 1
    assert both({"custom_tools": frozenset({"apply_patch"})}, chunks) == resp


def test_custom_tool_raw_text_arguments():
    resp = both({"custom_tools": frozenset({"raw"})}, [ch({"tool_calls": [tc(0, "c", "raw", "not json at all")]}), ch({}, "tool_calls")])
    assert resp["output"][0]["input"] == "not json at all"


def test_namespaced_function():
    ctx = {"namespaced": {"github__create_issue": ("github", "create_issue")}}
    resp = both(ctx, [ch({"tool_calls": [tc(0, "c", "github__create_issue", '{"t":1}')]}), ch({}, "tool_calls")])
    item = resp["output"][0]
    assert (item["name"], item["namespace"]) == ("create_issue", "github")


def test_allowed_tools_drop_other_calls():
    ctx_kw = {"allowed_tools": frozenset({"ok"})}
    chunks = [
        ch({"tool_calls": [tc(0, "c0", "forbidden", '{"x":1}')]}),
        ch({"tool_calls": [tc(1, "c1", "ok", "{}")]}),
        ch({"tool_calls": [tc(0, args="more")]}),
        ch({}, "tool_calls"),
    ]
    events, _ = run(ctx_kw, chunks)
    resp = check_stream(events)
    assert [it["name"] for it in resp["output"]] == ["ok"]
    assert "forbidden" not in str(events)
    t = StreamTranslator(make_ctx(**ctx_kw))
    t.start()
    for c in chunks:
        t.feed(c)
    t.finish()
    assert t.dropped_calls == ["forbidden"]
    assert any("forbidden" in w for w in t.warnings)
    assert both(ctx_kw, chunks) == resp


def test_nameless_call_is_dropped():
    resp = both({}, [ch({"content": "hi"}), ch({"tool_calls": [tc(0, args="{}")]}), ch({}, "stop")])
    assert types(resp) == ["message"]


def test_refusal():
    resp = both({}, [ch({"refusal": "I can't "}), ch({"refusal": "help with that."}), ch({}, "stop")])
    (msg,) = resp["output"]
    assert msg["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]


def test_text_then_refusal_parts():
    resp = both({}, [ch({"content": "Well"}), ch({"refusal": "no"}), ch({}, "stop")])
    assert [p["type"] for p in resp["output"][0]["content"]] == ["output_text", "refusal"]


def _lp(token: str, lp: float) -> dict:
    return {"token": token, "logprob": lp, "bytes": list(token.encode()), "top_logprobs": [{"token": token, "logprob": lp, "bytes": list(token.encode())}]}


def test_logprobs():
    chunks = [
        ch({"content": "Hi"}, logprobs={"content": [_lp("Hi", -0.5)]}),
        ch({"content": " ✓"}, logprobs={"content": [{"token": " ✓", "logprob": -1.0, "bytes": None, "top_logprobs": []}]}),
        ch({}, "stop"),
    ]
    events, _ = run({"include_logprobs": True}, chunks)
    resp = check_stream(events)
    part = resp["output"][0]["content"][0]
    assert [lp["token"] for lp in part["logprobs"]] == ["Hi", " ✓"]
    assert part["logprobs"][1]["bytes"] == list(" ✓".encode())
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas[0]["logprobs"][0]["logprob"] == -0.5
    assert both({"include_logprobs": True}, chunks) == resp
    # Without include_logprobs they are not exposed.
    plain = both({}, chunks)
    assert plain["output"][0]["content"][0]["logprobs"] == []


def test_length():
    resp = both({}, [ch({"content": "Once upon"}), ch({}, "length"), USAGE])
    assert resp["status"] == "incomplete"
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["completed_at"] is None
    assert resp["output"][0]["status"] == "incomplete"
    assert resp["usage"]["output_tokens"] == 4


def test_length_marks_only_last_item_incomplete():
    resp = both({}, [ch({"content": "x"}), ch({"tool_calls": [tc(0, "c", "f", '{"a":')]}), ch({}, "length")])
    assert [it["status"] for it in resp["output"]] == ["completed", "incomplete"]


def test_content_filter():
    resp = both({}, [ch({"content": "partial"}), ch({}, "content_filter")])
    assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "content_filter"}


def test_truncated_stream_fails():
    events, resp = run({}, [ch({"content": "cut off"})])
    final = check_stream(events)
    assert final["status"] == "failed"
    assert final["error"] == {"code": "server_error", "message": "upstream stream ended before completion"}
    assert final["output"][0]["status"] == "incomplete"
    assert events[-2]["type"] == "error" and events[-2]["message"] == final["error"]["message"]
    _, json_resp = run({}, [ch({"content": "cut off"})], emit=False)
    assert json_resp == resp


def test_truncated_with_no_chunks_at_all():
    events, _ = run({}, [])
    assert check_stream(events)["status"] == "failed"


def test_error_chunk_mid_stream():
    chunks = [ch({"content": "start"}), {"error": {"message": "model overloaded", "code": "weird_code"}}]
    events, t_resp = run({}, chunks, finish=False)
    final = check_stream(events)
    assert final["status"] == "failed" and "model overloaded" in final["error"]["message"]
    assert final["error"]["code"] == "server_error"


def test_error_chunk_with_known_code_and_string_error():
    events, _ = run({}, [{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}], finish=False)
    assert check_stream(events)["error"]["code"] == "rate_limit_exceeded"
    events, _ = run({}, [{"error": "boom"}], finish=False)
    assert "boom" in check_stream(events)["error"]["message"]


def test_malformed_chunk_fails():
    """The message names the field of the wrong shape (the backend's fault, reported as such)."""
    cases = [
        ([1, 2], "not a JSON object"),
        (None, "not a JSON object"),
        ({"choices": "nope"}, "choices"),
        ({"choices": [{"delta": {"tool_calls": [1]}}]}, "choices[].delta.tool_calls[]"),
    ]
    for bad, field in cases:
        t = StreamTranslator(make_ctx(), clock=lambda: NOW, new_id=counting_ids())
        events = t.start() + t.feed(ch({"content": "a"})) + t.feed(bad)
        final = check_stream(events)
        assert final["status"] == "failed" and final["error"]["message"] == f"malformed chunk from upstream: {field}"
        assert t.failure is not None and t.failure.kind == "malformed" and events[-2]["code"] == "invalid_chunk"


def test_finish_reason_error_fails():
    events, _ = run({}, [ch({"content": "a"}), ch({}, "error")], finish=False)
    assert check_stream(events)["status"] == "failed"


def test_usage_with_details():
    u = usage_chunk(
        prompt_tokens=100,
        completion_tokens=50,
        total_tokens=150,
        prompt_tokens_details={"cached_tokens": 80, "cache_write_tokens": 7},
        completion_tokens_details={"reasoning_tokens": 30},
    )
    resp = both({}, [ch({"reasoning_content": "r"}), ch({"content": "a"}), ch({}, "stop"), u])
    assert resp["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 7},
        "output_tokens": 50,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 150,
    }


def test_no_usage_from_backend_gives_zeros():
    resp = both({}, [ch({"content": "a"}), ch({}, "stop")])
    assert resp["usage"] == {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


def test_usage_in_finish_chunk():
    resp = both({}, [ch({"content": "a"}), ch({}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 1})])
    assert resp["usage"]["total_tokens"] == 4


def test_empty_completion():
    resp = both({}, [ch({"role": "assistant"}), ch({}, "stop")])
    assert resp["output"] == [] and resp["status"] == "completed"


def test_reasoning_after_text_becomes_a_new_item():
    resp = both({}, [ch({"reasoning": "a"}), ch({"content": "b"}), ch({"reasoning": "c"}), ch({"content": "d"}), ch({}, "stop")])
    assert types(resp) == ["reasoning", "message", "reasoning", "message"]


def test_echo_values_are_the_requests():
    echo = {"temperature": 0.2, "metadata": {"k": "v"}, "instructions": "be brief", "store": False}
    resp = both({"echo": echo}, [ch({"content": "a"}), ch({}, "stop")])
    for k, v in echo.items():
        assert resp[k] == v
    assert resp["model"] == "test-model" and resp["id"] == "resp_test" and resp["created_at"] == NOW - 5


def test_chunks_for_other_choices_are_ignored():
    other = {"choices": [{"index": 1, "delta": {"content": "other"}, "finish_reason": None}]}
    resp = both({}, [ch({"content": "mine"}), other, ch({}, "stop")])
    assert text_of(resp) == "mine"
