"""The emitter and its JSON-mode twin: one event per constructor, and none at all in JSON mode.

Every public constructor of ``Emitter`` is called on both emitters with the
same arguments: the live one builds exactly one event, named after the
constructor, with the next sequence number; the silent one builds nothing but
hands out the same output indexes and places the same items. A constructor
added to ``Emitter`` without its no-op in ``SilentEmitter`` fails here.
"""
from __future__ import annotations

import inspect
from typing import Any

from proxy.translate.stream.events import Emitter
from proxy.translate.stream.silent import SilentEmitter

ITEM = {"id": "msg_1", "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
ARGS: dict[str, Any] = {
    "response": {"id": "resp_1"}, "item": ITEM, "code": "server_error", "message": "m", "item_id": "msg_1",
    "index": 0, "part_index": 0, "part": {"type": "output_text", "text": ""}, "delta": "d", "text": "t",
    "logprobs": [], "refusal": "r", "arguments": "{}", "input": "i", "incomplete": True, "annotation_index": 0,
    "annotation": {"type": "url_citation", "url": "https://example.com/", "title": "t", "start_index": 0,
                   "end_index": 1},
}
# Constructor name → event type, where the rule (dots for underscores) needs help.
TYPES = {
    "error": "error",
    "output_item_added": "response.output_item.added",
    "output_item_done": "response.output_item.done",
    "content_part_added": "response.content_part.added",
    "content_part_done": "response.content_part.done",
    "output_text_delta": "response.output_text.delta",
    "output_text_done": "response.output_text.done",
    "output_text_annotation_added": "response.output_text.annotation.added",
    "refusal_delta": "response.refusal.delta",
    "refusal_done": "response.refusal.done",
    "reasoning_text_delta": "response.reasoning_text.delta",
    "reasoning_text_done": "response.reasoning_text.done",
    "reasoning_summary_part_added": "response.reasoning_summary_part.added",
    "reasoning_summary_part_done": "response.reasoning_summary_part.done",
    "reasoning_summary_text_delta": "response.reasoning_summary_text.delta",
    "reasoning_summary_text_done": "response.reasoning_summary_text.done",
    "function_call_arguments_delta": "response.function_call_arguments.delta",
    "function_call_arguments_done": "response.function_call_arguments.done",
    "custom_tool_call_input_delta": "response.custom_tool_call_input.delta",
    "custom_tool_call_input_done": "response.custom_tool_call_input.done",
}


def constructors() -> list[str]:
    return [name for name, _ in inspect.getmembers(Emitter, inspect.isfunction)
            if not name.startswith("_") and name != "output"]


def call(emitter: Emitter, name: str) -> Any:
    method = getattr(emitter, name)
    params = list(inspect.signature(method).parameters)
    return method(*(ARGS[p] for p in params))


def test_every_event_type_has_a_constructor_and_json_mode_builds_none_of_them() -> None:
    names = constructors()
    live, silent = Emitter(), SilentEmitter()
    # An item first, so output_item_done has a slot to fill.
    assert call(live, "output_item_added") == call(silent, "output_item_added") == 0
    for name in names:
        live_result, silent_result = call(live, name), call(silent, name)
        assert live_result == silent_result, name
    assert silent.out == []
    assert len(live.out) == len(names) + 1
    assert [ev["sequence_number"] for ev in live.out] == list(range(len(live.out)))
    built = [ev["type"] for ev in live.out[1:]]
    expected = [TYPES.get(n, "response." + n.removeprefix("response_")) for n in names]
    assert built == expected
    assert len(set(built)) == 26  # the grammar's event types (response.queued: background), one constructor each
    # Indexes and placed items are the same in both modes: JSON mode's Response has the same output.
    assert live.slots == silent.slots == [ITEM, None] and live.output() == silent.output() == [ITEM]


def test_summary_part_done_is_marked_only_when_cut_short() -> None:
    em = Emitter()
    em.reasoning_summary_part_done("rs_1", 0, {"type": "summary_text", "text": "t"}, False)
    em.reasoning_summary_part_done("rs_1", 0, {"type": "summary_text", "text": "t"}, True)
    assert "status" not in em.out[0] and em.out[1]["status"] == "incomplete"
