"""Conformance checker for our Responses objects and event streams.

Reusable by unit and integration tests::

    from tests.conformance import check_response, check_stream, parse_sse

Every object is validated twice: against ``openresponses_types`` (pydantic
models of the Open Responses spec) and against ``openai.types.responses``
(what the openai SDK, the Agents SDK and — by the same wire names — Codex
parse). Where the two disagree we follow OpenAI, because that is what
unmodified clients parse, and map our object onto the Open Responses shape
before validating it there. The deliberate exceptions, each asserted below:

1. Reasoning events: we emit OpenAI's ``response.reasoning_text.delta/.done``;
   Open Responses spells them ``response.reasoning.delta/.done``. The name is
   mapped for Open Responses validation, and the Open Responses name must never
   appear in our streams.
2. The ``error`` event has OpenAI's flat shape (``code``, ``message``,
   ``param`` at top level). Open Responses nests them under ``error``; the
   openai SDK raises ``APIError`` on any event with a truthy ``error`` key, so
   that key must be absent. Mapped for Open Responses validation.
3. ``custom_tool_call`` items and ``response.custom_tool_call_input.*`` events
   exist only in OpenAI's types (Codex's freeform ``apply_patch`` needs them):
   they are validated against OpenAI's models only.
4. Echoed ``tools`` that are not ``function`` tools (``custom``,
   ``namespace``, …) exist only in OpenAI's types (Open Responses models only
   function tools): they are left out of the Open Responses validation. A
   ``tool_choice`` naming a custom tool (``{"type": "custom", "name"}``, alone or
   among ``allowed_tools``) is echoed so too, and seen as a function choice there.
5. ``text.format.schema`` of a ``json_schema`` format: the generated
   ``openresponses_types`` model declares it as ``None`` (a generator bug), so
   it is blanked for Open Responses validation.
6. ``conversation`` (``{"id": "conv_…"}``) is a top-level key beside the 31 when
   the request named a conversation: OpenAI's Response carries it (the openai
   SDK's ``Response.conversation``), the Open Responses spec has no such key.
7. ``reasoning.effort`` ``minimal`` and ``max``: the openai SDK's ``ReasoningEffort``
   has them, Open Responses' enum does not; the echo of a request that used one is
   validated against OpenAI's models, and blanked for Open Responses validation.
8. ``prompt_cache_retention`` and ``user`` (``OPENAI_KEYS``) follow the 31 keys in
   every Response: OpenAI's Response always carries them (null when the request
   did not set them), the Open Responses spec has neither.
9. ``access_programs``, ``image``, ``prompt_cache_options`` and
   ``prompt_cache_diagnostics`` (``OPTION_KEYS``) follow them when the request set
   the option they answer (``proxy.translate.options``): keys of the openai SDK's
   Response (null in OpenAI's when not requested), not of the Open Responses spec.

Reasoning items come in two shapes, never mixed: ``reasoning_text`` content
(``summary: []``), or — when the request asked for ``reasoning.summary`` —
``summary_text`` parts with no ``content`` key, streamed with the
``response.reasoning_summary_*`` events (part added before its deltas, deltas
concatenating to the one ``.done`` text, part done once, the final item's
summary equal to the done parts).

Open Responses models ignore unknown keys, so the top level of a Response is
checked by hand (exactly the 31 keys and OpenAI's two, ``SENT_KEYS``). OpenAI models keep unknown keys in
``model_extra``; we walk the whole parsed tree and fail on any extra key that
is not in ``ALLOWED_OPENAI_EXTRAS`` (each entry says why it is there).
"""
from __future__ import annotations

from typing import Any

import openresponses_types as ort
import orjson
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

__all__ = [
    "check_response", "check_stream", "parse_sse", "default_echo", "RESPONSE_KEYS", "OPENAI_KEYS", "SENT_KEYS",
    "OPTION_KEYS",
    "TERMINAL_TYPES",
]

