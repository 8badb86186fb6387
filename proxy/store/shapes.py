"""The JSON objects of the stateful routes, and the checks of their parameters.

Pure: the routes parse a request, call one of these and the store, and send what comes back,
so every shape lives here once and is tested against the openai SDK's types
(``Conversation``, ``ConversationDeletedResource``, ``ConversationItemList``,
``ResponseItemList``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import ItemPage
from .items import listed

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_ITEMS_PER_CREATE = 20  # POST /v1/conversations and …/items take at most 20 items at a time


class InvalidParam(ValueError):
    """A parameter of a stateful route is invalid; ``param`` names it (for a 400)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ListParams:
    limit: int = 20
    order: str = "desc"
    after: str | None = None


def conversation(conversation_id: str, created_at: int, metadata: dict[str, str]) -> dict[str, Any]:
    return {"id": conversation_id, "object": "conversation", "created_at": created_at, "metadata": metadata}


def conversation_deleted(conversation_id: str) -> dict[str, Any]:
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


def response_deleted(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "deleted": True}


def item_list(page: ItemPage) -> dict[str, Any]:
    """A ``list`` object: ``data`` (each item as listed: ``items.listed``), ``first_id``, ``last_id``
    (``None`` when empty), ``has_more``."""
    data = [listed(item) for item in page.items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }


def query_int(value: str) -> int | None:
    """A query parameter's non-negative integer, written in ASCII digits only: ``int()`` alone
    also takes ``" 5"``, ``"+5"``, ``"1_0"`` and other scripts' digits. ``None`` for anything else."""
    return int(value) if value.isascii() and value.isdigit() else None


def list_params(limit: str | None, order: str | None, after: str | None) -> ListParams:
    """Query parameters of ``input_items`` and conversation item lists, as strings (absent: ``None``):
    ``limit`` 1–100 (default 20), ``order`` ``asc``/``desc`` (default ``desc``), ``after`` an item id."""
    n = 20
    if limit is not None and limit != "":
        parsed = query_int(limit)
        if parsed is None:
            raise InvalidParam(f"Invalid 'limit': expected an integer between 1 and 100, got {limit[:32]!r}.", "limit")
        n = parsed
        if not 1 <= n <= 100:
            raise InvalidParam(f"Invalid 'limit': expected an integer between 1 and 100, got {n}.", "limit")
    if order is None or order == "":
        order = "desc"
    elif order not in ("asc", "desc"):
        raise InvalidParam(f"Invalid 'order': expected 'asc' or 'desc', got {order[:32]!r}.", "order")
    return ListParams(n, order, after or None)


def conversation_param(value: Any, param: str = "conversation") -> str:
    """``conversation`` on ``POST /v1/responses``: a conversation id, or ``{"id": …}``."""
    if isinstance(value, dict):
        value, param = value.get("id"), param + ".id"
    if not isinstance(value, str) or not value:
        raise InvalidParam(f"Invalid '{param}': expected a conversation id string.", param)
    return value


def check_metadata(metadata: Any, param: str = "metadata") -> dict[str, str]:
    """OpenAI's metadata rules: at most 16 pairs, string keys up to 64 characters, string values up
    to 512; ``None`` is no metadata."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidParam(f"Invalid '{param}': expected an object of string keys and values.", param)
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidParam(f"Invalid '{param}': at most {MAX_METADATA_PAIRS} pairs, got {len(metadata)}.", param)
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidParam(
                f"Invalid '{param}': keys are at most {MAX_METADATA_KEY_CHARS} characters, got {len(key)}.", param
            )
        if not isinstance(value, str):
            raise InvalidParam(f"Invalid '{param}.{key[:64]}': expected a string.", f"{param}.{key}")
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidParam(
                f"Invalid '{param}.{key[:64]}': values are at most {MAX_METADATA_VALUE_CHARS} characters.",
                f"{param}.{key}",
            )
    return metadata
