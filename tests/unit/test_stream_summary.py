"""Reasoning streamed as a summary (``reasoning.summary`` requested).

Codex and the Agents SDK display ``response.reasoning_summary_text.delta`` and
hide raw ``reasoning_text``, so with ``ctx.reasoning_as_summary`` the backend's
reasoning becomes the item's one summary part. These scenarios pin the exact
event sequence, the item shape both type systems parse, the ``incomplete``
marking of a cut summary, and that the default mode is unchanged.
"""
from __future__ import annotations

import itertools
from typing import Any

from openai.types.responses import Response, ResponseReasoningItem
from openresponses_types import ReasoningBody

from proxy.translate.context import ResponseContext
from proxy.translate.reasoning_codec import decode_reasoning
from proxy.translate.stream import TRUNCATED_MESSAGE, StreamTranslator
from tests.conformance import check_response, check_stream, default_echo

NOW = 1_800_000_000
SUMMARY_ECHO = {"effort": None, "summary": "auto"}
USAGE = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
SUMMARY_EVENTS = {
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
}


def ch(delta: dict | None = None, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}


def run(chunks: list, *, summary: bool = True, emit: bool = True, finish: bool = True, **kw: Any) -> tuple[list[dict], dict]:
    counter = itertools.count()
    echo = default_echo(reasoning=SUMMARY_ECHO if summary else None)
    ctx = ResponseContext(response_id="resp_s", created_at=NOW - 1, model="m", echo=echo,
                          reasoning_as_summary=summary, **kw)
    t = StreamTranslator(ctx, emit_events=emit, clock=lambda: NOW, new_id=lambda prefix: f"{prefix}_{next(counter):04d}")
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    if finish:
        events += t.finish()
    return events, t.response


def both(chunks: list, **kw: Any) -> tuple[list[dict], dict]:
    """Streaming (conformance-checked) and JSON mode must give the same Response."""
    events, resp = run(chunks, **kw)
    assert check_stream(events) is resp
    _, json_resp = run(chunks, emit=False, **kw)
    check_response(json_resp)
    assert json_resp == resp
    return events, resp


def compact(events: list[dict]) -> list[tuple]:
    """(type, summary_index or content_index, delta/text) of the events between in_progress and the terminal."""
    out = []
    for ev in events[2:-1]:
        index = ev.get("summary_index", ev.get("content_index"))
        out.append((ev["type"], index, ev.get("delta", ev.get("text"))))
    return out


