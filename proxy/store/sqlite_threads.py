"""SQLite work off the event loop: two dedicated threads per process, one connection each.

Why not ``loop.run_in_executor`` or aiosqlite: both hand a call to a thread through a
``concurrent.futures.Future`` chained to an asyncio future, measured here at 27–40 µs of CPU
per call (``loadtest/store_bench.py`` prints it). Here a job goes in through a plain
``SimpleQueue``, and its result comes back through the loop's ``Inbox`` (a socket write, whose
wake-up keeps the loop on the CPU it shares with the thread), and before each hand-off the
thread is moved to the caller's CPU (``colocate``). Two threads meeting on different CPUs of a
VM pay for waking an idle one twice a call: in process, at one request in flight, the stored
path cost 139 µs that way and 88 µs colocated (``loadtest/store_overhead.py --micro``,
2026-12-03; README, Performance).

Why two threads: SQLite lets one writer at a time into a database (across all processes), so a
second writer thread per process would only wait on the same lock, while WAL readers never wait
for writers — one reader thread keeps ``GET`` routes and history reads from ever queuing behind
a write that waits for the lock.

A job that is alone in the queue when the thread takes it (always, at one request in flight) is
run and answered directly, with no batch built around it: 22 µs of CPU per round trip instead of
26.5 (``loadtest/store_bench.py``, section 1, a job that does nothing; a bare queue and
``call_soon_threadsafe`` are 17). Jobs that queued up while the thread was busy run as one
batch: their results are handed back in one wake-up of the event loop, and the writer runs a
batch in one transaction committed once, before any of them is answered (each job's own
``transaction()`` is then a savepoint of it). A commit writes its pages to the WAL and takes the
file's locks, about half of a small put's cost, so under load N queued puts pay it once. If a
job of a batch fails (SQLite itself, or the job's own error such as ``ObjectTooLarge``), nothing
of the batch was committed and each job runs again on its own, exactly as it would have alone —
so a write job must do its writing inside ``sqlite_schema.transaction``, as every one does.

Every job carries a deadline: one that waited in the queue past the store's timeout is failed
with ``StoreUnavailable`` without running (so a write the caller gave up on never lands
later), and ``busy_timeout`` bounds the wait for the lock. A connection that raised a SQLite
error is closed and reopened by the next job, so a broken one is never reused. After a fork
(the store is never meant to cross one, but a test or a preloading server might) the child
starts its own threads and connections and never touches the parent's.
"""
from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .base import StoreError, StoreUnavailable
from .colocate import CpuFollower
from .inbox import Inbox

T = TypeVar("T")
Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...], float, Inbox]
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]

MAX_BATCH = 16  # jobs run (and, on the writer, committed) together at most


