"""The store's contract: the ``Store`` protocol, the records it takes and gives, its errors.

Everything here is plain data: routes build a ``NewResponse``, read a ``History``
or a ``ConversationContext``, and map the four exceptions to HTTP answers. No
transport type (Falcon, redis, sqlite3) crosses this boundary.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Item = dict[str, Any]

DEFAULT_TTL_SECS = 30 * 24 * 3600
DEFAULT_MAX_OBJECT_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT_SECS = 3.0
OWNER_HEX_CHARS = 32  # 128 bits: no collision between keys in practice, half the key bytes of full SHA-256


class StoreError(Exception):
    """The store could not do what was asked (a bug or a broken invariant, not the client's fault)."""


class StoreUnavailable(StoreError):
    """The store is down, locked too long, or full: retry later (``Retry-After: retry_after``)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ObjectTooLarge(StoreError):
    """One stored object (a response with its own items, or a conversation's items) would exceed
    ``RESPONSE_STORE_MAX_OBJECT_BYTES``. Nothing was written; nothing is ever truncated."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the object to store is {size} bytes, over the store's limit of {limit} bytes")
        self.size = size
        self.limit = limit


class HistoryIncomplete(StoreError):
    """Part of a response's stored history is gone although the response itself is there: its
    conversation was deleted (``conversation_id`` names it: the client's doing, not a fault), or
    Redis evicted keys (a ``maxmemory-policy`` other than ``noeviction``). Raised instead of
    handing the backend a silently shortened context."""

    def __init__(self, response_id: str, what: str, conversation_id: str | None = None) -> None:
        super().__init__(f"the stored history of response {response_id!r} is incomplete: {what}")
        self.response_id = response_id
        self.conversation_id = conversation_id


class ResponsePending(StoreError):
    """The response a request chains from is a background response still queued or running: its
    output is not there yet. Chaining now would hand the backend the turn without its answer, so
    ``get_history`` refuses (the client's doing: it must wait for the response to finish)."""

    def __init__(self, response_id: str) -> None:
        super().__init__(f"response {response_id!r} is still in progress")
        self.response_id = response_id


class TooManyJobs(StoreError):
    """The owner already has ``limit`` background jobs whose leases are live (a 429 with
    ``Retry-After``). Counted by the store, so the cap holds across workers and instances."""

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"{active} background responses of this key are running, the limit is {limit}")
        self.active = active
        self.limit = limit


