"""A circuit breaker shared by every worker process on a host.

Gunicorn forks N workers; a breaker that lived in each worker's memory would
need N times ``threshold`` failures to open and would send N probes at once
when recovering. So the state lives in a tiny ``MAP_SHARED`` mmap that the
master creates before forking (``create_shared_state()`` from
``conf/gunicorn.conf.py``) and every worker, including ones respawned after a
SIGKILL, inherits.

Concurrency design:

* **Writers** (state transitions) hold a POSIX record lock (``fcntl.lockf``) on
  the backing file. Record locks exclude across processes and the kernel drops
  them when the holder dies, so a killed worker never leaves the lock held.
  A ``threading.Lock`` is taken too, because record locks are per process and
  would not exclude two threads of one worker.
* **Readers** never lock. The block is framed by two sequence numbers: a writer
  stores ``seq_b`` first, then the data, then ``seq_a``; a reader unpacks the
  whole block in one ``struct.unpack_from`` (memory order: ``seq_a``, data,
  ``seq_b``) and accepts it only if both numbers match, else it retries. If
  they keep differing, a writer died mid-store; the reader then takes the lock
  (granted once the kernel released the dead writer's) and repairs the frame.
  This relies on stores and loads not being reordered among themselves, which
  holds on x86 (TSO). On weakly ordered CPUs a reader could, in a very narrow
  window, act on a mixed snapshot; the cost is one wrongly admitted or refused
  request, never a stuck breaker, since every transition re-reads under lock.
* **The hot path** — ``acquire()`` while closed, ``record_success()`` while
  closed with no failures counted — is one unpack and a compare: no lock, no
  clock read, no syscall.

Times come from ``time.monotonic()``; on Linux CLOCK_MONOTONIC is system-wide,
so a timestamp written by one worker is comparable in another.

State machine: closed -> open after ``threshold`` consecutive failures (a
success resets the count). While open, ``acquire`` raises ``BreakerOpen``.
After ``recovery_secs`` exactly one caller, across all processes, gets a probe
permit (half-open); its success closes the breaker, its failure re-opens it,
its ``release`` (no verdict) lets the next caller probe. A probe that never
reports (its worker died) is superseded after ``probe_timeout_secs``. Only the
current probe's verdict changes state; a superseded probe's report does not.

``snapshot()["is_open"]`` is True in half-open too: apart from the single probe,
requests are refused, which is what "open" means to an operator.
"""
from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BreakerOpen",
    "CircuitBreaker",
    "Permit",
    "SharedState",
    "create_shared_state",
    "shared_state",
]

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
_STATE_NAMES = ("closed", "open", "half_open")

# Layout, all 8-byte aligned (the mmap is page aligned):
#   0 seq_a  1 state  2 consecutive_failures  3 opened_at  4 probe_started_at
#   5 probe_inflight  6 probe_token  7 total_opens  8 total_probes
#   9 total_recoveries  10 seq_b
# An all-zero block (a fresh file) is a valid "closed, no failures" state.
_BLOCK = struct.Struct("@QqqddqqqqqQ")
_DATA = struct.Struct("@qqddqqqqq")
_SEQ = struct.Struct("@Q")
_SEQ_B_OFFSET = _BLOCK.size - _SEQ.size
_SIZE = _BLOCK.size
_I_SEQ_A, _I_SEQ_B = 0, 10
_I_STATE, _I_FAILURES, _I_OPENED_AT = 1, 2, 3
_I_PROBE_STARTED_AT, _I_PROBE_INFLIGHT = 4, 5
_I_TOTAL_OPENS, _I_TOTAL_PROBES, _I_TOTAL_RECOVERIES = 7, 8, 9
# Lock-free read attempts before concluding a writer died mid-store. A live
# writer finishes its three stores in well under a microsecond.
_READ_SPINS = 64


