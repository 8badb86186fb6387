"""Every content part type in every place that takes parts: each message role, each tool output.

A message's or a tool output's parts are stored as sent and listed back (``input_items``, the
Conversations API) as the openai SDK's ``ResponseItem`` / ``ConversationItem``, and given back as
its ``ResponseInputItem``. A part of the wrong side (an ``output_text``, ``refusal``,
``summary_text`` or ``reasoning_text`` in a user, system or developer message or a tool output;
an ``input_text`` in an assistant message) was taken as text and stored, and every later listing
failed the SDK's types. OpenAI refuses them (observed: ``Invalid value: 'input_text'. Supported
values are: 'output_text' and 'refusal'.``, param ``input[0].content[0]``, code ``invalid_value``;
a user message's ``output_text``, a tool output's ``output_text`` the same way, each with its own
list), as does the Open Responses spec (each role's item names its part types).

So for each place × part type, a well-formed part: either it lists under all three SDK types as
stored, and the request is served; or it is refused — by ``input`` and by the conversation routes,
naming the part — with OpenAI's 400 word for word where the part belongs to the other side.
"""
from __future__ import annotations

from typing import Any

import pytest
from openai.types.conversations import ConversationItem
from openai.types.responses import ResponseInputItem, ResponseItem
from pydantic import TypeAdapter

from proxy.store import prepare_items
from proxy.store.items import listed
from proxy.translate.errors import InvalidRequest
from proxy.translate.messages import check_items
from proxy.translate.request import TranslationPolicy, translate_request
from tests.fixtures.content_parts import INPUT_SIDE, OUTPUT_SIDE, PARTS, TEXT_PARTS, TOOL_SIDE

ADAPTERS = {name: TypeAdapter(kind) for name, kind in (
    ("ResponseItem", ResponseItem), ("ConversationItem", ConversationItem), ("ResponseInputItem", ResponseInputItem))}

CALLS = {"function_call_output": {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
         "custom_tool_call_output": {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "x"}}
# place: (items before, a function making the item of the given parts, its parts' field, OpenAI's list)
PLACES: dict[str, tuple[list[dict[str, Any]], Any, str, str]] = {
    **{f"{role} message{' (easy)' if easy else ''}": (
        [], (lambda parts, role=role, easy=easy: {"role": role, "content": parts} if easy else
             {"type": "message", "id": "msg_1", "role": role, "status": "completed", "content": parts}),
        "content", OUTPUT_SIDE if role == "assistant" else INPUT_SIDE)
       for role in ("user", "system", "developer", "assistant") for easy in (False, True)},
    **{kind: ([call], (lambda parts, kind=kind: {"type": kind, "call_id": "c1", "output": parts}), "output", TOOL_SIDE)
       for kind, call in CALLS.items()},
}
TAIL = [{"role": "user", "content": "q"}]


def _translate(items: list[dict[str, Any]]) -> None:
    translate_request({"model": "m", "input": items}, TranslationPolicy(), now=1)


def _listing_problem(item: dict[str, Any]) -> str | None:
    stored = listed(prepare_items([item])[0])
    for name, adapter in ADAPTERS.items():
        try:
            adapter.validate_python(stored)
        except ValueError as exc:
            return f"lists as no {name}: {str(exc).splitlines()[1:3]}"
    return None


def _verdict(place: str, ptype: str) -> str | None:
    """What is wrong with how a ``ptype`` part in ``place`` is served, or None."""
    lead, make, field, supported = PLACES[place]
    own = PARTS["output_text" if supported == OUTPUT_SIDE else "input_text"]  # (a part of the place's own first)
    item = make([own, PARTS[ptype]])
    at = f"input[{len(lead)}].{field}[1]"
    try:
        _translate([*lead, item, *TAIL])
    except InvalidRequest as exc:
        if exc.param != at and not str(exc.param).startswith(at + "."):
            return f"refused naming {exc.param!r}, not the part {at!r}: {exc.message}"
        listing = _listing_problem(item)
        if ptype in TEXT_PARTS and listing is None:
            return f"a text part the SDK lists here is refused: {exc.message}"
        if ptype in TEXT_PARTS:  # a part of the other side: OpenAI's 400, word for word
            want = (f"Invalid value: '{ptype}'. Supported values are: {supported}.", at, "invalid_value")
            if (exc.message, exc.param, exc.code) != want:
                return f"refused as {(exc.message, exc.param, exc.code)}, not OpenAI's {want}"
        try:
            check_items([*lead, item], "items")
        except InvalidRequest as conv:
            if (conv.message, conv.param) != (exc.message.replace("input[", "items["), "items" + exc.param[5:]):
                return f"the conversation routes refuse it as {conv.param!r}: {conv.message}"
            return None
        return "refused by input, taken by the conversation routes"
    return _listing_problem(item)


def test_every_part_type_in_every_place_is_refused_as_openai_does_or_lists_as_the_sdk_types() -> None:
    problems = [f"{place} × {ptype}: {problem}" for place in PLACES for ptype in PARTS
                if (problem := _verdict(place, ptype)) is not None]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("place", "served"), [
    ("user message", {"input_text", "input_image", "input_file"}),
    ("system message", {"input_text"}),  # (images and files: chat templates take them from users only)
    ("developer message (easy)", {"input_text"}),
    ("assistant message", {"output_text", "refusal"}),
    ("assistant message (easy)", {"output_text", "refusal"}),
    ("function_call_output", {"input_text", "input_image", "input_file"}),
    ("custom_tool_call_output", {"input_text", "input_image", "input_file"}),
])
def test_what_each_place_serves(place: str, served: set[str]) -> None:
    lead, make, _, _ = PLACES[place]
    taken = set()
    for ptype, part in PARTS.items():
        try:
            _translate([*lead, make([part]), *TAIL])
        except InvalidRequest:
            continue
        taken.add(ptype)
    assert taken == served


def test_a_misplaced_part_is_named_before_its_own_fields_are_read() -> None:
    """OpenAI names the part's type before its fields: an ``input_text`` without a text in an
    assistant message is the misplaced part, not a missing text."""
    with pytest.raises(InvalidRequest) as info:
        _translate([{"role": "assistant", "content": [{"type": "input_text"}]}, *TAIL])
    assert (info.value.message, info.value.param, info.value.code) == (
        "Invalid value: 'input_text'. Supported values are: 'output_text' and 'refusal'.", "input[0].content[0]",
        "invalid_value")
