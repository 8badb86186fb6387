"""The response store: stored responses, items and conversations, per owner (issue 10).

One small interface (``base.Store``) with two implementations: ``SQLiteStore`` (one file shared
by every worker of a host, WAL mode) and ``RedisStore`` (one Redis shared by many hosts).
``open_store(settings)`` picks one from ``RESPONSE_STORE_URL``; ``none`` means no store.

DESIGN_NOTES
"""
from __future__ import annotations

from ..settings import Settings
from .base import (
    ConversationContext,
    History,
    HistoryIncomplete,
    InvalidItem,
    Item,
    ItemPage,
    NewResponse,
    ObjectTooLarge,
    Store,
    StoreError,
    StoreUnavailable,
    owner_of,
)
from .items import prepare_items

__all__ = [
    "ConversationContext",
    "History",
    "HistoryIncomplete",
    "InvalidItem",
    "Item",
    "ItemPage",
    "NewResponse",
    "ObjectTooLarge",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "owner_of",
    "prepare_items",
]


def open_store(settings: Settings) -> Store | None:
    """The store ``RESPONSE_STORE_URL`` names (``None`` for ``none``). Nothing connects or opens a
    file here: that happens at the first operation, in the worker's running loop."""
    url = settings.response_store_url
    if url == "none":
        return None
    secret = settings.response_store_owner_secret
    ttl, limit = settings.response_store_ttl_secs, settings.response_store_max_object_bytes
    timeout, owner_secret = settings.response_store_timeout_secs, secret.encode() if secret else None
    if url.startswith("sqlite:"):
        from .sqlite_store import SQLiteStore

        path = "/" + url[len("sqlite:") :].lstrip("/")
        return SQLiteStore(path, ttl_secs=ttl, max_object_bytes=limit, timeout_secs=timeout, owner_secret=owner_secret)
    from .redis_store import RedisStore

    return RedisStore(url, ttl_secs=ttl, max_object_bytes=limit, timeout_secs=timeout, owner_secret=owner_secret)
