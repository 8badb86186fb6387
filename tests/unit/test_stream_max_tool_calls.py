"""``max_tool_calls``: calls past the limit never reach the client, and the backend is not told;
``parallel_tool_calls: false``: one call, whatever the backend sends.

Chat Completions has no such field, so the limit is enforced on the way back:
the first ``max_tool_calls`` calls the client may get (in order of first
appearance; calls dropped for ``allowed_tools`` or for having no name do not
count) are sent, later ones are dropped with a warning, in both modes.
"""
from __future__ import annotations

import itertools
from typing import Any

import orjson

from proxy.translate.context import ResponseContext
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_response, check_stream, default_echo

FN = {"type": "object", "properties": {}}


def ch(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def call(index: int, name: str | None = None, args: str | None = None, id: str | None = None) -> dict[str, Any]:
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    tc: dict[str, Any] = {"index": index, "function": fn}
    if id is not None:
        tc["id"] = id
    return ch({"tool_calls": [tc]})


def run(
    chunks: list[dict[str, Any]], limit: int | None, parallel: bool = True, **ctx_kw: Any
) -> tuple[list[dict[str, Any]], StreamTranslator]:
    """Streaming run (conformance-checked) and JSON run; they must give the same Response."""
    results = []
    for emit in (True, False):
        counter = itertools.count()
        echo = default_echo(max_tool_calls=limit, parallel_tool_calls=parallel)
        ctx = ResponseContext(response_id="resp_m", created_at=1, model="m", echo=echo, **ctx_kw)
        t = StreamTranslator(ctx, emit_events=emit, clock=lambda: 2, new_id=lambda p: f"{p}_{next(counter)}")
        events = t.start()
        for c in chunks:
            events += t.feed(c)
        events += t.finish()
        results.append((events, t))
    (events, t), (json_events, json_t) = results
    assert check_stream(events) is t.response and json_events == []
    assert check_response(json_t.response) == t.response
    assert (json_t.dropped_calls, json_t.warnings) == (t.dropped_calls, t.warnings)
    return events, t


def names(t: StreamTranslator) -> list[str]:
    return [item["name"] for item in t.response["output"] if item["type"] in ("function_call", "custom_tool_call")]


def test_calls_past_the_limit_are_dropped_with_a_warning() -> None:
    chunks = [
        call(0, "a", "", id="call_a"), call(1, "b", "", id="call_b"), call(2, "c", '{"x":', id="call_c"),
        call(0, args='{"n":1}'), call(2, args="1}"), call(1, args='{"n":2}'),
        ch({}, "tool_calls"),
    ]
    events, t = run(chunks, 2)
    assert names(t) == ["a", "b"]
    assert [item["arguments"] for item in t.response["output"]] == ['{"n":1}', '{"n":2}']
    assert t.response["status"] == "completed" and t.response["max_tool_calls"] == 2
    assert t.dropped_calls == ["c"]
    assert t.warnings == ["dropped upstream tool call 'c': over max_tool_calls (2)"]
    sent = orjson.dumps(events)
    assert b"call_c" not in sent and b'"x":' not in sent  # nothing of the third call, not even its fragments


def test_without_a_limit_every_call_is_sent() -> None:
    chunks = [call(i, f"f{i}", "{}", id=f"call_{i}") for i in range(5)] + [ch({}, "tool_calls")]
    _, t = run(chunks, None)
    assert names(t) == ["f0", "f1", "f2", "f3", "f4"] and t.dropped_calls == [] and t.warnings == []


def test_calls_kept_from_the_client_for_other_reasons_do_not_count() -> None:
    chunks = [call(0, "forbidden", "{}", id="call_0"), call(1, args="{}"), call(2, "ok", "{}", id="call_2"),
              call(3, "late", "{}", id="call_3"), ch({}, "tool_calls")]
    _, t = run(chunks, 1, allowed_tools=frozenset({"ok", "late"}))
    assert names(t) == ["ok"]
    # forbidden: allowed_tools; index 1 never gets a name (so the later calls wait for the
    # end, where it is dropped); late: over the limit.
    assert t.dropped_calls == ["forbidden", "<unnamed>", "late"]
    assert "dropped upstream tool call 'late': over max_tool_calls (1)" in t.warnings


def test_custom_tool_calls_count_like_functions() -> None:
    patch = orjson.dumps({"input": "*** Begin Patch\n*** End Patch"}).decode()
    chunks = [ch({"content": "Patching."}), call(0, "apply_patch", patch, id="call_p"), call(1, "f", "{}", id="call_f"),
              ch({}, "tool_calls")]
    _, t = run(chunks, 1, custom_tools=frozenset({"apply_patch"}))
    assert [item["type"] for item in t.response["output"]] == ["message", "custom_tool_call"]
    assert t.dropped_calls == ["f"]


def test_the_limit_comes_from_the_request_and_is_not_sent_upstream() -> None:
    body = {"model": "m", "input": "go", "max_tool_calls": 1, "tools": [
        {"type": "function", "name": "f", "parameters": FN}, {"type": "function", "name": "g", "parameters": FN}]}
    chat, ctx = translate_request(body, TranslationPolicy(), now=1)
    assert "max_tool_calls" not in chat and ctx.echo["max_tool_calls"] == 1
    t = StreamTranslator(ctx)
    t.start()
    for c in [call(0, "f", "{}", id="call_1"), call(1, "g", "{}", id="call_2"), ch({}, "tool_calls")]:
        t.feed(c)
    t.finish()
    assert names(t) == ["f"] and t.dropped_calls == ["g"]


def test_parallel_tool_calls_false_lets_one_call_through() -> None:
    """A backend may ignore the flag (it is forwarded); OpenAI's answer then has one call."""
    chunks = [ch({"content": "Two at once."}), call(0, "a", '{"n":1}', id="call_a"), call(1, "b", "{}", id="call_b"),
              call(2, "c", "{}", id="call_c"), ch({}, "tool_calls")]
    events, t = run(chunks, None, parallel=False)
    assert names(t) == ["a"] and t.response["parallel_tool_calls"] is False
    assert t.dropped_calls == ["b", "c"]
    assert t.warnings == [f"dropped upstream tool call {n!r}: parallel_tool_calls is false: one call per response"
                          for n in ("b", "c")]
    assert b"call_b" not in orjson.dumps(events)
    # The tighter bound names the drop: max_tool_calls 1 (or 0) is its own reason.
    _, t = run(chunks, 1, parallel=False)
    assert names(t) == ["a"] and t.warnings[0] == "dropped upstream tool call 'b': over max_tool_calls (1)"
    _, t = run(chunks, 3, parallel=False)
    assert names(t) == ["a"] and "parallel_tool_calls is false" in t.warnings[0]
    # parallel_tool_calls true (the default) lets every call through.
    _, t = run(chunks, None, parallel=True)
    assert names(t) == ["a", "b", "c"] and t.dropped_calls == []
