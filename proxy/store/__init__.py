"""The response store: stored responses, items and conversations, per owner (issue 10).

One small interface (``base.Store``) with two implementations: ``SQLiteStore`` (one file shared by
every worker of a host, WAL mode) and ``RedisStore`` (one Redis shared by many hosts).
``open_store(settings)`` picks one from ``RESPONSE_STORE_URL``; ``none`` means no store.

What the routes call (all ``await``; an unknown, expired, deleted or foreign id is ``None``/``False``)::

    owner = store.owner_of(api_key)                         # never store the key itself
    found = await store.get_items(owner, referenced_ids(body["input"]))        # item_reference
    raw = resolve_references(body["input"], found)          # InvalidItem names input[i] if unknown
    history = await store.get_history(owner, previous_id)   # previous_response_id: one read
    ctx = await store.conversation_context(owner, shapes.conversation_param(body["conversation"]))
    # the backend sees (history or ctx).items + raw; the stored form is what the translator takes
    items = prepare_items(raw)                              # ids, types, statuses; once per request
    await store.put_response(owner, NewResponse(id, body_bytes, items, output, previous=history,
                                                conversation=ctx))     # before the terminal event
    await store.append_conversation_items(owner, ctx.conversation_id, items + output, skip_held=True)
    await store.get_response(owner, id) -> bytes            # GET /v1/responses/{id}, as sent
    await store.delete_response(owner, id) -> bool          # then shapes.response_deleted(id)
    p = shapes.list_params(limit, order, after)             # InvalidParam names limit / order
    await store.list_input_items(owner, id, limit=p.limit, order=p.order, after=p.after)
    #   -> ItemPage, sent as shapes.item_list(page)
    create/get/update/delete_conversation, list/get/delete_conversation_item (shapes.conversation…)

Errors: ``StoreUnavailable`` (down, hung, locked, full: 503 + ``retry_after``), ``ObjectTooLarge``
(413), ``InvalidItem``/``shapes.InvalidParam`` (400 naming ``param``; ``CursorNotFound``, an ``InvalidItem``: a
list's ``after`` naming none of its items), ``HistoryIncomplete``,
``ResponsePending`` (chaining from a background response still running: 400), ``TooManyJobs``
(a key's background cap: 429).

Design: each response keeps its own items and the ids of its ancestors
-----------------------------------------------------------------------
A chained request needs the whole chain's items. Copying them into every stored response makes a
chain cost O(n²) bytes; storing each response's own items once and reading them back by the
ancestor ids it keeps costs O(n) bytes and still one read (one SQLite read transaction on one
thread hop; one Lua script on Redis). Measured with ``loadtest/store_bench.py`` on a shared
2-core machine, for a Codex-like chain (24 KiB of instructions, an 8 KiB tool output per turn,
9 KiB of tools echoed in every Response):

=============  ======================  ==========================  ==================================
chain          kept by this store      whole history in each       CPU per turn, get_history + put
=============  ======================  ==========================  ==================================
10 turns       0.23 MB (Redis 0.2)     0.80 MB (Redis 0.87)        216 µs vs 151 µs (SQLite, direct)
100 turns      2.28 MB (Redis 2.3)     51.3 MB (Redis 56.9)        890 µs vs 1,890 µs
=============  ======================  ==========================  ==================================

Copying is a little cheaper for short chains (one row read instead of ten) but a 100-turn session
would keep 51 MB instead of 2.3 MB and write its whole ~1 MB history at every turn (1.3 ms per put
against 0.2 ms). Reading is dominated by parsing the history, which the edge needs either way.

What the shared items must never do is break a descendant ("state is a promise"):

- **TTL.** A response is visible for its own ``RESPONSE_STORE_TTL_SECS``; its items are kept as
  long as a descendant needs them. SQLite: a row with kept children (``kids``) is never freed;
  Redis: a chain lives in one hash whose TTL each put extends to the newest response's.
- **DELETE.** The Response object and its item lookups go at once; its items stay while a
  descendant needs them, and go (with any ancestor that only they needed) when the last one goes.
- **Vanished during generation.** If the predecessor (or the conversation) a request was built on
  went away while it was generated, the new response is stored with the history it saw, copied,
  so chaining from it still works.
- **Lost behind the store's back** (Redis evicting keys under a ``maxmemory-policy`` other than
  ``noeviction``, a damaged file, a deleted conversation under a response built on it):
  ``get_history`` raises ``HistoryIncomplete``; a shortened context is never handed on.
- **Conversations.** A response built on a conversation records the position it saw; chaining from
  it later reads the conversation's items up to there (items deleted since are gone from it too).
- **Compaction.** A trigger's response (``NewResponse.window``) is the root of a chain of its own:
  its window (the conversation compacted) is kept with it as a copied history is, and stands for
  its own items (still kept: listed, referenced) in the history of every response of that chain.

Writes are O(1) whatever the chain's length: a put inserts one row (or a few hash fields) and
counts one child on its parent. A chain is freed from its leaves up: a response goes when it is
deleted or expired and has no kept children, then its parent is looked at the same way.

Costs per request. ``loadtest/store_bench.py`` times the operations alone (small response, CPU µs
in the worker, best of runs on a shared 2-core machine; a calm run / a busy one): SQLite put
77 / 122, GET 18 / 52, history 27 / 73, turn 10 (history + put) 245 / 472; Redis put 58 / 65,
GET 42 / 30, history 46 / 47, turn 10 150 / 112. Issue 10's budget (0.15 ms) counts the whole
stored path of a plain ``store: true`` request — ``stand``, ``prepare``, ``remember`` through the
instrumented store — which ``loadtest/store_overhead.py --micro`` measures beside ``store: false``
(2026-12-01): Redis adds 70–145 µs, within it (a put's round trip on a bare protocol, its floor,
15–40 µs; ``redis_link``); SQLite adds 120–300 µs, mostly over it. SQLite's floor is the put itself:
its statements on a connection, with no thread, cost 75–110 µs (about 8 WAL frames of 4 KiB per
put — the row's leaf and its table's interior page, the id index, the expiry index, the header
page, and 3.2 for two random item-index leaves — written with 17 ``pwrite`` and 6 ``fcntl``
calls, plus their share of the checkpoints), and the hand-off to the writer thread and back
(``sqlite_threads``) 30–50 µs more, before any of the proxy's own Python (10–25 µs). Since the
threads follow their event loop's CPU (``colocate``, ``inbox``; 2026-12-03) SQLite adds 86–88 µs at
one request in flight (130–139 before) and 49–55 at four (67–77), no more than Redis. A chained
request adds its history read and a second hand-off.

Background mode (issue 15) in the same store
--------------------------------------------
A background response is stored at once (``create_background``: the Response ``queued``, its input
items and what it stands on, exactly as ``put_response``, plus a *job*), then continued by the one
worker running it, every such write naming that worker::

    await store.create_background(owner, NewResponse(...), NewJob(worker, lease_ms, max_per_owner, events))
    await store.start_background(owner, id, in_progress_body, worker)        # -> False: not yours any more
    await store.append_events(owner, id, worker, first_seq, [event_json, ...])   # the SSE data lines
    await store.finish_background(owner, final NewResponse, worker, first_seq, last_events, status)
    await store.renew_leases(worker, [(owner, id), ...], lease_ms)  # -> ids cancelled or reaped meanwhile
    await store.read_events(owner, id, after, wait_secs=…)         # EventPage: after N, then live
    snap = await store.background_job(owner, id)                     # state, version, body
    await store.end_background(owner, id, body, version=snap.version, outcome="cancelled")  # any worker
    await store.close_cancelled(owner, id, worker, first_seq, [event_json, ...])  # then its worker
    await store.expired_jobs(limit) -> [(owner, id)]; end_background(..., only_expired=True)  # reapers
    await store.watch_cancels(worker, on_cancel)                     # Redis pushes cancels; SQLite: no-op

- **The lease** is the job's deadline, renewed by its worker (one ``renew_leases`` call for all its
  jobs); past it, any worker's reaper ends the job (``failed``). Deadlines are indexed (a Redis zset,
  an SQLite partial index) so a reaper's scan reads only expired jobs, a bounded number per call.
- **Ending once.** ``end_background`` (a cancel, a reaper) compares the body's version it read, and
  ``only_expired`` re-checks the lease in the same step: two reapers, or a cancel racing the finish,
  end a job exactly once. Every later write of the worker is refused, so it learns it lost the job
  (from ``renew_leases``, from any refused write, or at once from ``watch_cancels`` on Redis).
- **The owner's cap** (``NewJob.max_per_owner``) counts the owner's jobs whose lease is live, in the
  step that creates one (``TooManyJobs``): atomic across workers and instances, and a dead worker's
  slot comes back when its lease runs out, whether or not a reaper has come by yet.
- **The event log** (only for a response asked to stream) keeps each event's JSON under its
  sequence number (a Redis Stream entry ``0-(n+1)``; an SQLite row), so a retried append is
  harmless and ``read_events(after=N)`` is exact. It is closed when the job ends, however it ends,
  and lives as long as its response — except that a cancel leaves it open for the job's worker,
  which logs the events it had already streamed live and closes it (``close_cancelled``), or it
  ends where it is at the job's lease deadline. Its size is bounded by ``RESPONSE_STORE_MAX_OBJECT_BYTES``
  like every stored object: an append past the bound raises ``ObjectTooLarge`` and logs nothing of
  that batch, and the worker fails the response (``proxy.background``) rather than let a replay
  silently miss events.
- **Following live**: Redis blocks in ``XREAD BLOCK`` (≤ 1 s a call, on a connection pool of its own);
  SQLite polls every 0.1 s on the reader thread. Either way a call returns within ``wait_secs``.

Key layout: ``redis_job_scripts``; tables: ``sqlite_schema``.
"""
from __future__ import annotations

from ..settings import Settings
from .base import (
    ConversationContext,
    CursorNotFound,
    DuplicateItem,
    EventPage,
    History,
    HistoryIncomplete,
    InvalidItem,
    Item,
    ItemPage,
    JobSnapshot,
    NewJob,
    NewResponse,
    ObjectTooLarge,
    ResponsePending,
    Store,
    StoreError,
    StoreUnavailable,
    TooManyJobs,
    owner_of,
)
from .items import prepare_items, referenced_ids, resolve_references

__all__ = [
    "ConversationContext",
    "CursorNotFound",
    "DuplicateItem",
    "EventPage",
    "History",
    "HistoryIncomplete",
    "InvalidItem",
    "Item",
    "ItemPage",
    "JobSnapshot",
    "NewJob",
    "NewResponse",
    "ObjectTooLarge",
    "ResponsePending",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TooManyJobs",
    "open_store",
    "owner_of",
    "prepare_items",
    "referenced_ids",
    "resolve_references",
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
