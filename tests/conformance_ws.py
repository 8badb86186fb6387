"""Conformance for WebSocket frames and compaction, on top of ``tests/conformance.py``.

Reusable by every test that drives WebSocket mode or compaction::

    from tests.conformance_ws import check_ws_stream, check_ws_error, check_compacted, check_trigger_stream

Every server frame is validated against the openai SDK's WebSocket union
(``ResponsesServerEvent``: what ``client.responses.connect()`` parses, and by
the same wire names Codex and the Agents SDK), strictly, with no undeclared
key. The deliberate differences from the SSE checks, each asserted here:

1. ``error`` frames nest ``code``/``message``/``param``/``type`` under ``error``
   (``ResponseWsError``), where an SSE ``error`` event is flat. A stream's error
   keeps its ``sequence_number``; it is flattened back and the whole stream then
   goes through ``check_stream``, so the grammar and the sequence numbers are
   the SSE stream's exactly. A protocol error (no response began) carries the
   HTTP ``status`` instead, and nothing else of a response.
2. A compaction (``compaction_trigger``) stream's single output item is a
   ``compaction`` item, which has no ``status`` in either type system: it is
   validated against ``ResponseCompactionItem`` and Open Responses'
   ``CompactionBody`` instead of ``check_stream``'s per-item state machine.
3. ``CompactedResponse.output`` is typed ``ResponseOutputItem`` in the SDK, whose
   messages are assistant messages only, yet the API (and the SDK's docstring)
   puts the conversation's *user* messages there: those are validated as the
   SDK's ``ResponseInputMessageItem``; the whole object against Open Responses'
   ``CompactResource``, which allows them.
"""
from __future__ import annotations

from typing import Any

import openresponses_types as ort
from openai.types.responses import (
    CompactedResponse,
    Response,
    ResponseCompactionItem,
    ResponseInputMessageItem,
    ResponseStreamEvent,
)
from openai.types.responses.responses_server_event import ResponsesServerEvent, ResponseWsError
from pydantic import TypeAdapter

from tests.conformance import SENT_KEYS, _assert_no_extra, _ort_response_view, check_response, check_stream

__all__ = [
    "check_ws_stream", "check_ws_error", "check_compacted", "check_trigger_stream", "split_responses", "split_lanes",
]

_WS_ADAPTER: TypeAdapter = TypeAdapter(ResponsesServerEvent)
_SSE_ADAPTER: TypeAdapter = TypeAdapter(ResponseStreamEvent)
TERMINALS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _validate_frame(frame: dict) -> Any:
    parsed = _WS_ADAPTER.validate_python(frame)
    assert parsed.type == frame["type"], f"frame {frame['type']!r} parsed as {parsed.type!r}"
    _assert_no_extra(parsed, frame["type"])
    return parsed


