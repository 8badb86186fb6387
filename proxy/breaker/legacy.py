"""``CircuitBreaker``: the pre-per-model API, as a thin facade over the host breaker.

The request edge calls ``acquire()`` / ``record_success`` / ``record_failure`` /
``release``, with no model and no kind of failure; every failure is counted
as a host failure, so the service behaves exactly as before per-model
breakers existed. Delete this module once the edge calls ``Breakers.acquire(model)``
and ``Breakers.record(permit, verdict)`` (see the README, "Circuit breaker").
"""
from __future__ import annotations

from typing import Any

from .breakers import Breakers
from .permits import Permit, Verdict

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """The host breaker of a ``Breakers``, under its old method names."""

    __slots__ = ("_breakers",)

    def __init__(self, breakers: Breakers) -> None:
        self._breakers = breakers

    @property
    def enabled(self) -> bool:
        return self._breakers.enabled

    def acquire(self) -> Permit:
        return self._breakers._acquire_host()

    def record_success(self, permit: Permit) -> None:
        self._breakers.record(permit, Verdict.SUCCESS)

    def record_failure(self, permit: Permit) -> None:
        self._breakers.record(permit, Verdict.HOST_FAILURE)

    def release(self, permit: Permit) -> None:
        self._breakers.record(permit, Verdict.NONE)

    def snapshot(self) -> dict[str, Any]:
        snap = self._breakers.snapshot()
        del snap["open_models"]
        return snap
