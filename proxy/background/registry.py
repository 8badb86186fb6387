"""One worker's background jobs: admission, lease renewal, reaping, cancels, and shutdown.

Every worker runs three small loops whenever a store is configured:

- **renewal** every ``RENEW_SECS``: one ``renew_leases`` call for all this worker's jobs; a job the
  store no longer counts as this worker's (cancelled, or reaped while this worker could not reach
  the store) is stopped. On SQLite this call is also how a cancel from another process is heard.
- **reaper** every ``reap_secs`` (``BACKGROUND_LEASE_SECS`` / 5, between 0.5 and 2 s, jittered):
  at most ``REAP_BATCH`` jobs whose lease ran out, each claimed atomically (``control.reap``), so a
  job whose worker was SIGKILLed, OOM-killed or lost with its host is ``failed`` within
  ``lease_bound_secs`` = lease + reap interval + one store call.
- **cancel watch** (Redis): cancels published for this worker, heard at once.

Shutdown: ``begin_shutdown`` (on SIGTERM, ``shutdown``) refuses new jobs and gives the running ones
``GRACEFUL_TIMEOUT_SECS`` to finish; then they are stopped and end ``failed`` — with a terminal
event — within ``SHUTDOWN_MARGIN_SECS``, which ``conf/gunicorn.conf.py`` adds to gunicorn's own
graceful timeout so that happens before gunicorn kills the worker.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..metrics import Metrics
from ..settings import BACKGROUND_SHUTDOWN_MARGIN_SECS
from ..store import Store, StoreError
from . import control
from .signals import on_shutdown_signal

log = logging.getLogger("proxy.background")

RENEW_SECS = 0.5
REAP_BATCH = 64  # as many as one worker runs by default: a dead worker's jobs go in one pass
SHUTDOWN_MARGIN_SECS = float(BACKGROUND_SHUTDOWN_MARGIN_SECS)  # to stop late jobs and store their failure
_WARN_EVERY_SECS = 30.0


class Busy(Exception):
    """This worker takes no more background jobs now: its cap (429), or it is shutting down (503)."""

    def __init__(self, message: str, retry_after: int, status: int = 429) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class Stop:
    """A job's stop signal: ``future`` is its exchange's ``disconnected`` (ending the upstream
    request at once); ``reason`` says why: ``cancelled``, ``lost``, ``shutdown`` or ``log``."""

    __slots__ = ("future", "reason")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reason: str | None = None

    def __call__(self, reason: str) -> None:
        if not self.future.done():
            self.reason = reason
            self.future.set_result(None)


@dataclass(slots=True)
class Running:
    owner: str
    stop: Stop
    task: asyncio.Task[None] | None = None


def worker_token() -> str:
    """This process among every worker of every instance (host, pid, and a nonce for a reused pid)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{os.urandom(3).hex()}"