RESPONSE_KEYS: tuple[str, ...] = tuple(ort.ResponseResource.model_fields)
assert len(RESPONSE_KEYS) == 31, RESPONSE_KEYS
# Exception 8: keys of OpenAI's Response beyond the spec's, in every Response we send.
OPENAI_KEYS: tuple[str, ...] = ("prompt_cache_retention", "user")
assert set(OPENAI_KEYS) <= set(Response.model_fields) and not set(OPENAI_KEYS) & set(RESPONSE_KEYS)
# Every Response's top-level keys, in the order we send them (``conversation`` may follow).
SENT_KEYS: tuple[str, ...] = RESPONSE_KEYS + OPENAI_KEYS
# Exception 9: keys of OpenAI's Response sent only when the request set their option, in this order.
OPTION_KEYS: tuple[str, ...] = ("access_programs", "image", "prompt_cache_options", "prompt_cache_diagnostics")
assert set(OPTION_KEYS) <= set(Response.model_fields) and not set(OPTION_KEYS) & set(RESPONSE_KEYS)

TERMINAL_TYPES = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}

# (module.Class, key) pairs that may appear in an OpenAI model's model_extra.
ALLOWED_OPENAI_EXTRAS: frozenset[tuple[str, str]] = frozenset(
    {
        # Spec ResponseResource keys the openai SDK's Response does not declare.
        ("response.Response", "presence_penalty"),
        ("response.Response", "frequency_penalty"),
        ("response.Response", "store"),
        # A function choice qualified by the namespace of the tool it names, echoed as the client
        # sent it (the proxy resolves such a choice; the SDK's ToolChoiceFunction keeps it as an extra).
        ("tool_choice_function.ToolChoiceFunction", "namespace"),
        # Codex's CustomToolCall item carries a status, as every other item does.
        ("response_custom_tool_call.ResponseCustomToolCall", "status"),
        # Open Responses' LogProb requires `bytes`; OpenAI's delta/done-event
        # logprob models do not declare it (its output_text part model does).
        ("response_text_delta_event.Logprob", "bytes"),
        ("response_text_delta_event.LogprobTopLogprob", "bytes"),
        ("response_text_done_event.Logprob", "bytes"),
        ("response_text_done_event.LogprobTopLogprob", "bytes"),
    }
)

_STREAM_ADAPTER: TypeAdapter = TypeAdapter(ResponseStreamEvent)

