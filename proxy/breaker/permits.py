"""The breakers' vocabulary: verdicts, permits, refusals, and states as observed."""
from __future__ import annotations

import enum
from typing import Literal, NamedTuple

__all__ = ["BreakerOpen", "BreakerState", "Permit", "Verdict"]


class Verdict(enum.Enum):
    """What a request's outcome says about the backend."""

    SUCCESS = "success"  # the backend answered and the answer is not its failure (2xx; 4xx such as 400/401/404/429)
    MODEL_FAILURE = "model_failure"  # the backend answered for this model, and failed (5xx, broken or cut stream…)
    HOST_FAILURE = "host_failure"  # no answer at all: connect refused, DNS, TLS, connect timeout
    NONE = "none"  # no verdict: the client left, our own bug, refused before sending


class BreakerOpen(Exception):
    """The request was refused without reaching the backend."""

    def __init__(self, retry_after: int, scope: Literal["host", "model"] = "host", model: str | None = None) -> None:
        what = "the backend" if scope == "host" else f"model {model!r}"
        super().__init__(f"circuit breaker open for {what}; retry after {retry_after}s")
        self.retry_after = retry_after
        self.scope: Literal["host", "model"] = scope
        self.model = model


class Permit:
    """Proof of admission, handed back to ``record`` once.

    The tokens say which probes this request is (0: none), so a probe
    superseded after ``probe_timeout_secs`` cannot decide a state when it
    finally reports.
    """

    __slots__ = ("model", "hash", "slot", "seen", "host_token", "model_token", "done")

    def __init__(
        self, model: str | None, h: int, slot: int, seen: int, host_token: int = 0, model_token: int = 0
    ) -> None:
        self.model = model
        self.hash = h  # 0: no model (the host-only facade) or breakers disabled
        self.slot = slot  # the model's slot at admission, -1 if it had none
        # The host's model-failure total at admission if the model then had no
        # failures counted, else -1: equal at the verdict, a success has nothing to reset.
        self.seen = seen
        self.host_token = host_token
        self.model_token = model_token
        self.done = False

    @property
    def probe(self) -> bool:
        return bool(self.host_token or self.model_token)


class BreakerState(NamedTuple):
    """One breaker as seen now, for metrics and health."""

    model: str | None  # None: the host breaker
    state: str  # closed | open | half_open
    consecutive_failures: int
    retry_after: int  # seconds until a probe may go; 0 when closed or now
    opens: int
    probes: int
    recoveries: int
