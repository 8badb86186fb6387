"""The breaker state machine, the same for the host and for each model.

closed -> open after ``threshold`` counted failures. While open, requests are
refused. After ``recovery_secs`` exactly one caller, across all processes, gets
a probe (half-open); its success closes the breaker, its failure re-opens it
(from the time of the failure), no verdict lets the next caller probe. A probe
that never reports (its worker died) is superseded after ``probe_timeout_secs``.
Only the current probe's verdict changes state: each probe carries a token and
a superseded probe's late report decides nothing.

The functions here change a ``BreakerRecord`` that the caller holds under its
frame's lock; what counts as a failure, and when, is decided in
``proxy.breaker.breakers``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .shm import Record

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = ("closed", "open", "half_open")

# Positions in a frame's ``read()`` tuple (0 is seq_a); host and slot frames
# both start with these fields, in this order.
I_STATE, I_FAILURES, I_OPENED_AT, I_PROBE_STARTED_AT, I_PROBE_INFLIGHT = 1, 2, 3, 4, 5
I_PROBE_TOKEN, I_OPENS, I_PROBES, I_RECOVERIES = 6, 7, 8, 9


class BreakerRecord(Record):
    """The fields every breaker has. An all-zero record is closed with no failures."""

    __slots__ = (
        "state", "failures", "opened_at", "probe_started_at", "probe_inflight", "probe_token",
        "opens", "probes", "recoveries",
    )
    FIELDS: ClassVar[tuple[str, ...]] = __slots__
    FORMAT: ClassVar[str] = "qqddqqqqq"
    state: int
    failures: int
    opened_at: float
    probe_started_at: float
    probe_inflight: int
    probe_token: int
    opens: int
    probes: int
    recoveries: int

    def repair(self) -> None:
        # The fields may mix old and new values; each is individually valid
        # except perhaps ``state``. The next transition re-derives the rest.
        if self.state not in (CLOSED, OPEN, HALF_OPEN):
            self.state = OPEN


@dataclass(frozen=True, slots=True)
class Policy:
    threshold: int
    recovery_secs: float
    probe_timeout_secs: float

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be >= 1")
        if self.recovery_secs < 0:
            raise ValueError("recovery_secs must be >= 0")
        if self.probe_timeout_secs <= 0:
            raise ValueError("probe_timeout_secs must be > 0")

    def wait(self, state: int, opened_at: float, probe_inflight: int, probe_started_at: float, now: float) -> float:
        """Seconds until a probe may be admitted (<= 0: now); the state is not closed.

        While a probe is in flight the true wait is unknown: it closes the
        breaker when it succeeds, and re-opens it for ``recovery_secs`` when it
        fails. The wait reported is the sooner of that and the probe timeout.
        """
        if state == HALF_OPEN:
            if not probe_inflight:
                return 0.0
            timeout_left = probe_started_at + self.probe_timeout_secs - now
            return timeout_left if timeout_left <= 0 else min(timeout_left, max(self.recovery_secs, 1.0))
        return opened_at + self.recovery_secs - now

    def wait_of(self, block: tuple[Any, ...], now: float) -> float:
        """``wait`` for a frame's ``read()`` tuple."""
        return self.wait(block[I_STATE], block[I_OPENED_AT], block[I_PROBE_INFLIGHT], block[I_PROBE_STARTED_AT], now)

    def wait_rec(self, rec: BreakerRecord, now: float) -> float:
        return self.wait(rec.state, rec.opened_at, rec.probe_inflight, rec.probe_started_at, now)


def retry_after(wait: float) -> int:
    """Whole seconds for ``Retry-After``: at least 1."""
    return max(1, math.ceil(wait))


def trip(rec: BreakerRecord, now: float) -> None:
    rec.state = OPEN
    rec.opened_at = now
    rec.probe_inflight = 0
    rec.opens += 1


def recover(rec: BreakerRecord) -> None:
    rec.state = CLOSED
    rec.probe_inflight = 0
    rec.failures = 0
    rec.recoveries += 1


def start_probe(rec: BreakerRecord, now: float) -> int:
    rec.state = HALF_OPEN
    rec.probe_inflight = 1
    rec.probe_started_at = now
    rec.probe_token += 1
    rec.probes += 1
    return rec.probe_token


def is_current_probe(rec: BreakerRecord, token: int) -> bool:
    return token != 0 and rec.state == HALF_OPEN and rec.probe_inflight == 1 and rec.probe_token == token


def release_probe(rec: BreakerRecord, token: int) -> None:
    """No verdict: the probe's slot goes to the next caller."""
    if is_current_probe(rec, token):
        rec.probe_inflight = 0
