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
from openai.types.conversations import ConversationItem, ConversationItemList
from openai.types.responses import ResponseInputItem, ResponseItem, ResponseItemList
from pydantic import TypeAdapter

from proxy.store import NewResponse, prepare_items
from proxy.store.items import listed
from proxy.store.shapes import item_list
from proxy.translate.errors import InvalidRequest
from proxy.translate.messages import check_items
from proxy.translate.request import TranslationPolicy, translate_request
from tests.fixtures.content_parts import INPUT_SIDE, OUTPUT_SIDE, PARTS, TEXT_PARTS, TOOL_SIDE
from tests.store_kit import BACKENDS, run

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


def _listing_problem(item: dict[str, Any], *, as_sent: bool = False) -> str | None:
    """What keeps ``item`` as listed (or as sent: stored, without the listing's defaults) from
    being each of the SDK's types; None when it is."""
    stored = prepare_items([item])[0]
    stored = stored if as_sent else listed(stored)
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
        listing = _listing_problem(item, as_sent=True)
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


def _legacy_items() -> list[dict[str, Any]]:
    """Every place given every text part of the other side, as a store may hold them (taken, as
    text, before they were refused): one item each, the calls the tool outputs answer first."""
    items: list[dict[str, Any]] = []
    for lead, make, _, _ in PLACES.values():
        for ptype in TEXT_PARTS:
            if _listing_problem(make([PARTS[ptype]]), as_sent=True) is not None:
                items += [*lead, make([PARTS[ptype]])]
    return [{k: v for k, v in item.items() if k != "id"} for item in items]  # (ids of their own)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_part_of_the_other_side_stored_before_it_was_refused_lists_as_the_sdk_types(backend, store_factory):
    """Stored as text, listed as a text part of the place's own kind with the text the backend
    read, by input_items and by the conversation's items (a store kept them before the refusal)."""
    legacy = _legacy_items()
    assert len(legacy) > 30
    store = store_factory(backend)
    owner = store.owner_of("sk-legacy")

    async def scenario(store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        response = NewResponse("resp_" + "0" * 32, b"{}", prepare_items(legacy), [])
        await store.put_response(owner, response)
        inputs = item_list(await store.list_input_items(owner, response.id, limit=100, order="asc"))
        conv = await store.create_conversation(owner)
        await store.append_conversation_items(owner, conv["id"], prepare_items(legacy, "items"))
        return inputs, item_list(await store.list_conversation_items(owner, conv["id"], limit=100, order="asc"))

    inputs, page = run(store, scenario)
    ResponseItemList.model_validate(inputs)
    ConversationItemList.model_validate(page)
    for data in (inputs["data"], page["data"]):
        assert len(data) == len(legacy)
        for item, given in zip(data, legacy, strict=True):
            for adapter in ADAPTERS.values():
                adapter.validate_python(item)
            parts, sent = item.get("content", item.get("output")), given.get("content", given.get("output"))
            if isinstance(sent, list):
                own = "output_text" if given.get("role") == "assistant" else "input_text"
                assert [p["type"] for p in parts] == [own] * len(sent)
                assert [p["text"] for p in parts] == [p.get("text", p.get("refusal")) for p in sent]


def test_a_part_of_the_other_side_in_the_stored_context_is_read_as_text() -> None:
    """The items a store gave (``stored_items``, the first of ``input``) are read as they were
    before such parts were refused, so that context can still be continued; the same items in
    the client's own input are OpenAI's 400."""
    legacy = _legacy_items()
    policy = TranslationPolicy()
    chat, _ = translate_request({"model": "m", "input": legacy}, policy, now=1, stored_items=len(legacy))
    sent = str(chat["messages"])
    for item in legacy:
        for part in item.get("content", item.get("output")) or []:
            assert part.get("text", part.get("refusal")) in sent
    with pytest.raises(InvalidRequest) as info:
        translate_request({"model": "m", "input": legacy}, policy, now=1, stored_items=0)
    assert info.value.code == "invalid_value"
    with pytest.raises(InvalidRequest) as info:  # named as its client sent it: its first item
        translate_request({"model": "m", "input": [*legacy, legacy[-1]]}, policy, now=1, stored_items=len(legacy))
    assert str(info.value.param).startswith("input[0].")