# Our event type -> the Open Responses model (and the name it has there).
_ORT_EVENTS: dict[str, tuple[type[BaseModel], str]] = {
    "response.created": (ort.ResponseCreatedStreamingEvent, "response.created"),
    "response.queued": (ort.ResponseQueuedStreamingEvent, "response.queued"),
    "response.in_progress": (ort.ResponseInProgressStreamingEvent, "response.in_progress"),
    "response.completed": (ort.ResponseCompletedStreamingEvent, "response.completed"),
    "response.failed": (ort.ResponseFailedStreamingEvent, "response.failed"),
    "response.incomplete": (ort.ResponseIncompleteStreamingEvent, "response.incomplete"),
    "response.output_item.added": (ort.ResponseOutputItemAddedStreamingEvent, "response.output_item.added"),
    "response.output_item.done": (ort.ResponseOutputItemDoneStreamingEvent, "response.output_item.done"),
    "response.content_part.added": (ort.ResponseContentPartAddedStreamingEvent, "response.content_part.added"),
    "response.content_part.done": (ort.ResponseContentPartDoneStreamingEvent, "response.content_part.done"),
    "response.output_text.delta": (ort.ResponseOutputTextDeltaStreamingEvent, "response.output_text.delta"),
    "response.output_text.done": (ort.ResponseOutputTextDoneStreamingEvent, "response.output_text.done"),
    "response.refusal.delta": (ort.ResponseRefusalDeltaStreamingEvent, "response.refusal.delta"),
    "response.refusal.done": (ort.ResponseRefusalDoneStreamingEvent, "response.refusal.done"),
    # Exception 1: OpenAI name -> Open Responses name.
    "response.reasoning_text.delta": (ort.ResponseReasoningDeltaStreamingEvent, "response.reasoning.delta"),
    "response.reasoning_text.done": (ort.ResponseReasoningDoneStreamingEvent, "response.reasoning.done"),
    "response.reasoning_summary_part.added": (
        ort.ResponseReasoningSummaryPartAddedStreamingEvent,
        "response.reasoning_summary_part.added",
    ),
    "response.reasoning_summary_part.done": (
        ort.ResponseReasoningSummaryPartDoneStreamingEvent,
        "response.reasoning_summary_part.done",
    ),
    "response.reasoning_summary_text.delta": (
        ort.ResponseReasoningSummaryDeltaStreamingEvent,
        "response.reasoning_summary_text.delta",
    ),
    "response.reasoning_summary_text.done": (
        ort.ResponseReasoningSummaryDoneStreamingEvent,
        "response.reasoning_summary_text.done",
    ),
    "response.output_text.annotation.added": (
        ort.ResponseOutputTextAnnotationAddedStreamingEvent,
        "response.output_text.annotation.added",
    ),
    "response.function_call_arguments.delta": (
        ort.ResponseFunctionCallArgumentsDeltaStreamingEvent,
        "response.function_call_arguments.delta",
    ),
    "response.function_call_arguments.done": (
        ort.ResponseFunctionCallArgumentsDoneStreamingEvent,
        "response.function_call_arguments.done",
    ),
    "error": (ort.ErrorStreamingEvent, "error"),
}
# Exception 3: events only OpenAI defines.
_OPENAI_ONLY_EVENTS = frozenset({"response.custom_tool_call_input.delta", "response.custom_tool_call_input.done"})
# Exception 1, asserted: these names must never be emitted.
_FORBIDDEN_EVENTS = frozenset({"response.reasoning.delta", "response.reasoning.done"})
_OPENAI_ONLY_ITEMS = frozenset({"custom_tool_call"})
# Exception 7: reasoning efforts only OpenAI defines.
_OPENAI_ONLY_EFFORTS = frozenset({"minimal", "max"})


# --------------------------------------------------------------- helpers


def _model_key(model: BaseModel) -> str:
    cls = type(model)
    return cls.__module__.rsplit(".", 1)[-1] + "." + cls.__name__


