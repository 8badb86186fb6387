"""``Store`` on one SQLite file, shared by every worker process of a host (WAL mode).

Reads run on the reader thread, writes on the writer thread (``sqlite_threads``); the SQL
lives in ``sqlite_responses`` and ``sqlite_conversations``. Expired rows are invisible at once
(every read checks ``expires_at``) and deleted by a periodic sweep: at most one worker of the
host sweeps per interval (a claim row in ``meta``), in bounded batches on the writer thread.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from ..translate.ids import new_id
from . import sqlite_conversations as conv_sql
from . import sqlite_job_sql as job_sql
from . import sqlite_responses as resp_sql
from .base import (
    DEFAULT_MAX_OBJECT_BYTES,
    DEFAULT_TIMEOUT_SECS,
    DEFAULT_TTL_SECS,
    ConversationContext,
    History,
    Item,
    ItemPage,
    NewResponse,
    StoreBase,
)
from .items import check_page_args, encoded_items, paginate, response_parts
from .shapes import conversation
from .sqlite_jobs import SQLiteJobs
from .sqlite_schema import connect, transaction
from .sqlite_threads import SQLiteThreads

log = logging.getLogger("proxy.store")

T = TypeVar("T")

SWEEP_INTERVAL_SECS = 60.0
SWEEP_BATCH = 500


class SQLiteStore(SQLiteJobs, StoreBase):
    backend = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        ttl_secs: int = DEFAULT_TTL_SECS,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        timeout_secs: float = DEFAULT_TIMEOUT_SECS,
        owner_secret: bytes | None = None,
    ) -> None:
        super().__init__(ttl_secs, max_object_bytes, owner_secret)
        self.path = path
        self._db = SQLiteThreads(lambda: connect(path, timeout_secs), timeout_secs)
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL_SECS

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        result = await self._db.run("write", fn, *args)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_INTERVAL_SECS
            self._db.submit("write", _sweep, SWEEP_INTERVAL_SECS, SWEEP_BATCH, False).add_done_callback(_log_sweep)
        return result

    # ------------------------------------------------------------------ responses

    async def put_response(self, owner: str, response: NewResponse) -> None:
        blob, ids, size, window = response_parts(response)
        self._check_size(size)
        prev, conv = response.previous, response.conversation
        await self._write(
            resp_sql.put_response, owner, response.id, response.body, blob, len(response.input_items), ids,
            prev.response_id if prev else None,
            (conv.conversation_id, conv.seq) if conv else None,
            prev.items if prev else conv.items if conv else [],
            self._ttl_ms, self.max_object_bytes, None, window,
        )

    async def get_response(self, owner: str, response_id: str) -> bytes | None:
        return await self._db.run("read", resp_sql.get_body, owner, response_id)

    async def get_history(self, owner: str, response_id: str) -> History | None:
        items = await self._db.run("read", resp_sql.get_history, owner, response_id)
        return None if items is None else History(response_id, items)

    async def delete_response(self, owner: str, response_id: str) -> bool:
        return await self._write(resp_sql.delete_response, owner, response_id)

    async def list_input_items(
        self, owner: str, response_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> ItemPage | None:
        check_page_args(limit, order)
        items = await self._db.run("read", resp_sql.get_input, owner, response_id)
        return None if items is None else paginate(items, limit, order, after)

    async def get_items(self, owner: str, item_ids: Sequence[str]) -> dict[str, Item]:
        if not item_ids:
            return {}
        return await self._db.run("read", resp_sql.get_items, owner, list(item_ids))

    # ------------------------------------------------------------------ conversations

    async def create_conversation(
        self, owner: str, *, metadata: dict[str, str] | None = None, items: Sequence[Item] = ()
    ) -> dict[str, Any]:
        _, encoded, size = encoded_items(items, "items")
        self._check_size(size)
        conv_id, created_at, meta = new_id("conv"), int(time.time()), metadata or {}
        meta_json, limit = orjson.dumps(meta), self.max_object_bytes
        await self._write(conv_sql.create, owner, conv_id, created_at, meta_json, encoded, self._ttl_ms, limit)
        return conversation(conv_id, created_at, meta)

    async def get_conversation(self, owner: str, conversation_id: str) -> dict[str, Any] | None:
        return await self._db.run("read", conv_sql.get, owner, conversation_id)

    async def update_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> dict[str, Any] | None:
        return await self._write(
            conv_sql.update, owner, conversation_id, orjson.dumps(metadata), self._ttl_ms
        )

    async def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        return await self._write(conv_sql.delete, owner, conversation_id)

    async def append_conversation_items(
        self, owner: str, conversation_id: str, items: Sequence[Item], *, skip_held: bool = False
    ) -> list[Item] | None:
        prepared, encoded, size = encoded_items(items, "items")
        self._check_size(size)
        added = await self._write(
            conv_sql.append, owner, conversation_id, encoded, self._ttl_ms, self.max_object_bytes, skip_held
        )
        return None if added is None else [prepared[k] for k in added]

    async def conversation_context(self, owner: str, conversation_id: str) -> ConversationContext | None:
        found = await self._db.run("read", conv_sql.context, owner, conversation_id)
        return None if found is None else ConversationContext(conversation_id, *found)

    async def list_conversation_items(
        self, owner: str, conversation_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> ItemPage | None:
        check_page_args(limit, order)
        return await self._db.run(
            "read", conv_sql.list_items, owner, conversation_id, limit, order, after
        )

    async def get_conversation_item(self, owner: str, conversation_id: str, item_id: str) -> Item | None:
        return await self._db.run("read", conv_sql.get_item, owner, conversation_id, item_id)

    async def delete_conversation_item(
        self, owner: str, conversation_id: str, item_id: str
    ) -> dict[str, Any] | None:
        return await self._write(
            conv_sql.delete_item, owner, conversation_id, item_id, self._ttl_ms
        )

    # ------------------------------------------------------------------ upkeep

    async def sweep(self, *, force: bool = False, batch: int = SWEEP_BATCH) -> int:
        """Delete expired rows now, at most ``batch`` responses and ``batch // 5`` conversations;
        ``force`` ignores a sweep another worker made within the interval. Returns how many."""
        return await self._db.run("write", _sweep, SWEEP_INTERVAL_SECS, batch, force)

    async def aclose(self) -> None:
        await self._db.aclose()


def _sweep(conn: Any, interval_secs: float, batch: int, force: bool) -> int:
    now = resp_sql.now_ms()
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('sweep_after', 0)")
        claimed = conn.execute(
            "UPDATE meta SET v = ? WHERE k = 'sweep_after' AND (v <= ? OR ?)",
            (now + int(interval_secs * 1000), now, force),
        ).rowcount
        if not claimed:
            return 0
        return (
            resp_sql.sweep_responses(conn, now, batch)
            + conv_sql.sweep_conversations(conn, now, max(1, batch // 5))
            + job_sql.sweep_jobs(conn, now, batch)
        )


def _log_sweep(fut: asyncio.Future[Any]) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:
        log.warning("store sweep failed: %s", exc)
    elif fut.result():
        log.debug("store sweep deleted %d expired objects", fut.result())
