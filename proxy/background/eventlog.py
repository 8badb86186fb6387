"""A running job's writes to the store: its events logged as they come, its start and its end.

Events are appended by one flusher task while the generation goes on (group commit): whatever
arrived while one append was in flight goes in the next, so a fast stream costs a few store calls
a second, not one per token, and a follower is at most one store round trip behind. The last
events go with the final body in one ``finish_background``, so an event log never shows a
terminal event the stored response does not.

A write that fails because the store is unavailable is retried (``WRITE_DELAYS_SECS``, about 6 s
in all), then the job is stopped (``StoreLost``); a log that would pass the store's object limit
stops it too (``LogFull``); a write the store refuses because the job is no longer this worker's
(cancelled, reaped) stops it as ``JobLost``. The first of these is ``failure``, and ``on_failure``
is told at once so the generation stops.

A cancel can win while events the original client has already been streamed are not logged yet
(the batch in flight, and those pending behind it: the live feed never waits for the store). The
store keeps a cancelled job's log open for its worker, which then logs exactly those and closes it
(``close_cancelled``), so a replay holds what the live client saw, the same events with the same
sequence numbers. That costs one write after a cancel, nothing while the job runs.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..store import NewResponse, ObjectTooLarge, Store, StoreUnavailable

log = logging.getLogger("proxy.background")

T = TypeVar("T")

WRITE_DELAYS_SECS = (0.25, 0.5, 1.0, 2.0, 2.0)  # between the attempts of one write


class JobLost(Exception):
    """The store says the job is no longer this worker's: cancelled, or reaped."""


class LogFull(Exception):
    """The event log would pass ``RESPONSE_STORE_MAX_OBJECT_BYTES``."""


class StoreLost(Exception):
    """The store could not be written for ``WRITE_DELAYS_SECS``."""


class EventLog:
    """The store writes of one job (see the module docstring); ``keep_events`` False logs none."""

    def __init__(
        self, store: Store, owner: str, response_id: str, worker: str, *, keep_events: bool,
        on_failure: Callable[[Exception], None],
    ) -> None:
        self._store = store
        self._owner = owner
        self._id = response_id
        self._worker = worker
        self._logging = keep_events
        self._on_failure = on_failure
        self._pending: list[bytes] = []
        self._next = 0  # sequence number of _pending[0]
        self._bytes = 0  # logged or pending
        self._flusher: asyncio.Task[None] | None = None
        self.failure: Exception | None = None

    async def start(self, body: bytes) -> None:
        """The Response ``in_progress``."""
        if not await self._retrying(lambda: self._store.start_background(self._owner, self._id, body, self._worker)):
            raise JobLost(self._id)

    def add(self, events: list[bytes]) -> None:
        """Log ``events`` (the next ones in sequence) soon, without waiting for the store."""
        if not self._logging or self.failure is not None:
            return
        self._pending += events
        self._bytes += sum(map(len, events))
        if self._bytes > self._store.max_object_bytes:
            self._fail(LogFull(self._id))
            return
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def finish(self, response: NewResponse, last: list[bytes], outcome: str) -> None:
        """The final body and items with every event not yet logged, in one write."""
        await self.settle()
        if self.failure is not None:
            raise self.failure
        events = self._pending + last if self._logging else []
        first = self._next

        def write() -> Awaitable[bool]:
            return self._store.finish_background(self._owner, response, self._worker, first, events, outcome)

        try:
            done = await self._retrying(write)
        except ObjectTooLarge:
            raise LogFull(self._id) from None
        if not done:
            raise JobLost(self._id)

    async def close_cancelled(self) -> None:
        """After the job was lost: if it was cancelled, the events streamed live that the log lacks,
        and the log closed. The store refuses it when the job was not cancelled (reaped), or was by
        a cancel that closed the log itself; a failure here leaves the log to close at the lease."""
        await self.settle()
        if not self._logging:
            return
        events, first = self._pending, self._next

        def write() -> Awaitable[bool]:
            return self._store.close_cancelled(self._owner, self._id, self._worker, first, events)

        try:
            if await self._retrying(write):
                self._pending, self._next = [], first + len(events)
        except Exception as exc:  # (StoreLost, or a bug of the store's): readers end at the lease instead
            log.warning("response_id=%s: closing its cancelled log failed: %s", self._id, exc)

    async def settle(self) -> None:
        """Wait for the append in flight, if any (it never raises: failures go to ``failure``)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._pending and self.failure is None:
            batch, first = self._pending, self._next
            self._pending = []
            try:
                appended = await self._retrying(self._appender(first, batch))
            except ObjectTooLarge:
                self._fail(LogFull(self._id))
                return
            except StoreLost as exc:
                self._pending = batch + self._pending
                self._fail(exc)
                return
            except Exception as exc:  # a bug of the store's: the job cannot go on logging
                log.exception("response_id=%s: logging its events failed", self._id)
                self._fail(StoreLost(str(exc)))
                return
            if not appended:
                self._pending = batch + self._pending  # streamed live: for close_cancelled
                self._fail(JobLost(self._id))
                return
            self._next = first + len(batch)

    def _appender(self, first: int, batch: list[bytes]) -> Callable[[], Awaitable[bool]]:
        return lambda: self._store.append_events(self._owner, self._id, self._worker, first, batch)

    def _fail(self, exc: Exception) -> None:
        if self.failure is None:
            self.failure = exc
            self._on_failure(exc)

    async def _retrying(self, write: Callable[[], Awaitable[T]]) -> T:
        for delay in (*WRITE_DELAYS_SECS, None):
            try:
                return await write()
            except StoreUnavailable as exc:
                if delay is None:
                    raise StoreLost(str(exc)) from exc
                log.warning("response_id=%s: the store refused a write (%s); retrying in %g s", self._id, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