class InvalidItem(StoreError, ValueError):
    """An item given to the store is not an item object (``param`` names it, e.g. ``items[2]``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


# An item id: at most this many characters (stored, and echoed in errors cut to it).
MAX_ID_CHARS = 256


class DuplicateItem(InvalidItem):
    """Items to store under one id twice: repeated in one batch, or (``held``) already in the
    conversation they are appended to. OpenAI's answer ("Duplicate item found with id …"), naming
    the second: an item is in a list once, and a list is paged by item id."""

    def __init__(self, item_id: str, where: str, index: int, held: bool = False) -> None:
        param = f"{where}[{index}]"
        why = ": the conversation already holds an item with this id" if held else ""
        super().__init__(
            f"Duplicate item found with id '{item_id[:MAX_ID_CHARS]}' at '{param}'{why}. "
            f"Remove duplicate items from your {where} and try again.", param,
        )
        self.item_id = item_id


class CursorNotFound(InvalidItem):
    """A list's ``after`` names no item of that list (unknown, deleted, or another list's). The
    client's error, answered as a 400 naming ``after``: an empty page would end a pager early
    without saying why, as if the list had ended there."""

    def __init__(self, after: str) -> None:
        super().__init__(
            f"No item with id '{after[:MAX_ID_CHARS]}' in this list: 'after' must be the id of one of its items "
            "(the last id of the page before).", "after",
        )


def client_caused(exc: BaseException) -> bool:
    """Whether a store error is the client's doing, not a fault of the store: an object too large,
    an invalid item, a chain's predecessor still running, or a conversation the client deleted
    under a response built on it. Such errors are answered as 4xx, not logged as store faults,
    and not counted as failed operations."""
    if isinstance(exc, HistoryIncomplete):
        return exc.conversation_id is not None
    return isinstance(exc, (ObjectTooLarge, InvalidItem, ResponsePending))


@dataclass(frozen=True, slots=True)
class History:
    """What a new turn needs from its ``previous_response_id``: the whole chain's input and output
    items in order (the predecessors' included), read in one store operation."""

    response_id: str
    items: list[Item]


@dataclass(frozen=True, slots=True)
class ConversationContext:
    """A conversation's items in order, and ``seq``, the position of the last one: a response built
    on this context records it, so chaining from that response later sees what it saw. ``size``
    is what its items weigh against ``max_object_bytes`` (their JSON), so that a request that could
    not be appended is refused before the backend is called."""

    conversation_id: str
    items: list[Item]
    seq: int
    size: int = 0


@dataclass(slots=True)
class NewResponse:
    """A response to store, as the client received it.

    ``input_items`` are the request's own input after references were resolved, as returned by
    ``prepare_items`` (every item has an id; the same list is what goes to the conversation);
    ``output_items`` are the Response's ``output``. ``previous`` is the ``History`` the request
    was built on (``previous_response_id``), ``conversation`` the context it read (``conversation``);
    at most one of them. ``input_json`` is ``input_items`` already encoded (a JSON array), when the
    caller had to encode them anyway (to check their size before calling the backend): the store
    then does not encode them again.

    ``window`` is set on a compaction's response (a ``compaction_trigger`` request's): the items a
    chain from it stands on — the conversation compacted — in place of what it was built on and
    of its own items, which it still keeps (``input_items`` lists them, references find them).
    Such a response starts a chain of its own: ``previous`` and ``conversation`` are then None.
    """

    id: str
    body: bytes
    input_items: list[Item]
    output_items: list[Item]
    previous: History | None = None
    conversation: ConversationContext | None = None
    input_json: bytes | None = None
    window: list[Item] | None = None


@dataclass(frozen=True, slots=True)
class NewJob:
    """The job record stored with a background response (``create_background``): which worker
    runs it, for how long its first lease holds, the owner's cap, and whether its events are logged."""

    worker: str
    lease_ms: int
    max_per_owner: int
    events: bool


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A background job as stored: ``state`` ``queued``, ``in_progress`` or ``ended``; ``version``
    counts the writes of its body (``end_background`` compares it); ``body`` is the stored
    Response (None once the response was deleted)."""

    state: str
    version: int
    body: bytes | None


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events of a background response after a sequence number: each the JSON of one SSE
    ``data:`` line, consecutive from ``after + 1``; ``ended``: the log is closed and all read;
    ``logged`` is False for a background response whose events were not kept (no ``stream``)."""

    events: list[bytes]
    ended: bool
    logged: bool = True


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of a list: ``items`` in the order asked, and whether more follow."""

    items: list[Item]
    has_more: bool = False


def owner_of(key: str, secret: bytes | None = None) -> str:
    """The owner id of everything an API key stores: HMAC-SHA256 with the deployment's secret when
    one is configured (a leaked store then cannot confirm a guessed key), else SHA-256; truncated hex.
    The key itself is never stored."""
    raw = key.encode("utf-8", "surrogatepass")
    digest = hmac.new(secret, raw, hashlib.sha256) if secret else hashlib.sha256(raw)
    return digest.hexdigest()[:OWNER_HEX_CHARS]


class StoreBase:
    """What both implementations share: their limits and how owners are named."""

    backend: str

    def __init__(self, ttl_secs: int, max_object_bytes: int, owner_secret: bytes | None) -> None:
        self.ttl_secs = ttl_secs
        self.max_object_bytes = max_object_bytes
        self._ttl_ms = ttl_secs * 1000
        self._secret = owner_secret

    def owner_of(self, key: str) -> str:
        return owner_of(key, self._secret)

    def _check_size(self, size: int) -> None:
        if size > self.max_object_bytes:
            raise ObjectTooLarge(size, self.max_object_bytes)


class Store(Protocol):
    """Stored responses, items and conversations, per owner. A foreign id is a missing id: every
    read answers ``None`` (or ``False``) for both, so ids leak nothing.

    Every method may raise ``StoreUnavailable`` (promptly: each operation is bounded by the store's
    timeout). Writes are visible to every worker of every instance sharing the store when they return.

    ``append_conversation_items`` (and ``create_conversation``'s items) is one atomic step, however
    many append at once: each batch gets consecutive positions, or nothing of it is kept. An item
    whose id the conversation already holds, or that the batch repeats, is ``DuplicateItem``
    (nothing kept) — unless ``skip_held``: then only the rest is appended (a finished response's
    items, appended after it was answered, when a racing request put one of them there first),
    and the items returned are those added.
    """

    backend: str
    ttl_secs: int
    max_object_bytes: int

    def owner_of(self, key: str) -> str: ...

    # Responses
    async def put_response(self, owner: str, response: NewResponse) -> None: ...
    async def get_response(self, owner: str, response_id: str) -> bytes | None: ...
    async def get_history(self, owner: str, response_id: str) -> History | None: ...
    async def delete_response(self, owner: str, response_id: str) -> bool: ...
    async def list_input_items(
        self, owner: str, response_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> ItemPage | None: ...
    async def get_items(self, owner: str, item_ids: Sequence[str]) -> dict[str, Item]: ...

    # Conversations
    async def create_conversation(
        self, owner: str, *, metadata: dict[str, str] | None = None, items: Sequence[Item] = ()
    ) -> dict[str, Any]: ...
    async def get_conversation(self, owner: str, conversation_id: str) -> dict[str, Any] | None: ...
    async def update_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> dict[str, Any] | None: ...
    async def delete_conversation(self, owner: str, conversation_id: str) -> bool: ...
    async def append_conversation_items(
        self, owner: str, conversation_id: str, items: Sequence[Item], *, skip_held: bool = False
    ) -> list[Item] | None: ...
    async def conversation_context(self, owner: str, conversation_id: str) -> ConversationContext | None: ...
    async def list_conversation_items(
        self, owner: str, conversation_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> ItemPage | None: ...
    async def get_conversation_item(self, owner: str, conversation_id: str, item_id: str) -> Item | None: ...
    async def delete_conversation_item(
        self, owner: str, conversation_id: str, item_id: str
    ) -> dict[str, Any] | None: ...

    # Background jobs (issue 15; the package docstring says how the lease, the cap and the log work)
    async def create_background(self, owner: str, response: NewResponse, job: NewJob) -> None: ...
    async def start_background(self, owner: str, response_id: str, body: bytes, worker: str) -> bool: ...
    async def append_events(
        self, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes]
    ) -> bool: ...
    async def finish_background(
        self, owner: str, response: NewResponse, worker: str, first_seq: int, events: Sequence[bytes], outcome: str
    ) -> bool: ...
    async def end_background(
        self, owner: str, response_id: str, body: bytes, *, version: int, outcome: str, only_expired: bool = False
    ) -> str: ...
    async def close_cancelled(
        self, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes]
    ) -> bool: ...
    async def background_job(self, owner: str, response_id: str) -> JobSnapshot | None: ...
    async def read_events(
        self, owner: str, response_id: str, after: int, *, wait_secs: float = 0.0, limit: int = 500
    ) -> EventPage | None: ...
    async def renew_leases(self, worker: str, jobs: Sequence[tuple[str, str]], lease_ms: int) -> set[str]: ...
    async def expired_jobs(self, limit: int) -> list[tuple[str, str]]: ...
    async def watch_cancels(self, worker: str, on_cancel: Callable[[str], None]) -> None: ...

    async def aclose(self) -> None: ...
