"""Items as the store keeps them, and the two ways they are read back (one page, or everything).

A client sends input in the short forms the API allows (a bare string, ``{"role", "content"}``
without a type or an id, string content); what is listed later must have the full shapes of the
API's item types — an ``id``, a ``type``, a ``status``, content parts — so ``input_items`` and
conversation item lists validate as the SDK's ``ResponseItem`` / ``ConversationItem``.
``prepare_items`` does that once, before an item is stored anywhere, so a response's input and
the conversation it is appended to hold the same ids.

Pure functions over plain dicts; the given items are not modified.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ..translate.content import listed_parts
from ..translate.ids import new_id
from .base import MAX_ID_CHARS, CursorNotFound, DuplicateItem, InvalidItem, Item, ItemPage, NewResponse

_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
    "compaction": "cmp",
}
# Types whose listed form requires a status (ResponseItem / ConversationItem); the rest keep theirs.
_WITH_STATUS = frozenset(
    {"message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"}
)


def _message_content(item: Item, param: str) -> list[Any]:
    content = item.get("content")
    assistant = item.get("role") == "assistant"
    if isinstance(content, str):
        if assistant:
            return [{"type": "output_text", "text": content, "annotations": []}]
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise InvalidItem(f"Invalid '{param}.content': expected a string or an array of content parts.", param)
    if assistant and any(_unannotated(p) for p in content):
        return [{**p, "annotations": []} if _unannotated(p) else p for p in content]
    return content


def _unannotated(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "output_text" and "annotations" not in part


def prepare_items(raw: str | Sequence[Any], param: str = "input") -> list[Item]:
    """The items to store for ``raw`` (a request's ``input`` or an items list), every one complete:
    a bare string becomes a user message; a message without ``type`` gets it; string content
    becomes one text part; each item without an ``id`` gets a fresh one (``msg_…``, ``fc_…``, …)
    and ``status: "completed"`` where its type requires one. ``item_reference`` items must have
    been resolved before (``Store.get_items``). Raises ``InvalidItem`` naming the bad item."""
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": raw}]
    out: list[Item] = []
    for i, item in enumerate(raw):
        iparam = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidItem(f"Invalid '{iparam}': expected an item object.", iparam)
        itype = item.get("type")
        if itype is None and "role" in item:
            itype = "message"
        if not isinstance(itype, str) or not itype or itype == "item_reference":
            raise InvalidItem(f"Invalid '{iparam}': expected an item with a 'type' (item references resolved).", iparam)
        stored = dict(item)
        stored["type"] = itype
        item_id = stored.get("id")
        if item_id is None:
            stored["id"] = new_id(_PREFIXES.get(itype, "item"))
        elif not isinstance(item_id, str) or not 0 < len(item_id) <= MAX_ID_CHARS:
            raise InvalidItem(f"Invalid '{iparam}.id': expected a string of 1 to {MAX_ID_CHARS} characters.",
                              iparam + ".id")
        if itype == "message":
            stored["content"] = _message_content(stored, iparam)
        if itype in _WITH_STATUS and stored.get("status") is None:
            stored["status"] = "completed"
        out.append(stored)
    return out


def listed(item: Item) -> Item:
    """``item`` as the API lists or returns it: image parts of a message's ``content`` or a tool
    output's ``output`` with their default ``detail``, a text part of the other side stored before
    those were refused as one of the place's own (``listed_parts``). Filled in when listed, not
    when stored, so the backend gets a replayed item exactly as the client sent it. The item
    itself when nothing is missing."""
    if item.get("type") == "reasoning":
        return _listed_reasoning(item)
    own = "output_text" if item.get("role") == "assistant" else "input_text"
    fixed: dict[str, Any] = {k: listed_parts(item[k], own) for k in ("content", "output") if k in item}
    if all(fixed[k] is item[k] for k in fixed):
        return item
    return {**item, **fixed}


def _listed_reasoning(item: Item) -> Item:
    """A reasoning item as the SDK's ``ResponseReasoningItem`` takes it. Replayed reasoning is never
    refused (every Codex turn sends it; ``translate.messages.reasoning_text`` skips what it cannot
    read), so one may have been stored malformed: listed, its ``summary`` and ``content`` keep the
    parts with a text (typed as the field's kind, as the backend read them), a ``summary`` that
    is no list is empty, and an ``encrypted_content`` that is no string is left out."""
    fixed: dict[str, Any] = {}
    for key, kind in (("summary", "summary_text"), ("content", "reasoning_text")):
        value = item.get(key)
        if value is None and key == "content":
            continue
        parts = _text_parts(value, kind)
        if parts is not value:
            fixed[key] = parts
    enc = item.get("encrypted_content")
    if enc is not None and not isinstance(enc, str):
        fixed["encrypted_content"] = None
    return {**item, **fixed} if fixed else item


def _text_parts(value: Any, kind: str) -> Any:
    """``value`` itself when it is a list of ``kind`` parts with a text, else the list of its parts
    that have a text, typed ``kind``."""
    if isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == kind and isinstance(p.get("text"), str) for p in value
    ):
        return value
    if not isinstance(value, list):
        return []
    return [{**p, "type": kind} for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]


def _reference_id(item: Any) -> str | None:
    """The id an input item refers to: ``{"type": "item_reference", "id"}`` or the SDK's typeless
    ``{"id"}`` (an item with neither ``type`` nor ``role``)."""
    if not isinstance(item, dict):
        return None
    itype = item.get("type")
    if itype == "item_reference" or (itype is None and "role" not in item and "id" in item):
        ref = item.get("id")
        return ref if isinstance(ref, str) else ""
    return None


def referenced_ids(raw: Any) -> list[str]:
    """The item ids ``raw`` (a request's ``input``) refers to, for one ``Store.get_items`` call;
    ``""`` for a reference without a usable id, so that the caller still resolves ``raw`` and
    ``resolve_references`` refuses it by its position (pass only the non-empty ids to the store)."""
    if not isinstance(raw, list):
        return []
    return [ref for ref in map(_reference_id, raw) if ref is not None]


def resolve_references(raw: Any, found: dict[str, Item], param: str = "input") -> Any:
    """``raw`` with every item reference replaced by the stored item ``found`` has for it (the
    result of ``Store.get_items(owner, referenced_ids(raw))``); raises ``InvalidItem`` naming the
    first reference that is not there (unknown, expired, deleted or another key's)."""
    if not isinstance(raw, list):
        return raw
    out = []
    for i, item in enumerate(raw):
        ref = _reference_id(item)
        if ref is None:
            out.append(item)
        elif ref in found:
            out.append(found[ref])
        elif not ref:
            raise InvalidItem(f"Invalid '{param}[{i}].id': an item reference needs a non-empty id string.",
                              f"{param}[{i}].id")
        else:
            raise InvalidItem(f"Invalid '{param}[{i}]': no stored item with id '{ref[:MAX_ID_CHARS]}' found.",
                              f"{param}[{i}]")
    return out


def check_unique(items: Sequence[Item], param: str, held: Sequence[Item] = ()) -> None:
    """Refuse prepared items that repeat an id, as OpenAI does ("Duplicate item found with id"),
    naming the second; or that repeat the id of an item of ``held`` (the conversation they will be
    appended to: OpenAI's answer too). An item is in a list once: a list is paged by item id
    (``after``), and an id at two positions would serve the same pages again and again."""
    taken = {item["id"] for item in held}
    seen: set[str] = set()
    for i, item in enumerate(items):
        item_id = item["id"]
        if item_id in seen or item_id in taken:
            raise DuplicateItem(item_id, param, i, held=item_id in taken)
        seen.add(item_id)


def item_ids(items: Sequence[Item], param: str = "items") -> list[str]:
    """The ids of items that must already have one (output items, prepared input)."""
    ids = []
    for i, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item_id, str) or not 0 < len(item_id) <= MAX_ID_CHARS:
            raise InvalidItem(f"Invalid '{param}[{i}]': a stored item needs an 'id' string.", f"{param}[{i}]")
        ids.append(item_id)
    return ids


def encode_items(items: Sequence[Item]) -> bytes:
    """Items as stored: one JSON array per response (its own items), parsed back per array."""
    return orjson.dumps(items)


def decode_arrays(parts: Sequence[bytes]) -> list[Item]:
    """The items of several stored arrays, in order. Parsing each array on its own is ~30% cheaper
    than joining them into one document first (no copy of the whole history)."""
    items: list[Item] = []
    for part in parts:
        items.extend(orjson.loads(part))
    return items


def decode_objects(bodies: Sequence[bytes]) -> list[Item]:
    """Items stored one JSON object each (conversation items), in order, in one parse."""
    items: list[Item] = orjson.loads(b"[" + b",".join(bodies) + b"]")
    return items


def paginate(items: Sequence[Item], limit: int, order: str, after: str | None) -> ItemPage:
    """One page of ``items`` (stored oldest first): ``order`` ``asc`` or ``desc``, the items after
    the one whose id is ``after`` in that order; ``CursorNotFound`` when none has that id."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    start = 0
    if after is not None:
        start = next((i + 1 for i, item in enumerate(ordered) if item.get("id") == after), -1)
        if start < 0:
            raise CursorNotFound(after)
    page = ordered[start : start + limit]
    return ItemPage(page, start + limit < len(ordered))


def check_page_args(limit: int, order: str) -> None:
    """Guard against a route passing unchecked values (the routes validate with ``shapes``)."""
    if not 1 <= limit <= 100 or order not in ("asc", "desc"):
        raise ValueError(f"limit must be 1..100 and order asc|desc, got {limit!r}, {order!r}")


def encoded_items(items: Sequence[Item], param: str) -> tuple[list[Item], list[tuple[str, bytes]], int]:
    """Prepared items, each with its JSON, and their total size (for the conversation bound)."""
    prepared = prepare_items(items, param)
    encoded = [(item["id"], orjson.dumps(item)) for item in prepared]
    return prepared, encoded, sum(len(body) for _, body in encoded)


def join_arrays(first: bytes, second: bytes) -> bytes:
    """Two encoded JSON arrays as one (``orjson.dumps`` of a list: ``[`` … ``]``, no spaces)."""
    if first == b"[]":
        return second
    if second == b"[]":
        return first
    return first[:-1] + b"," + second[1:]


def response_parts(response: NewResponse) -> tuple[bytes, list[str], int, bytes | None]:
    """The items blob, the item ids, the size of a response to store (its window's included) and a
    compaction's window encoded (``NewResponse.window``; None for any other); checks what every
    backend checks."""
    if response.previous is not None and response.conversation is not None:
        raise ValueError("a response is built on a previous response or on a conversation, not both")
    if response.window is not None and (response.previous is not None or response.conversation is not None):
        raise ValueError("a compaction's response stands on its window alone")
    ids = item_ids(response.input_items, "input") + item_ids(response.output_items, "output")
    if response.input_json is None:
        blob = encode_items(response.input_items + response.output_items)
    else:
        blob = join_arrays(response.input_json, encode_items(response.output_items))
    window = None if response.window is None else encode_items(response.window)
    return blob, ids, len(response.body) + len(blob) + len(window or b""), window