def _assert_no_extra(value: Any, path: str) -> None:
    """Fail on any key the OpenAI model did not declare (outside the allow-list)."""
    if isinstance(value, BaseModel):
        extra = value.model_extra or {}
        key = _model_key(value)
        for name in extra:
            assert (key, name) in ALLOWED_OPENAI_EXTRAS, f"{path}: unknown key {name!r} for OpenAI model {key}"
        for name in type(value).model_fields:
            _assert_no_extra(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _assert_no_extra(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            _assert_no_extra(v, f"{path}.{k}")


def _ort_response_view(obj: dict) -> dict:
    """The Response as Open Responses can express it (exceptions 3–5 and 7)."""
    view = dict(obj)
    view["output"] = [it for it in obj.get("output") or [] if it.get("type") not in _OPENAI_ONLY_ITEMS]
    tools = obj.get("tools")
    if isinstance(tools, list):
        view["tools"] = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
    choice = obj.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") == "custom":
            view["tool_choice"] = {**choice, "type": "function"}
        elif choice.get("type") == "allowed_tools" and isinstance(choice.get("tools"), list):
            view["tool_choice"] = {**choice, "tools": [
                {**t, "type": "function"} if isinstance(t, dict) and t.get("type") == "custom" else t
                for t in choice["tools"]]}
    text = obj.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict) and text["format"].get("type") == "json_schema":
        view["text"] = {**text, "format": {**text["format"], "schema": None}}
    reasoning = obj.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") in _OPENAI_ONLY_EFFORTS:
        view["reasoning"] = {**reasoning, "effort": None}
    return view


def _check_item(item: dict, where: str) -> None:
    """Field-level facts both type systems leave optional but clients rely on."""
    t = item.get("type")
    assert isinstance(item.get("id"), str) and item["id"], f"{where}: item without id"
    assert item.get("status") in ("in_progress", "completed", "incomplete"), f"{where}: bad status {item.get('status')!r}"
    if t == "message":
        assert item["id"].startswith("msg_"), where
        assert item.get("role") == "assistant", where
        assert item.get("content"), f"{where}: message item without content"
        for part in item["content"]:
            if part["type"] == "output_text":
                notes = part.get("annotations")
                assert isinstance(notes, list), f"{where}: output_text without an annotations list"
                for note in notes:  # (the types are checked by both libraries' models)
                    assert note["type"] == "url_citation" and note["url"], f"{where}: annotation {note}"
                assert isinstance(part.get("logprobs"), list), f"{where}: output_text without logprobs list"
            else:
                assert part["type"] == "refusal", f"{where}: unexpected part {part['type']}"
    elif t == "reasoning":
        assert item["id"].startswith("rs_"), where
        summary = item.get("summary")
        assert isinstance(summary, list), f"{where}: reasoning without a summary list"
        for part in summary:
            assert part["type"] == "summary_text" and isinstance(part.get("text"), str), where
        if summary:
            # Summary mode, as OpenAI sends it: the summary stands alone.
            assert "content" not in item, f"{where}: reasoning with both summary and content"
        else:
            assert isinstance(item.get("content"), list), f"{where}: reasoning without content or summary"
            for part in item["content"]:
                assert part["type"] == "reasoning_text", where
    elif t == "function_call":
        assert item["id"].startswith("fc_"), where
        assert item["call_id"] and item["call_id"] != item["id"], where
        assert isinstance(item.get("name"), str) and item["name"], where
        assert isinstance(item.get("arguments"), str), where
    elif t == "custom_tool_call":
        assert item["id"].startswith("ctc_"), where
        assert item["call_id"] and item["call_id"] != item["id"], where
        assert isinstance(item.get("input"), str), where
    else:
        raise AssertionError(f"{where}: unexpected output item type {t!r}")


# --------------------------------------------------------------- public API


def check_response(obj: dict) -> dict:
    """Assert ``obj`` is a valid Response for both type systems; return it."""
    assert isinstance(obj, dict), type(obj)
    keys = set(obj)
    missing = [k for k in SENT_KEYS if k not in keys]
    extra = sorted(keys - set(SENT_KEYS) - {"conversation"} - set(OPTION_KEYS))  # exceptions 6, 8 and 9
    shown = [k for k in obj if k in OPTION_KEYS]
    assert shown == [k for k in OPTION_KEYS if k in obj], f"option keys out of order: {shown}"
    if "conversation" in obj:
        conv = obj["conversation"]
        assert isinstance(conv, dict) and set(conv) == {"id"} and conv["id"].startswith("conv_"), conv
    assert not missing, f"Response lacks keys {missing}"
    assert not extra, f"Response has unknown top-level keys {extra}"

    ort.ResponseResource.model_validate(_ort_response_view(obj))
    parsed = Response.model_validate(obj)
    _assert_no_extra(parsed, "response")

    status = obj["status"]
    assert obj["object"] == "response"
    assert obj["id"].startswith("resp_"), obj["id"]
    # queued and cancelled: a background response's (polled, or answered by a cancel)
    assert status in ("queued", "in_progress", "completed", "incomplete", "failed", "cancelled"), status
    if status == "completed":
        assert isinstance(obj["completed_at"], int), "completed response without completed_at"
    else:
        assert obj["completed_at"] is None, f"{status} response with completed_at"
    assert (obj["incomplete_details"] is not None) == (status == "incomplete"), "incomplete_details vs status"
    assert (obj["error"] is not None) == (status == "failed"), "error vs status"
    if status in ("completed", "incomplete"):
        assert obj["usage"] is not None, f"{status} response without usage"
    usage = obj["usage"]
    if usage is not None:
        assert set(usage["input_tokens_details"]) >= {"cached_tokens", "cache_write_tokens"}, usage
        assert "reasoning_tokens" in usage["output_tokens_details"], usage
    ids = [it.get("id") for it in obj["output"]]
    assert len(ids) == len(set(ids)), f"duplicate output item ids {ids}"
    for i, item in enumerate(obj["output"]):
        _check_item(item, f"output[{i}]")
        if status == "completed":
            assert item["status"] == "completed", f"output[{i}] {item['status']} in a completed response"
    return obj


def _validate_event(ev: dict) -> None:
    t = ev["type"]
    assert t not in _FORBIDDEN_EVENTS, f"Open Responses-only event name {t!r} emitted (we emit reasoning_text.*)"
    if t == "error":
        assert "error" not in ev, "error event must be flat (a nested `error` makes the openai SDK raise)"
    # OpenAI
    parsed = _STREAM_ADAPTER.validate_python(ev)
    assert parsed.type == t, f"event {t!r} parsed as {parsed.type!r}"
    _assert_no_extra(parsed, t)
    # Open Responses
    if t in _OPENAI_ONLY_EVENTS:
        return
    assert t in _ORT_EVENTS, f"event type {t!r} is in neither Open Responses nor our exception list"
    model, ort_name = _ORT_EVENTS[t]
    view = dict(ev, type=ort_name)
    if t == "error":
        view = {
            "type": "error",
            "sequence_number": ev["sequence_number"],
            "error": {"type": "server_error", "code": ev.get("code"), "message": ev["message"], "param": ev.get("param")},
        }
    if "response" in ev:
        view["response"] = _ort_response_view(ev["response"])
    if "item" in ev and ev["item"].get("type") in _OPENAI_ONLY_ITEMS:
        return  # exception 3: only OpenAI models custom_tool_call items
    model.model_validate(view)


class _Part:
    __slots__ = ("type", "text", "logprobs", "annotations", "text_done", "done", "final", "status")

    def __init__(self, ptype: str) -> None:
        self.type = ptype
        self.text: list[str] = []
        self.logprobs: list = []
        self.annotations: list = []
        self.text_done = False
        self.done = False
        self.final: dict | None = None
        self.status: str | None = None  # a summary part's done status ("incomplete" or absent)


class _Item:
    __slots__ = ("id", "type", "parts", "summary", "payload", "payload_done", "done", "final")

    def __init__(self, item: dict) -> None:
        self.id = item["id"]
        self.type = item["type"]
        self.parts: list[_Part] = []
        self.summary: list[_Part] = []  # reasoning summary parts, by summary_index
        self.payload: list[str] = []  # arguments / input deltas
        self.payload_done: str | None = None
        self.done = False
        self.final: dict | None = None


_DELTA_PART = {
    "response.output_text.delta": "output_text",
    "response.refusal.delta": "refusal",
    "response.reasoning_text.delta": "reasoning_text",
}
_DONE_PART = {
    "response.output_text.done": ("output_text", "text"),
    "response.refusal.done": ("refusal", "refusal"),
    "response.reasoning_text.done": ("reasoning_text", "text"),
}
_PART_TEXT_KEY = {"output_text": "text", "refusal": "refusal", "reasoning_text": "text"}


def _check_head(events: list[dict]) -> int:
    """The stream's start; how many events it is. ``response.created`` then ``response.in_progress``,
    both with the Response ``in_progress``; or, a background response's (as OpenAI starts a queued
    one), ``response.created`` and ``response.queued`` with it ``queued``, then ``response.in_progress``
    (or, when it fails before it started, at once its ``error`` and ``response.failed``). None of the three appears anywhere else (the item loop rejects events without an output_index)."""
    types = [ev["type"] for ev in events[:3]]
    queued = types[1] == "response.queued"
    # A queued response that fails before its job could start (the store refused to mark it
    # in_progress): its head is created and queued, then the stream's error and response.failed.
    failed_queued = queued and types[2:] == ["error"] and events[-1]["type"] == "response.failed" and len(events) == 4
    head = 2 if failed_queued else 3 if queued else 2
    expected = ["response.created", "response.queued"] if failed_queued else [
        "response.created", "response.queued", "response.in_progress"] if queued else [
        "response.created", "response.in_progress"]
    assert types[:head] == expected, f"stream starts {types}"
    assert len(events) > head, f"stream ends after its head: {types}"
    resp_id = events[0]["response"]["id"]
    for i, ev in enumerate(events[:head]):
        r = check_response(ev["response"])
        status = "queued" if queued and i < 2 else "in_progress"
        assert r["status"] == status, f"{ev['type']} with the Response {r['status']}, not {status}"
        assert r["output"] == [] and r["usage"] is None, ev["type"]
        assert r["id"] == resp_id
        if queued:
            assert r["background"] is True, "a queued Response that is not a background one"
    return head


def check_stream(events: list[dict]) -> dict:
    """Validate every event and the stream's state machine; return the final Response."""
    assert len(events) >= 3, f"stream too short: {[e.get('type') for e in events]}"
    for i, ev in enumerate(events):
        assert isinstance(ev, dict) and isinstance(ev.get("type"), str), f"event {i} malformed"
        assert ev.get("sequence_number") == i, f"event {i} ({ev['type']}) has sequence_number {ev.get('sequence_number')}"
        _validate_event(ev)

    head = _check_head(events)
    resp_id = events[0]["response"]["id"]

    terminals = [i for i, ev in enumerate(events) if ev["type"] in TERMINAL_TYPES]
    assert terminals == [len(events) - 1], f"terminal events at {terminals} of {len(events)}"
    errors = [i for i, ev in enumerate(events) if ev["type"] == "error"]
    if events[-1]["type"] == "response.failed":
        assert errors == [len(events) - 2], f"response.failed must follow exactly one error event, got {errors}"
    else:
        assert not errors, "error event in a stream that did not fail"

    items: dict[int, _Item] = {}
    ids: set[str] = set()
    for ev in events[head:-1]:
        t = ev["type"]
        if t == "error":
            continue
        idx = ev.get("output_index")
        assert isinstance(idx, int), f"{t} without output_index"
        if t == "response.output_item.added":
            assert idx not in items, f"output_index {idx} added twice"
            assert idx == len(items), f"output_index {idx} added out of order (expected {len(items)})"
            item = ev["item"]
            assert item["status"] == "in_progress", f"item added with status {item['status']}"
            assert item["id"] not in ids, f"item id {item['id']} reused"
            ids.add(item["id"])
            if item["type"] == "function_call":
                assert item["name"] and item["call_id"], "function_call added without name/call_id"
                assert item["arguments"] == "", "function_call added with arguments"
            if item["type"] == "custom_tool_call":
                assert item["name"] and item["call_id"], "custom_tool_call added without name/call_id"
                assert item["input"] == "", "custom_tool_call added with input"
            if item["type"] == "message":
                assert item.get("content") == [], "message added with content"
            if item["type"] == "reasoning":
                assert item.get("summary") == [], "reasoning added with a summary"
                assert item.get("content", []) == [], "reasoning added with content"
            items[idx] = _Item(item)
            continue
        assert idx in items, f"{t} for output_index {idx} before output_item.added"
        it = items[idx]
        assert not it.done, f"{t} for output_index {idx} after output_item.done"
        if "item_id" in ev:
            assert ev["item_id"] == it.id, f"{t}: item_id {ev['item_id']} != {it.id}"
        if t == "response.content_part.added":
            assert it.type in ("message", "reasoning"), f"content part on {it.type}"
            assert ev["content_index"] == len(it.parts), f"content_index {ev['content_index']} out of order"
            assert all(p.done for p in it.parts), "content part added while another is open"
            part = ev["part"]
            assert part[_PART_TEXT_KEY[part["type"]]] == "", "content part added with text"
            assert part.get("annotations", []) == [], "content part added with annotations"
            expected = ("reasoning_text",) if it.type == "reasoning" else ("output_text", "refusal")
            assert part["type"] in expected, f"{part['type']} part in a {it.type} item"
            assert not it.summary, "reasoning_text content added to an item streaming a summary"
            it.parts.append(_Part(part["type"]))
        elif t == "response.reasoning_summary_part.added":
            assert it.type == "reasoning", f"summary part on {it.type}"
            assert not it.parts, "summary part added to an item streaming reasoning_text content"
            assert ev["summary_index"] == len(it.summary), f"summary_index {ev['summary_index']} out of order"
            assert all(p.done for p in it.summary), "summary part added while another is open"
            assert ev["part"] == {"type": "summary_text", "text": ""}, f"summary part added as {ev['part']}"
            it.summary.append(_Part("summary_text"))
        elif t in ("response.reasoning_summary_text.delta", "response.reasoning_summary_text.done"):
            si = ev["summary_index"]
            assert si < len(it.summary), f"{t} before reasoning_summary_part.added"
            p = it.summary[si]
            assert not p.text_done, f"{t} after the summary part's text done"
            if t.endswith(".delta"):
                assert ev["delta"], f"empty {t}"
                p.text.append(ev["delta"])
            else:
                assert ev["text"] == "".join(p.text), f"{t}: text != concatenated deltas"
                p.text_done = True
        elif t == "response.reasoning_summary_part.done":
            si = ev["summary_index"]
            assert si < len(it.summary), "reasoning_summary_part.done before added"
            p = it.summary[si]
            assert p.text_done and not p.done, "summary part done before its text done event, or twice"
            part = ev["part"]
            assert part == {"type": "summary_text", "text": "".join(p.text)}, "summary part done text != deltas"
            assert ev.get("status", "incomplete") == "incomplete", f"summary part done with status {ev['status']}"
            p.done = True
            p.final = part
            p.status = ev.get("status")  # checked against the item's status at output_item.done
        elif t in _DELTA_PART:
            ci = ev["content_index"]
            assert ci < len(it.parts), f"{t} before content_part.added"
            p = it.parts[ci]
            assert p.type == _DELTA_PART[t], f"{t} on a {p.type} part"
            assert not p.text_done, f"{t} after the part's done event"
            assert ev["delta"], f"empty {t}"
            p.text.append(ev["delta"])
            if t == "response.output_text.delta":
                p.logprobs.extend(ev["logprobs"])
        elif t == "response.output_text.annotation.added":
            ci = ev["content_index"]
            assert ci < len(it.parts), f"{t} before content_part.added"
            p = it.parts[ci]
            assert p.type == "output_text" and not p.done, f"{t} on a {p.type} part, or after its done event"
            assert ev["annotation_index"] == len(p.annotations), f"{t}: annotation_index out of order"
            p.annotations.append(ev["annotation"])
        elif t in _DONE_PART:
            ptype, key = _DONE_PART[t]
            ci = ev["content_index"]
            assert ci < len(it.parts), f"{t} before content_part.added"
            p = it.parts[ci]
            assert p.type == ptype and not p.text_done, f"{t} twice or on a {p.type} part"
            assert ev[key] == "".join(p.text), f"{t}: text != concatenated deltas"
            if t == "response.output_text.done":
                assert ev["logprobs"] == p.logprobs, "output_text.done logprobs != deltas' logprobs"
            p.text_done = True
        elif t == "response.content_part.done":
            ci = ev["content_index"]
            assert ci < len(it.parts), "content_part.done before added"
            p = it.parts[ci]
            assert p.text_done and not p.done, "content_part.done before its text done event, or twice"
            part = ev["part"]
            assert part["type"] == p.type
            assert part[_PART_TEXT_KEY[p.type]] == "".join(p.text), "content_part.done text != deltas"
            if p.type == "output_text":
                assert part["logprobs"] == p.logprobs
                assert part["annotations"] == p.annotations, "content_part.done annotations != annotation.added events"
            p.done = True
            p.final = part
        elif t in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            want = "function_call" if t.startswith("response.function") else "custom_tool_call"
            assert it.type == want, f"{t} on a {it.type} item"
            assert it.payload_done is None, f"{t} after done"
            assert ev["delta"], f"empty {t}"
            it.payload.append(ev["delta"])
        elif t in ("response.function_call_arguments.done", "response.custom_tool_call_input.done"):
            want = "function_call" if t.startswith("response.function") else "custom_tool_call"
            assert it.type == want and it.payload_done is None, f"{t} on {it.type} or twice"
            value = ev["arguments"] if want == "function_call" else ev["input"]
            assert value == "".join(it.payload), f"{t}: value != concatenated deltas"
            it.payload_done = value
        elif t == "response.output_item.done":
            item = ev["item"]
            assert item["id"] == it.id and item["type"] == it.type, "output_item.done changed id/type"
            assert item["status"] in ("completed", "incomplete"), f"item done with status {item['status']}"
            assert all(p.done for p in it.parts), "output_item.done with an open content part"
            assert all(p.done for p in it.summary), "output_item.done with an open summary part"
            if it.type == "reasoning" and it.summary:
                assert item["summary"] == [p.final for p in it.summary], "item summary != its done summary parts"
                assert "content" not in item, "summary-mode reasoning item with content"
                cut = item["status"] == "incomplete"
                for p in it.summary:
                    assert p.status == ("incomplete" if cut else None), (
                        "summary part done status must be 'incomplete' exactly when the item is"
                    )
            elif it.type in ("message", "reasoning"):
                assert item["content"] == [p.final for p in it.parts], "item content != its done parts"
                if it.type == "message":
                    assert it.parts, "message item without content parts"
                else:
                    assert item["summary"] == [], "reasoning summary without summary events"
            elif it.type == "function_call":
                assert it.payload_done is not None, "function_call done without arguments.done"
                assert item["arguments"] == it.payload_done
            elif it.type == "custom_tool_call":
                assert it.payload_done is not None, "custom_tool_call done without input.done"
                assert item["input"] == it.payload_done
            it.done = True
            it.final = item
        else:
            raise AssertionError(f"unexpected event type {t!r}")

    final = events[-1]["response"]
    check_response(final)
    assert final["id"] == resp_id
    assert final["status"] == TERMINAL_TYPES[events[-1]["type"]], "terminal event type != response status"
    assert all(it.done for it in items.values()), "terminal event with items not done"
    assert final["output"] == [items[i].final for i in range(len(items))], "final output != the done items"
    return final


def parse_sse(raw: bytes) -> list[dict]:
    """Parse our SSE bytes into event dicts, asserting the wire format.

    Each event is exactly ``event: <type>`` + ``data: <one-line JSON>`` with the
    same type; SSE comments (keep-alives) may stand alone between events; the
    stream ends with ``data: [DONE]``.
    """
    assert raw.endswith(b"\n\n"), "stream does not end with a blank line"
    blocks = raw[:-2].split(b"\n\n")
    assert blocks and blocks[-1] == b"data: [DONE]", f"stream does not end with data: [DONE]: {blocks[-1:]!r}"
    events: list[dict] = []
    for block in blocks[:-1]:
        lines = block.split(b"\n")
        if all(line.startswith(b":") for line in lines):
            continue  # comment-only block (keep-alive)
        assert len(lines) == 2, f"event block must be 2 lines, got {lines!r}"
        head, data = lines
        assert head.startswith(b"event: ") and data.startswith(b"data: "), f"bad event block {block!r}"
        ev = orjson.loads(data[6:])
        assert isinstance(ev, dict)
        assert head[7:].decode() == ev.get("type"), f"event: {head[7:]!r} != JSON type {ev.get('type')!r}"
        events.append(ev)
    return events


def default_echo(**overrides: Any) -> dict[str, Any]:
    """The 23 echoed request values with the defaults a request that sets none gets (for building test contexts)."""
    from proxy.translate.context import ECHO_KEYS

    echo: dict[str, Any] = {
        "previous_response_id": None,
        "instructions": None,
        "tools": [],
        "tool_choice": "auto",
        "truncation": "disabled",
        "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "top_p": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "top_logprobs": 0,
        "temperature": 1.0,
        "reasoning": {"effort": None, "summary": None},
        "max_output_tokens": None,
        "max_tool_calls": None,
        "store": True,
        "background": False,
        "service_tier": "auto",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
        "prompt_cache_retention": None,
        "user": None,
    }
    unknown = set(overrides) - set(echo)
    assert not unknown, unknown
    echo.update(overrides)
    assert tuple(sorted(echo)) == tuple(sorted(ECHO_KEYS))
    return echo
