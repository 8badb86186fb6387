"""Background jobs on SQLite: ``SQLiteStore``'s half of the job contract (``jobs`` says what it
promises; the SQL is in ``sqlite_job_sql``).

SQLite cannot push anything to another process, so the two waits are polls: a follower of a live
log reads it every ``FOLLOW_POLL_SECS`` on the reader thread (WAL readers never wait for the
writer), and a worker hears of a cancel at its next lease renewal, which ``proxy.background``
makes at least once a second. ``watch_cancels`` has nothing to watch here.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import sqlite_job_sql as job_sql
from . import sqlite_responses as resp_sql
from .base import EventPage, JobSnapshot, NewJob, NewResponse
from .items import response_parts
from .sqlite_threads import SQLiteThreads

FOLLOW_POLL_SECS = 0.1


class SQLiteJobs:
    """Mixed into ``SQLiteStore``; uses its threads, limits and ``_write``."""

    max_object_bytes: int
    _ttl_ms: int
    _db: SQLiteThreads
    _write: Callable[..., Awaitable[Any]]  # SQLiteStore's
    _check_size: Callable[[int], None]  # StoreBase's

    async def create_background(self, owner: str, response: NewResponse, job: NewJob) -> None:
        blob, ids, size, _ = response_parts(response)  # (a job's response has no window)
        self._check_size(size)
        prev, conv = response.previous, response.conversation
        also = job_sql.job_row(owner, job.worker, job.lease_ms, job.max_per_owner, job.events, response.id)
        await self._write(
            resp_sql.put_response, owner, response.id, response.body, blob, len(response.input_items), ids,
            prev.response_id if prev else None,
            (conv.conversation_id, conv.seq) if conv else None,
            prev.items if prev else conv.items if conv else [],
            self._ttl_ms, self.max_object_bytes, also,
        )

    async def start_background(self, owner: str, response_id: str, body: bytes, worker: str) -> bool:
        return await self._write(job_sql.start, owner, response_id, body, worker)

    async def append_events(
        self, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes]
    ) -> bool:
        if not events:
            return True
        return await self._write(
            job_sql.append, owner, response_id, worker, first_seq, list(events), self.max_object_bytes
        )

    async def finish_background(
        self, owner: str, response: NewResponse, worker: str, first_seq: int, events: Sequence[bytes], outcome: str
    ) -> bool:
        blob, ids, size, _ = response_parts(response)  # (a job's response has no window)
        self._check_size(size)
        return await self._write(
            job_sql.finish, owner, response.id, worker, first_seq, list(events), response.body, blob, ids, outcome,
            self.max_object_bytes,
        )

    async def close_cancelled(
        self, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes]
    ) -> bool:
        return await self._write(
            job_sql.close, owner, response_id, worker, first_seq, list(events), self.max_object_bytes
        )

    async def end_background(
        self, owner: str, response_id: str, body: bytes, *, version: int, outcome: str, only_expired: bool = False
    ) -> str:
        return await self._write(job_sql.end, owner, response_id, body, version, outcome, only_expired)

    async def background_job(self, owner: str, response_id: str) -> JobSnapshot | None:
        return await self._db.run("read", job_sql.snapshot, owner, response_id)

    async def read_events(
        self, owner: str, response_id: str, after: int, *, wait_secs: float = 0.0, limit: int = 500
    ) -> EventPage | None:
        deadline = time.monotonic() + wait_secs
        while True:
            page = await self._db.run("read", job_sql.read, owner, response_id, after, limit)
            if page is None or page.events or page.ended or time.monotonic() + FOLLOW_POLL_SECS > deadline:
                return page
            await asyncio.sleep(FOLLOW_POLL_SECS)

    async def renew_leases(self, worker: str, jobs: Sequence[tuple[str, str]], lease_ms: int) -> set[str]:
        if not jobs:
            return set()
        return await self._write(job_sql.renew, worker, [rid for _, rid in jobs], lease_ms)

    async def expired_jobs(self, limit: int) -> list[tuple[str, str]]:
        return await self._db.run("read", job_sql.expired, limit)

    async def watch_cancels(self, worker: str, on_cancel: Callable[[str], None]) -> None:
        return None  # nothing to subscribe to: renew_leases reports cancels