def _settle(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        _settle_one(*outcome)


def _settle_one(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled meanwhile
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _overdue() -> StoreUnavailable:
    return StoreUnavailable("the response store (SQLite) is overloaded: a request waited too long")


def map_error(exc: sqlite3.Error) -> StoreError:
    """SQLite's failures as the store's: locked, full, I/O, unopenable or corrupt → unavailable
    (the operator's problem, retryable); a constraint or API misuse → a bug."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return StoreError(f"sqlite: {exc}")
    text = str(exc)
    retry_after = 1 if "locked" in text or "busy" in text else 5
    return StoreUnavailable(f"the response store (SQLite) is unavailable: {text}", retry_after)


class SQLiteThreads:
    """Runs ``fn(connection, *args)`` on the reader or the writer thread and awaits its result."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], timeout_secs: float) -> None:
        self._connect = connect
        self._timeout = timeout_secs
        self._pid = -1
        self._queues: dict[str, queue.SimpleQueue[Job | None]] = {}
        self._followers: dict[str, CpuFollower] = {}
        self._inboxes: dict[asyncio.AbstractEventLoop, Inbox] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _queue(self, role: str) -> queue.SimpleQueue[Job | None]:
        """``role``'s queue, its thread moved to the caller's CPU first (``colocate``)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._start()
        self._followers[role].follow()
        return self._queues[role]

    def _start(self) -> None:
        self._queues = {"read": queue.SimpleQueue(), "write": queue.SimpleQueue()}
        self._threads = [
            threading.Thread(target=self._serve, args=(q, role == "write"), name=f"store-sqlite-{role}", daemon=True)
            for role, q in self._queues.items()
        ]
        for thread in self._threads:
            thread.start()
        self._followers = {role: CpuFollower(t.native_id) for role, t in zip(self._queues, self._threads)}
        self._inboxes = {}  # (a parent's, after a fork, belong to its loops)
        self._pid = os.getpid()

    def cpus(self) -> dict[str, int]:
        """The CPU each thread was last moved to (-1: not moved: not started, or not following)."""
        return {role: follower.cpu for role, follower in self._followers.items()}

    def _serve(self, jobs: queue.SimpleQueue[Job | None], writer: bool) -> None:
        conn: sqlite3.Connection | None = None
        stop = False
        while not stop and (job := jobs.get()) is not None:
            if jobs.empty():  # alone (always, at one request in flight): no batch to build
                fut, fn, args, deadline, inbox = job
                if not fut.done():
                    conn, result, exc = self._execute(conn, fn, args, deadline)
                    _post(inbox, _settle_one, fut, result, exc)
                continue
            batch = [job]
            # What queued up meanwhile, never waiting for more (this thread is the queue's only reader:
            # not empty() means get_nowait() has a job, without raising Empty at every wake-up).
            while len(batch) < MAX_BATCH and not jobs.empty():
                more = jobs.get_nowait()
                if more is None:
                    stop = True
                    break
                batch.append(more)
            batch = [j for j in batch if not j[0].done()]
            if not batch:
                continue
            if writer and len(batch) > 1:
                conn, outcomes = self._write_batch(conn, batch)
            else:
                outcomes = []
                for fut, fn, args, deadline, _ in batch:
                    conn, result, exc = self._execute(conn, fn, args, deadline)
                    outcomes.append((fut, result, exc))
            inbox = batch[0][4]
            if all(j[4] is inbox for j in batch):
                _post(inbox, _settle, outcomes)
            else:  # (callers on several loops: tests)
                for j, outcome in zip(batch, outcomes):
                    _post(j[4], _settle, [outcome])
        _discard(conn)

    def _write_batch(
        self, conn: sqlite3.Connection | None, batch: list[Job]
    ) -> tuple[sqlite3.Connection | None, list[Outcome]]:
        """Several writes in one transaction, committed once (module doc)."""
        outcomes: list[Outcome] = []
        try:
            if conn is None:
                conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            for fut, fn, args, deadline, _ in batch:
                if time.monotonic() > deadline:
                    outcomes.append((fut, None, _overdue()))
                    continue
                outcomes.append((fut, fn(conn, *args), None))
            conn.execute("COMMIT")
            return conn, outcomes
        except Exception:  # SQLite's or the job's own: rerun them one by one
            if conn is not None and conn.in_transaction:
                try:
                    conn.rollback()
                except sqlite3.Error:
                    conn = _discard(conn)
        # Nothing of the batch was committed: each job again on its own, as it would have run alone.
        outcomes = []
        for fut, fn, args, deadline, _ in batch:
            conn, result, exc = self._execute(conn, fn, args, deadline)
            outcomes.append((fut, result, exc))
        return conn, outcomes

    def _execute(
        self, conn: sqlite3.Connection | None, fn: Callable[..., Any], args: tuple[Any, ...], deadline: float
    ) -> tuple[sqlite3.Connection | None, Any, BaseException | None]:
        """One job; never raises, so the thread outlives every failure."""
        if time.monotonic() > deadline:
            return conn, None, _overdue()
        try:
            if conn is None:
                conn = self._connect()
            return conn, fn(conn, *args), None
        except sqlite3.Error as e:
            return _discard(conn), None, map_error(e)
        except BaseException as e:  # the job's own errors (ObjectTooLarge, …) go to the caller
            if conn is not None and conn.in_transaction:
                try:
                    conn.rollback()
                except sqlite3.Error:
                    return _discard(conn), None, e
            return conn, None, e

    async def run(self, role: str, fn: Callable[..., T], *args: Any) -> T:
        return await self.submit(role, fn, *args)

    def submit(self, role: str, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Queue a job; its future settles on the caller's loop (``run`` awaits it, the periodic
        sweep does not)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        jobs = self._queue(role)
        inbox = self._inboxes.get(loop) or self._open_inbox(loop)
        jobs.put((fut, fn, args, time.monotonic() + self._timeout, inbox))
        return fut

    def _open_inbox(self, loop: asyncio.AbstractEventLoop) -> Inbox:
        """The loop's inbox, first closing those of loops closed meanwhile (tests run many)."""
        for old in [old for old in self._inboxes if old.is_closed()]:
            self._inboxes.pop(old).close()
        inbox = self._inboxes[loop] = Inbox(loop)
        return inbox

    async def aclose(self) -> None:
        if self._pid != os.getpid():
            return
        for q in self._queues.values():
            q.put(None)
        threads, self._threads, self._pid = self._threads, [], -1
        for thread in threads:
            await asyncio.to_thread(thread.join, self._timeout + 5)
        inboxes, self._inboxes = self._inboxes, {}
        for inbox in inboxes.values():
            inbox.close()


def _post(inbox: Inbox, fn: Callable[..., None], *args: Any) -> None:
    try:
        inbox.post(fn, *args)
    except OSError:  # the inbox closed with its loop: nobody is waiting any more
        pass


def _discard(conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
    """Close a connection that raised (never to be reused); the next job opens a new one."""
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            pass
    return None