class Jobs:
    """See the module docstring. ``startup``/``aclose`` run in the worker's loop (ASGI lifespan)."""

    def __init__(
        self, store: Store, metrics: Metrics, *, lease_secs: float, max_per_worker: int, max_per_key: int,
        graceful_secs: float,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.lease_secs = lease_secs
        self.max_per_worker = max_per_worker
        self.max_per_key = max_per_key
        self.graceful_secs = graceful_secs
        self.reap_secs = min(2.0, max(0.5, lease_secs / 5))
        self.worker = worker_token()
        self.running: dict[str, Running] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._draining: asyncio.Task[None] | None = None
        self._warned = 0.0

    @property
    def lease_ms(self) -> int:
        return int(self.lease_secs * 1000)

    @property
    def lease_bound_secs(self) -> float:
        """How long a job whose worker vanished can still look ``in_progress``, at most."""
        return self.lease_secs + self.reap_secs * 1.2 + 1.0

    def admit(self, response_id: str, owner: str) -> None:
        """Take a slot for job ``response_id`` now (``launch`` it, or ``discard`` the slot), or
        raise ``Busy``: this worker is at its cap or shutting down."""
        if self._draining is not None:
            raise Busy("This server is shutting down; send the background request again.", 1, 503)
        if len(self.running) >= self.max_per_worker:
            raise Busy(
                f"This worker is running its limit of {self.max_per_worker} background responses "
                "(BACKGROUND_MAX_PER_WORKER); retry shortly.",
                max(1, int(self.lease_secs / 2)),
            )
        self.running[response_id] = Running(owner, Stop())

    def discard(self, response_id: str) -> None:
        entry = self.running.get(response_id)
        if entry is not None and entry.task is None:
            del self.running[response_id]

    def launch(self, response_id: str, run: Callable[[Stop], Awaitable[None]]) -> None:
        """Run ``run(stop)`` as the admitted job ``response_id`` (its record is in the store)."""
        entry = self.running[response_id]
        entry.task = asyncio.ensure_future(self._guard(response_id, run(entry.stop)))

    async def _guard(self, response_id: str, job: Awaitable[None]) -> None:
        self.metrics.jobs_running(1)
        try:
            await job
        except Exception:
            log.exception("response_id=%s: the background job failed unexpectedly", response_id)
        finally:
            self.running.pop(response_id, None)
            self.metrics.jobs_running(-1)

    def stop(self, response_id: str, reason: str) -> None:
        entry = self.running.get(response_id)
        if entry is not None:
            entry.stop(reason)

    # ------------------------------------------------------------------ loops

    async def startup(self) -> None:
        self.worker = worker_token()  # (this process's, whatever built the object)
        on_shutdown_signal(self.begin_shutdown)
        self._loops = [
            asyncio.ensure_future(self._every(RENEW_SECS, self._renew)),
            asyncio.ensure_future(self._every(self.reap_secs, self._reap, jitter=0.2)),
            asyncio.ensure_future(self._watch()),
        ]

    async def _every(self, secs: float, step: Callable[[], Awaitable[None]], jitter: float = 0.0) -> None:
        while True:
            await asyncio.sleep(secs * (1 + random.uniform(-jitter, jitter)))
            try:
                await step()
            except StoreError as exc:
                self._warn(f"background upkeep could not reach the store: {exc}")
            except Exception:
                log.exception("background upkeep failed")

    async def _renew(self) -> None:
        jobs = [(entry.owner, rid) for rid, entry in self.running.items() if entry.task is not None]
        if not jobs:
            return
        for rid in await self.store.renew_leases(self.worker, jobs, self.lease_ms):
            self.stop(rid, "lost")

    async def _reap(self) -> None:
        for owner, rid in await self.store.expired_jobs(REAP_BATCH):
            if rid in self.running:
                continue  # this worker's and alive: its next renewal extends it
            if await control.reap(self.store, owner, rid):
                self.metrics.background_job("reaped")
                log.warning("response_id=%s: background job lost (its lease ran out); marked failed", rid)

    async def _watch(self) -> None:
        try:
            await self.store.watch_cancels(self.worker, lambda rid: self.stop(rid, "cancelled"))
        except Exception:
            log.exception("the cancel subscription stopped; cancels are heard by lease renewal only")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY_SECS:
            self._warned = now
            log.warning(message)

    # ------------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> None:
        """Take no new job; let the running ones finish for ``graceful_secs``, then stop them."""
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain(time.monotonic() + self.graceful_secs))

    async def _drain(self, deadline: float) -> None:
        tasks = [e.task for e in self.running.values() if e.task is not None]
        if tasks:
            log.info("shutting down: %d background job(s) get %.0f s to finish", len(tasks), self.graceful_secs)
            await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        late = [e.task for e in self.running.values() if e.task is not None]
        if late:
            log.warning("shutting down: stopping %d unfinished background job(s) as failed", len(late))
            for rid in list(self.running):
                self.stop(rid, "shutdown")
            await asyncio.wait(late, timeout=SHUTDOWN_MARGIN_SECS - 1.0)

    async def aclose(self) -> None:
        """The worker's lifespan ends: drain (if SIGTERM did not start it already), stop the loops."""
        self.begin_shutdown()
        assert self._draining is not None
        await self._draining
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            try:
                await task
            except BaseException:
                pass
