"""Background jobs on Redis: ``RedisStore``'s half of the job contract (``jobs`` says what it
promises; the scripts and the key layout are in ``redis_job_scripts``).

Every operation is one script, as the rest of the store, except two that wait: a follower of a
live log blocks in ``XREAD BLOCK`` (at most ``FOLLOW_BLOCK_SECS`` per call, on a pool of its own so
followers never take the connections requests need), and each worker keeps one subscription to
its cancel channel.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from . import redis_job_scripts as jobs_lua
from .base import EventPage, JobSnapshot, NewJob, NewResponse, ObjectTooLarge, StoreError, TooManyJobs
from .items import response_parts
from .redis_link import RedisLink

log = logging.getLogger("proxy.store")

FOLLOW_BLOCK_SECS = 1.0  # one XREAD BLOCK; a follower calls again (and its caller may send a keep-alive)
MAX_FOLLOWERS = 512  # connections of the follower pool (one per follower blocked at that moment)
SUBSCRIBER_IDLE_SECS = 30.0  # a silent cancel subscription is reopened (a dead peer never says so)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(first_seq: int, events: Sequence[bytes]) -> list[Any]:
    out: list[Any] = []
    for i, data in enumerate(events):
        out += (first_seq + i, data)
    return out


class RedisJobs:
    """Mixed into ``RedisStore``; uses its ``_run``, ``_put``, limits and prefix."""

    prefix: str
    max_object_bytes: int
    _timeout_secs: float
    _follow: RedisLink
    _link: RedisLink
    _run: Callable[..., Awaitable[Any]]  # RedisStore's: one script
    _put: Callable[..., Awaitable[Any]]  # RedisStore's: one script that stores a response

    def _init_jobs(self, url: str, timeout_secs: float) -> None:
        self._timeout_secs = timeout_secs
        self._follow = RedisLink(url, timeout_secs, MAX_FOLLOWERS)

    async def _close_jobs(self) -> None:
        await self._follow.aclose()

    def _logged(self, reply: Any) -> bool:
        if reply[0] == b"too_large":
            raise ObjectTooLarge(int(reply[1]), self.max_object_bytes)
        return bool(reply[0] == b"ok")

    async def create_background(self, owner: str, response: NewResponse, job: NewJob) -> None:
        tail = (job.worker, job.lease_ms, job.max_per_owner, "1" if job.events else "0")
        reply = await self._put(
            owner, response, jobs_lua.CREATE_BACKGROUND, tail, lambda r: r[0] == b"put" and r[1] == b"0"
        )
        if reply[0] == b"limit":
            raise TooManyJobs(int(reply[1]), job.max_per_owner)
        if reply[0] != b"ok":
            raise StoreError(f"could not store background response {response.id}: {_text(reply[-1])}")

    async def start_background(self, owner: str, response_id: str, body: bytes, worker: str) -> bool:
        return bool(await self._run(jobs_lua.START, owner, response_id, body, worker) == 1)

    async def append_events(
        self, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes]
    ) -> bool:
        if not events:
            return True
        pairs = _pairs(first_seq, events)
        return self._logged(await self._run(jobs_lua.APPEND, owner, response_id, worker, self.max_object_bytes, *pairs))

    async def finish_background(
        self, owner: str, response: NewResponse, worker: str, first_seq: int, events: Sequence[bytes], outcome: str
    ) -> bool:
        blob, ids, size, _ = response_parts(response)  # (a job's response has no window)
        if size > self.max_object_bytes:
            raise ObjectTooLarge(size, self.max_object_bytes)
        reply = await self._run(
            jobs_lua.FINISH, owner, response.id, worker, self.max_object_bytes, response.body, blob,
            orjson.dumps(ids), outcome, *_pairs(first_seq, events),
        )
        return self._logged(reply)

    async def close_cancelled(
        self, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes]
    ) -> bool:
        pairs = _pairs(first_seq, events)
        return bool(await self._run(jobs_lua.CLOSE, owner, response_id, worker, self.max_object_bytes, *pairs) == 1)

    async def end_background(
        self, owner: str, response_id: str, body: bytes, *, version: int, outcome: str, only_expired: bool = False
    ) -> str:
        reply = await self._run(
            jobs_lua.END, owner, response_id, body, version, outcome, "1" if only_expired else "0"
        )
        return _text(reply[0])

    async def background_job(self, owner: str, response_id: str) -> JobSnapshot | None:
        found = await self._run(jobs_lua.SNAPSHOT, owner, response_id)
        if found is None:
            return None
        return JobSnapshot(_text(found[0]), int(found[1]), found[2] if len(found) > 2 else None)

    async def read_events(
        self, owner: str, response_id: str, after: int, *, wait_secs: float = 0.0, limit: int = 500
    ) -> EventPage | None:
        page = await self._read(owner, response_id, after, limit)
        if page is None or page.events or page.ended or wait_secs <= 0:
            return page
        block = min(wait_secs, FOLLOW_BLOCK_SECS)
        key = f"{self.prefix}ev:{owner}:{response_id}"
        got = await self._follow.command(
            "XREAD", "COUNT", limit, "BLOCK", int(block * 1000), "STREAMS", key, f"0-{after + 1}",
            reply_timeout=block + self._timeout_secs,
        )
        if not got:  # nothing in time: one more look, which also sees a job ended without a log entry
            return await self._read(owner, response_id, after, limit)
        # One stream asked: its entries (a RESP3 map {key: entries}, or RESP2 [[key, entries]]).
        entries = next(iter(got.values())) if isinstance(got, dict) else got[0][1]
        events: list[bytes] = []
        for _, fields in entries:
            if fields[0] == b"e":
                return EventPage(events, True)
            events.append(fields[1])
        return EventPage(events, False)

    async def _read(self, owner: str, response_id: str, after: int, limit: int) -> EventPage | None:
        found = await self._run(jobs_lua.READ, owner, response_id, after, limit)
        if found is None:
            return None
        if found[0] == b"none":
            return EventPage([], True, logged=False)
        return EventPage(list(found[1:]), found[0] == b"1")

    async def renew_leases(self, worker: str, jobs: Sequence[tuple[str, str]], lease_ms: int) -> set[str]:
        if not jobs:
            return set()
        flat = [part for pair in jobs for part in pair]
        return {_text(rid) for rid in await self._run(jobs_lua.RENEW, "", worker, lease_ms, *flat)}

    async def expired_jobs(self, limit: int) -> list[tuple[str, str]]:
        members = await self._run(jobs_lua.EXPIRED, "", limit)
        out = []
        for member in members:
            owner, _, rid = _text(member).partition(":")
            out.append((owner, rid))
        return out

    async def watch_cancels(self, worker: str, on_cancel: Callable[[str], None]) -> None:
        """Hear cancels published for ``worker`` until cancelled. A subscription that fails (Redis
        away) or stays silent for ``SUBSCRIBER_IDLE_SECS`` is reopened; a cancel published
        meanwhile is missed here and heard by the next lease renewal instead."""
        channel = f"{self.prefix}cancel:{worker}"
        while True:
            conn = self._link.connection()
            try:
                await asyncio.wait_for(conn.connect(), self._timeout_secs)
                await conn.send_command("SUBSCRIBE", channel, check_health=False)
                while True:
                    reading = conn.read_response(timeout=math.inf, push_request=True)  # (RESP3: a push message)
                    message = await asyncio.wait_for(reading, SUBSCRIBER_IDLE_SECS)
                    if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                        on_cancel(_text(message[2]))
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                pass  # silent for a while: reopen, in case the peer is gone
            except Exception as exc:
                log.debug("cancel subscription for %s failed (%s); reopening", worker, exc)
                await asyncio.sleep(1.0)
            finally:
                await conn.disconnect(nowait=True)