def test_exact_event_sequence_and_item_shape():
    events, resp = both([ch({"reasoning_content": "Let me "}), ch({"reasoning_content": "think."}),
                         ch({"content": "42"}), ch({}, "stop"), USAGE])
    assert compact(events)[:7] == [
        ("response.output_item.added", None, None),
        ("response.reasoning_summary_part.added", 0, None),
        ("response.reasoning_summary_text.delta", 0, "Let me "),
        ("response.reasoning_summary_text.delta", 0, "think."),
        ("response.reasoning_summary_text.done", 0, "Let me think."),
        ("response.reasoning_summary_part.done", 0, None),
        ("response.output_item.done", None, None),
    ]
    added, part_added = events[2], events[3]
    assert added["item"] == {"id": "rs_0000", "type": "reasoning", "summary": [], "status": "in_progress"}
    assert part_added["part"] == {"type": "summary_text", "text": ""}
    assert part_added["item_id"] == "rs_0000" and part_added["output_index"] == 0
    part_done = events[7]
    assert part_done["part"] == {"type": "summary_text", "text": "Let me think."} and "status" not in part_done
    item = resp["output"][0]
    assert item == {"id": "rs_0000", "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "Let me think."}], "status": "completed"}
    assert [it["type"] for it in resp["output"]] == ["reasoning", "message"]
    assert not any(ev["type"].startswith(("response.reasoning_text.", "response.content_part.")) and
                   ev.get("item_id") == "rs_0000" for ev in events)
    # What the SDKs make of it.
    parsed = Response.model_validate(resp).output[0]
    assert isinstance(parsed, ResponseReasoningItem)
    assert parsed.summary[0].text == "Let me think." and parsed.content is None
    body = ReasoningBody.model_validate(item)
    assert body.content is None and body.summary[0].text == "Let me think."


def test_default_mode_is_unchanged():
    events, resp = both([ch({"reasoning_content": "hmm"}), ch({"content": "ok"}), ch({}, "stop"), USAGE], summary=False)
    assert not SUMMARY_EVENTS & {ev["type"] for ev in events}
    assert [ev["type"] for ev in events[3:5]] == ["response.content_part.added", "response.reasoning_text.delta"]
    assert resp["output"][0]["summary"] == [] and resp["output"][0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]


def test_think_tags_become_the_summary():
    _, resp = both([ch({"content": "<think>plan"}), ch({"content": " it</think>\nDone."}), ch({}, "stop"), USAGE])
    assert resp["output"][0]["summary"] == [{"type": "summary_text", "text": "plan it"}]
    assert resp["output"][1]["content"][0]["text"] == "Done."


def test_encrypted_content_carries_the_full_text():
    _, resp = both([ch({"reasoning": "secret "}), ch({"reasoning": "plan"}), ch({"content": "ok"}), ch({}, "stop"), USAGE],
                   include_encrypted_reasoning=True)
    item = resp["output"][0]
    assert decode_reasoning(item["encrypted_content"]) == "secret plan" == item["summary"][0]["text"]


def test_reasoning_then_tool_call():
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    events, resp = both([ch({"reasoning_content": "use f"}), ch({"tool_calls": [call]}), ch({}, "tool_calls"), USAGE])
    assert [it["type"] for it in resp["output"]] == ["reasoning", "function_call"]
    types = [ev["type"] for ev in events]
    # The reasoning item is closed before the call's item is added.
    assert types.index("response.reasoning_summary_part.done") < types.index("response.output_item.added", 3)


def test_late_reasoning_segment_is_a_new_item_with_its_own_summary():
    events, resp = both([ch({"reasoning_content": "first"}), ch({"content": "text"}),
                         ch({"reasoning_content": "second"}), ch({}, "stop"), USAGE])
    assert [it["type"] for it in resp["output"]] == ["reasoning", "message", "reasoning"]
    assert [it["summary"] for it in resp["output"] if it["type"] == "reasoning"] == [
        [{"type": "summary_text", "text": "first"}], [{"type": "summary_text", "text": "second"}]]
    added = [ev for ev in events if ev["type"] == "response.reasoning_summary_part.added"]
    assert [(ev["output_index"], ev["summary_index"]) for ev in added] == [(0, 0), (2, 0)]


def test_length_cut_marks_the_summary_part_incomplete():
    events, resp = both([ch({"reasoning_content": "never "}), ch({"reasoning_content": "ends"}), ch({}, "length"), USAGE])
    assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "max_output_tokens"}
    part_done = next(ev for ev in events if ev["type"] == "response.reasoning_summary_part.done")
    assert part_done["status"] == "incomplete" and part_done["part"]["text"] == "never ends"
    assert resp["output"][0]["status"] == "incomplete"
    assert resp["output"][0]["summary"] == [{"type": "summary_text", "text": "never ends"}]


def test_truncated_stream_fails_with_the_summary_so_far():
    events, resp = run([ch({"reasoning_content": "half a tho"})])
    assert check_stream(events) is resp
    assert [ev["type"] for ev in events[-5:]] == [
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        "response.output_item.done", "error", "response.failed"]
    assert events[-4]["status"] == "incomplete"
    assert resp["status"] == "failed" and resp["error"]["message"] == TRUNCATED_MESSAGE
    assert resp["output"][0]["summary"][0]["text"] == "half a tho" and resp["output"][0]["status"] == "incomplete"