def check_ws_error(frame: dict, status: int | None = None, code: str | None = None) -> dict:
    """A protocol ``error`` frame (no response began): the SDK's ``ResponseWsError``, with an HTTP
    status and an OpenAI-shaped ``error``; returns its ``error`` object."""
    assert frame.get("type") == "error", frame
    assert set(frame) <= {"type", "status", "error"}, f"protocol error with extra keys: {frame}"
    parsed = _validate_frame(frame)
    assert isinstance(parsed, ResponseWsError)
    error = frame["error"]
    assert set(error) >= {"type", "code", "message", "param"} and set(error) <= {"type", "code", "message", "param", "headers"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(frame["status"], int) and 400 <= frame["status"] < 600, frame
    if status is not None:
        assert frame["status"] == status, frame
    if code is not None:
        assert error["code"] == code, frame
    return error


def check_ws_stream(frames: list[dict]) -> dict:
    """One response's frames: each valid as a WebSocket frame, together a valid SSE stream; the final Response."""
    events = []
    for frame in frames:
        _validate_frame(frame)
        if frame["type"] == "error":
            assert set(frame) == {"type", "sequence_number", "error"}, f"stream error frame: {frame}"
            err = frame["error"]
            assert set(err) == {"type", "code", "message", "param"}, err
            frame = {"type": "error", "sequence_number": frame["sequence_number"], "code": err["code"],
                     "message": err["message"], "param": err["param"]}
        events.append(frame)
    return check_stream(events)


def split_responses(frames: list[dict]) -> list[list[dict]]:
    """Cut a connection's frames into responses (each ending with its terminal event)."""
    out: list[list[dict]] = []
    current: list[dict] = []
    for frame in frames:
        current.append(frame)
        if frame["type"] in TERMINALS:
            out.append(current)
            current = []
    assert not current, f"frames after the last terminal event: {[f['type'] for f in current]}"
    return out


def split_lanes(frames: list[dict]) -> dict[str | None, list[dict]]:
    """A connection's frames by lane (``stream_id``; None: the default lane), each lane's in the
    order they came and without their ``stream_id``, ready for ``check_ws_stream`` / ``check_ws_error``
    (the SSE grammar has no ``stream_id``; each frame is first validated with it, as sent)."""
    out: dict[str | None, list[dict]] = {}
    for frame in frames:
        _validate_frame(frame)
        stream_id = frame.get("stream_id")
        assert stream_id is None or (isinstance(stream_id, str) and stream_id), frame
        out.setdefault(stream_id, []).append({k: v for k, v in frame.items() if k != "stream_id"})
    return out


def _check_compaction_item(item: dict) -> None:
    assert set(item) == {"id", "type", "encrypted_content"}, item
    assert item["type"] == "compaction" and item["id"].startswith("cmp_"), item
    assert item["encrypted_content"].startswith("rpxc1."), item
    _assert_no_extra(ResponseCompactionItem.model_validate(item), "compaction item")
    ort.CompactionBody.model_validate(item)


def check_trigger_stream(events: list[dict]) -> dict:
    """A ``compaction_trigger`` request's stream (SSE events or WebSocket frames): created,
    in_progress, the one compaction item added and done, completed. Returns the final Response."""
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.output_item.done",
        "response.completed",
    ], [e["type"] for e in events]
    for i, event in enumerate(events):
        assert event["sequence_number"] == i, event
        parsed = _SSE_ADAPTER.validate_python(event)
        _assert_no_extra(parsed, event["type"])
        _validate_frame(event)
    for event in events[:2]:
        assert check_response(event["response"])["output"] == []
    item = events[2]["item"]
    _check_compaction_item(item)
    assert events[3]["item"] == item and events[2]["output_index"] == events[3]["output_index"] == 0
    final = events[4]["response"]
    assert final["id"] == events[0]["response"]["id"]
    check_final_trigger_response(final)
    assert final["output"] == [item]
    return final


def check_final_trigger_response(final: dict) -> None:
    """A finished Response whose only output is a compaction item (``check_response`` but item 2)."""
    assert tuple(sorted(final)) == tuple(sorted(SENT_KEYS)), sorted(final)
    assert final["status"] == "completed" and isinstance(final["completed_at"], int), final["status"]
    assert final["error"] is None and final["incomplete_details"] is None and final["usage"] is not None
    _assert_no_extra(Response.model_validate(final), "response")
    ort.ResponseResource.model_validate(_ort_response_view(final))
    assert len(final["output"]) == 1, final["output"]
    _check_compaction_item(final["output"][0])


def check_compacted(obj: dict) -> dict:
    """``POST /v1/responses/compact``'s answer: the SDK's ``CompactedResponse`` (exception 3)."""
    assert set(obj) == {"id", "object", "created_at", "output", "usage"}, sorted(obj)
    assert obj["object"] == "response.compaction" and obj["id"].startswith("resp_"), obj
    ort.CompactResource.model_validate(obj)
    *messages, item = obj["output"]
    for message in messages:
        assert message["role"] == "user" and message["type"] == "message", message
        _assert_no_extra(ResponseInputMessageItem.model_validate(message), "user message")
    _check_compaction_item(item)
    parsed = CompactedResponse.model_validate({**obj, "output": [item]})
    _assert_no_extra(parsed, "compacted response")
    usage = obj["usage"]
    assert set(usage["input_tokens_details"]) >= {"cached_tokens", "cache_write_tokens"}, usage
    return obj