class BreakerOpen(Exception):
    """The backend is considered down; the request was not sent to it."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"circuit breaker open; retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Permit:
    """Proof of admission, handed back to ``record_*``/``release``.

    ``token`` identifies which probe this is, so a probe superseded after
    ``probe_timeout_secs`` cannot decide the state when it finally reports.
    """

    probe: bool
    token: int = 0


_PLAIN = Permit(probe=False)


class _Record:
    """Mutable copy of the shared block, used only under the lock."""

    __slots__ = (
        "seq",
        "state",
        "failures",
        "opened_at",
        "probe_started_at",
        "probe_inflight",
        "probe_token",
        "total_opens",
        "total_probes",
        "total_recoveries",
    )

    def __init__(self, block: tuple[Any, ...]) -> None:
        (
            self.seq,
            self.state,
            self.failures,
            self.opened_at,
            self.probe_started_at,
            self.probe_inflight,
            self.probe_token,
            self.total_opens,
            self.total_probes,
            self.total_recoveries,
            _,
        ) = block

    def data(self) -> tuple[Any, ...]:
        return (
            self.state,
            self.failures,
            self.opened_at,
            self.probe_started_at,
            self.probe_inflight,
            self.probe_token,
            self.total_opens,
            self.total_probes,
            self.total_recoveries,
        )


_instances: weakref.WeakSet[SharedState] = weakref.WeakSet()


class SharedState:
    """The breaker's state in an unlinked, ``MAP_SHARED`` file.

    Create it before forking; children inherit the mapping and the descriptor.
    Record locks are not inherited by ``fork``, so a child never starts out
    holding one.
    """

    def __init__(self, directory: str | None = None) -> None:
        fd = _open_unlinked(directory)
        try:
            os.ftruncate(fd, _SIZE)
            self._mm = mmap.mmap(
                fd, _SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
            )
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._tlock = threading.Lock()
        _instances.add(self)

    def fileno(self) -> int:
        return self._fd

    def read(self) -> tuple[Any, ...]:
        """A consistent copy of the block, without locking (see module doc)."""
        mm = self._mm
        for _ in range(_READ_SPINS):
            block = _BLOCK.unpack_from(mm, 0)
            if block[_I_SEQ_A] == block[_I_SEQ_B]:
                return block
        with self.locked():
            return _BLOCK.unpack_from(mm, 0)

    @contextmanager
    def locked(self) -> Iterator[_Record]:
        """Hold the cross-process lock; yield the state; store it if changed.

        Nothing is stored if the body raises.
        """
        with self._tlock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                block = _BLOCK.unpack_from(self._mm, 0)
                if block[_I_SEQ_A] != block[_I_SEQ_B]:
                    block = self._repair(block)
                rec = _Record(block)
                before = rec.data()
                yield rec
                after = rec.data()
                if after != before:
                    self._store(max(block[_I_SEQ_A], block[_I_SEQ_B]) + 1, after)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _repair(self, block: tuple[Any, ...]) -> tuple[Any, ...]:
        """Re-frame a block a writer left half-stored when it was killed.

        The fields may mix old and new values; each is individually valid
        except perhaps ``state``, which is clamped. The next transition
        re-derives everything else from it.
        """
        rec = _Record(block)
        if rec.state not in (CLOSED, OPEN, HALF_OPEN):
            rec.state = OPEN
        seq = max(block[_I_SEQ_A], block[_I_SEQ_B]) + 1
        self._store(seq, rec.data())
        return _BLOCK.unpack_from(self._mm, 0)

    def _store(self, seq: int, data: tuple[Any, ...]) -> None:
        mm = self._mm
        _SEQ.pack_into(mm, _SEQ_B_OFFSET, seq)
        _DATA.pack_into(mm, _SEQ.size, *data)
        _SEQ.pack_into(mm, 0, seq)

    def close(self) -> None:
        """Unmap and close (tests; a server keeps it for its lifetime)."""
        self._mm.close()
        os.close(self._fd)


def _open_unlinked(directory: str | None) -> int:
    """A descriptor to a fresh file nobody else can open or has to clean up."""
    candidates = [directory] if directory else ["/dev/shm", tempfile.gettempdir()]
    last: OSError | None = None
    for d in candidates:
        if not os.path.isdir(d):
            continue
        try:
            fd, path = tempfile.mkstemp(prefix="responses-proxy-breaker-", dir=d)
        except OSError as exc:
            last = exc
            continue
        os.unlink(path)
        return fd
    raise last or FileNotFoundError(f"no directory for breaker state in {candidates}")


def _reinit_thread_locks() -> None:
    # A thread of the parent may have held a threading.Lock at fork time; that
    # thread does not exist in the child, so the lock would never be released.
    for state in list(_instances):
        state._tlock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_thread_locks)

_shared: SharedState | None = None


def create_shared_state() -> SharedState:
    """Create the host-wide state and make it this process tree's default.

    Call in the gunicorn master before it forks (``conf/gunicorn.conf.py``);
    workers then find it through ``shared_state()``.
    """
    global _shared
    _shared = SharedState()
    return _shared


def shared_state() -> SharedState:
    """The state inherited from the master, or a new one if none was made."""
    global _shared
    if _shared is None:
        _shared = SharedState()
    return _shared


class CircuitBreaker:
    """Per-host circuit breaker over a ``SharedState`` (see module doc)."""

    __slots__ = ("_enabled", "_threshold", "_recovery", "_probe_timeout", "_state", "_clock")

    def __init__(
        self,
        *,
        enabled: bool = True,
        threshold: int = 5,
        recovery_secs: float = 30.0,
        probe_timeout_secs: float = 600.0,
        state: SharedState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        if recovery_secs < 0:
            raise ValueError("recovery_secs must be >= 0")
        if probe_timeout_secs <= 0:
            raise ValueError("probe_timeout_secs must be > 0")
        self._enabled = enabled
        self._threshold = threshold
        self._recovery = float(recovery_secs)
        self._probe_timeout = float(probe_timeout_secs)
        self._clock = clock
        # A disabled breaker never touches shared memory.
        self._state = state if state is not None or not enabled else shared_state()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def acquire(self) -> Permit:
        """Admit a request, or raise ``BreakerOpen`` without touching the backend."""
        if not self._enabled:
            return _PLAIN
        block = self._state.read()  # type: ignore[union-attr]
        if block[_I_STATE] == CLOSED:
            return _PLAIN
        wait = self._wait(
            block[_I_STATE],
            block[_I_OPENED_AT],
            block[_I_PROBE_INFLIGHT],
            block[_I_PROBE_STARTED_AT],
            self._clock(),
        )
        if wait > 0:
            raise BreakerOpen(_retry_after(wait))
        with self._state.locked() as rec:  # type: ignore[union-attr]
            if rec.state == CLOSED:
                return _PLAIN
            now = self._clock()
            wait = self._wait(
                rec.state, rec.opened_at, rec.probe_inflight, rec.probe_started_at, now
            )
            if wait > 0:
                raise BreakerOpen(_retry_after(wait))
            rec.state = HALF_OPEN
            rec.probe_inflight = 1
            rec.probe_started_at = now
            rec.probe_token += 1
            rec.total_probes += 1
            return Permit(probe=True, token=rec.probe_token)

    def record_success(self, permit: Permit) -> None:
        """The backend answered. Free when closed with no failures counted."""
        if not self._enabled:
            return
        if not permit.probe:
            block = self._state.read()  # type: ignore[union-attr]
            if block[_I_STATE] != CLOSED or block[_I_FAILURES] == 0:
                return
        with self._state.locked() as rec:  # type: ignore[union-attr]
            if permit.probe and self._is_current_probe(rec, permit):
                rec.state = CLOSED
                rec.probe_inflight = 0
                rec.total_recoveries += 1
                rec.failures = 0
            elif rec.state == CLOSED:
                rec.failures = 0

    def record_failure(self, permit: Permit) -> None:
        """The backend failed (callers report only backend failures)."""
        if not self._enabled:
            return
        with self._state.locked() as rec:  # type: ignore[union-attr]
            rec.failures += 1
            if permit.probe:
                if self._is_current_probe(rec, permit):
                    self._open(rec)
            elif rec.state == CLOSED and rec.failures >= self._threshold:
                self._open(rec)

    def release(self, permit: Permit) -> None:
        """The request ended without a verdict; a probe's slot goes to the next caller."""
        if not self._enabled or not permit.probe:
            return
        with self._state.locked() as rec:  # type: ignore[union-attr]
            if self._is_current_probe(rec, permit):
                rec.probe_inflight = 0

    def snapshot(self) -> dict[str, Any]:
        """For health/metrics endpoints. ``is_open`` is True in half-open too;
        ``admits_probe`` says whether the next request would be let through as
        the probe (recovery time over, no probe in flight)."""
        if not self._enabled:
            return {
                "enabled": False, "is_open": False, "consecutive_failures": 0,
                "state": "closed", "admits_probe": False,
            }
        block = self._state.read()  # type: ignore[union-attr]
        state = block[_I_STATE]
        admits_probe = state != CLOSED and self._wait(
            state, block[_I_OPENED_AT], block[_I_PROBE_INFLIGHT], block[_I_PROBE_STARTED_AT], self._clock()
        ) <= 0
        return {
            "enabled": True,
            "is_open": state != CLOSED,
            "consecutive_failures": block[_I_FAILURES],
            "state": _STATE_NAMES[state] if 0 <= state < 3 else "open",
            "admits_probe": admits_probe,
        }

    def stats(self) -> dict[str, int]:
        """Host-wide totals since the state was created (zeros when disabled)."""
        if not self._enabled:
            return {"opens": 0, "probes": 0, "recoveries": 0}
        block = self._state.read()  # type: ignore[union-attr]
        return {
            "opens": block[_I_TOTAL_OPENS],
            "probes": block[_I_TOTAL_PROBES],
            "recoveries": block[_I_TOTAL_RECOVERIES],
        }

    # -- internals ---------------------------------------------------------

    def _wait(
        self, state: int, opened_at: float, probe_inflight: int, probe_started_at: float, now: float
    ) -> float:
        """Seconds until a probe may be admitted (<= 0: now), state not closed.

        While a probe is in flight the true wait is unknown: it closes the
        breaker when it succeeds, and re-opens it for ``recovery_secs`` when it
        fails. The wait reported is the sooner of that and the probe timeout.
        """
        if state == HALF_OPEN:
            if not probe_inflight:
                return 0.0
            timeout_left = probe_started_at + self._probe_timeout - now
            return timeout_left if timeout_left <= 0 else min(timeout_left, max(self._recovery, 1.0))
        return opened_at + self._recovery - now

    def _open(self, rec: _Record) -> None:
        rec.state = OPEN
        rec.opened_at = self._clock()
        rec.probe_inflight = 0
        rec.total_opens += 1

    @staticmethod
    def _is_current_probe(rec: _Record, permit: Permit) -> bool:
        return rec.state == HALF_OPEN and rec.probe_inflight == 1 and rec.probe_token == permit.token


def _retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))
