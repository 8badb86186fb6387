"""The seam between transports that chain responses and the response store.

A request naming ``previous_response_id`` stands on that response's context —
its own context, its input items, then its output items
(``proxy.translate.history.next_context``). A WebSocket connection keeps its
last response's context in memory, which is enough for ``store: false`` clients
(Codex) that chain within one connection; anything else — a response from an
earlier connection or another worker, or ``POST /v1/responses/compact`` naming
one — needs the store (``proxy/store/``, being built). The store implements
``ContextStore``; until it is wired in, ``NO_STORE`` answers "not found" and keeps
nothing, so every such request gets OpenAI's ``previous_response_not_found``
rather than silently losing context.

``owner`` scopes what one client may read: an opaque id derived from its API
key (``owner_of``), never the key itself.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import ProxyError

Item = dict[str, Any]


class ContextStore(Protocol):
    async def load(self, response_id: str, *, owner: str) -> list[Item] | None:
        """The context a request chaining from ``response_id`` stands on (its input, then its
        output, recursively), or None when this owner has no such stored response."""
        ...

    async def save(self, response: Mapping[str, Any], context: list[Item], *, owner: str) -> None:
        """Keep a finished ``store: true`` response and the context a request chaining from it
        stands on (``next_context``). Raises ``proxy.failures.Failure(STORE_UNAVAILABLE)`` when it cannot."""
        ...


class _NoStore:
    """No store configured: nothing is found, nothing is kept."""

    async def load(self, response_id: str, *, owner: str) -> list[Item] | None:
        return None

    async def save(self, response: Mapping[str, Any], context: list[Item], *, owner: str) -> None:
        return None


NO_STORE: ContextStore = _NoStore()


def owner_of(key: str) -> str:
    """The store's tenant id for a client key (a digest: the store never holds the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def not_found(response_id: str) -> ProxyError:
    """OpenAI's answer for an unknown ``previous_response_id``."""
    return ProxyError(
        404,
        f"Previous response with id {response_id[:80]!r} not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )
