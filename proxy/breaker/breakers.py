"""``Breakers``: the host breaker and one breaker per model, over a ``SharedTable``.

One request: ``permit = breakers.acquire(model)`` (raises ``BreakerOpen``), then
exactly one ``breakers.record(permit, verdict)`` when its outcome is known. The
rules (which verdict counts where, when the host opens) are in the package
docstring, ``proxy.breaker``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import observe
from .machine import (
    CLOSED,
    I_FAILURES,
    I_STATE,
    Policy,
    is_current_probe,
    recover,
    release_probe,
    retry_after,
    start_probe,
    trip,
)
from .permits import BreakerOpen, BreakerState, Permit, Verdict
from .table import I_HASH, I_MODEL_FAILURES, I_UNREACHABLE, HostRecord, SharedTable

__all__ = ["Breakers"]

Block = tuple[Any, ...]  # a frame as read: seq_a, fields…, seq_b


class Breakers:
    """Every breaker of this host. Disabled, it admits everything and touches no shared memory."""

    def __init__(
        self,
        *,
        enabled: bool,
        threshold: int,
        recovery_secs: float,
        probe_timeout_secs: float,
        table: SharedTable | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = Policy(threshold, float(recovery_secs), float(probe_timeout_secs))
        self._clock = clock
        if enabled and table is None:
            from . import shared_table

            table = shared_table()
        self._table = table if enabled else None
        # Where each model was last found: (slot or -1, host model-failure total then).
        self._where: dict[str, tuple[int, int]] = {}
        self._where_limit = max(1024, 4 * table.slots) if table is not None else 0

    @property
    def enabled(self) -> bool:
        return self._table is not None

    # -- admission ---------------------------------------------------------

    def acquire(self, model: str) -> Permit:
        """Admit a request for ``model`` or raise ``BreakerOpen``: the host is checked first.

        Closed host and closed model (the hot path): one lock-free read of the
        host frame, and one of the model's slot if it has one; no clock, no
        syscall, no lock.
        """
        t = self._table
        if t is None:
            return Permit(model, 0, -1, -1)
        host = t.host.read()
        h = hash(model) or 1  # 0 marks a free slot
        slot, block = self._locate(t, model, h, host[I_MODEL_FAILURES])
        if host[I_STATE] == CLOSED and (block is None or block[I_STATE] == CLOSED):
            clean = block is None or not block[I_FAILURES]
            return Permit(model, h, slot, host[I_MODEL_FAILURES] if clean else -1)
        return self._admit(t, model, h, slot, host, block)

    def _locate(self, t: SharedTable, model: str, h: int, total: int) -> tuple[int, Block | None]:
        """The model's slot and its frame, or (-1, None), lock-free.

        Remembered per process: a slot is confirmed by its frame's hash on
        every read; "no slot" holds while no model failure was recorded on the
        host (the host frame's ``model_failures`` is unchanged), since only a
        model failure allocates a slot.
        """
        hit = self._where.get(model)
        if hit is not None:
            slot, seen = hit
            if slot >= 0:
                block = t.frames[slot].read()
                if block[I_HASH] == h:
                    return slot, block
            elif seen == total:
                return -1, None
        slot = t.find(h)
        found: Block | None = t.frames[slot].read() if slot >= 0 else None
        if found is not None and found[I_HASH] != h:  # reassigned since the index was read
            slot, found = -1, None
        if len(self._where) >= self._where_limit:
            self._where.clear()
        self._where[model] = (slot, total)
        return slot, found

    def _admit(self, t: SharedTable, model: str, h: int, slot: int, host: Block, block: Block | None) -> Permit:
        now = self._clock()
        host_open = host[I_STATE] != CLOSED
        model_open = block is not None and block[I_STATE] != CLOSED
        if host_open and (wait := self._policy.wait_of(host, now)) > 0:
            raise BreakerOpen(retry_after(wait))
        if model_open and (wait := self._policy.wait_of(block, now)) > 0:  # type: ignore[arg-type]  # model_open implies a block
            raise BreakerOpen(retry_after(wait), "model", model)
        # A probe is due. A model whose own breaker refuses never reaches this
        # point, so it cannot take the host's probe away from a healthy model.
        host_token = self._claim_host(t, now) if host_open else 0
        try:
            model_token = self._claim_model(t, slot, h, model, now) if model_open else 0
        except BreakerOpen:
            if host_token:
                with t.host.locked() as rec:
                    release_probe(rec, host_token)
            raise
        return Permit(model, h, slot, -1, host_token, model_token)

    def _acquire_host(self) -> Permit:
        """Admission by the host breaker alone (the pre-per-model facade)."""
        t = self._table
        if t is None:
            return Permit(None, 0, -1, -1)
        host = t.host.read()
        if host[I_STATE] == CLOSED:
            return Permit(None, 0, -1, -1)
        now = self._clock()
        if (wait := self._policy.wait_of(host, now)) > 0:
            raise BreakerOpen(retry_after(wait))
        return Permit(None, 0, -1, -1, host_token=self._claim_host(t, now))

    def _claim_host(self, t: SharedTable, now: float) -> int:
        with t.host.locked() as rec:
            if rec.state == CLOSED:
                return 0
            if (wait := self._policy.wait_rec(rec, now)) > 0:
                raise BreakerOpen(retry_after(wait))
            return start_probe(rec, now)

    def _claim_model(self, t: SharedTable, slot: int, h: int, model: str, now: float) -> int:
        with t.table_lock, t.frames[slot].edit() as rec:
            if rec.hash != h or rec.state == CLOSED:
                return 0
            if (wait := self._policy.wait_rec(rec, now)) > 0:
                raise BreakerOpen(retry_after(wait), "model", model)
            return start_probe(rec, now)

    # -- verdicts ----------------------------------------------------------

    def record(self, permit: Permit, verdict: Verdict) -> None:
        """Report a request's outcome; once per permit (a second call is a no-op)."""
        if permit.done:
            return
        permit.done = True
        t = self._table
        if t is None:
            return
        if verdict is Verdict.SUCCESS:
            # The hot path: no probe, no failure counted on the host, and no
            # model failure anywhere since admission, when the model had none:
            # nothing to reset, known from one lock-free read.
            if not (permit.host_token or permit.model_token):
                host = t.host.read()
                if not (host[I_FAILURES] or host[I_UNREACHABLE]) and (
                    not permit.hash or permit.seen == host[I_MODEL_FAILURES]
                ):
                    return
            self._success(t, permit)
        elif verdict is Verdict.MODEL_FAILURE:
            self._model_failure(t, permit)
        elif verdict is Verdict.HOST_FAILURE:
            self._host_failure(t, permit)
        else:
            self._no_verdict(t, permit)

    def _slot_of(self, t: SharedTable, permit: Permit) -> tuple[int, Block | None]:
        """The model's slot now (it may have got one since admission), lock-free."""
        slot = permit.slot
        block: Block
        if slot >= 0:
            block = t.frames[slot].read()
            if block[I_HASH] == permit.hash:
                return slot, block
        slot = t.find(permit.hash)
        if slot >= 0:
            block = t.frames[slot].read()
            if block[I_HASH] == permit.hash:
                return slot, block
        return -1, None

    def _success(self, t: SharedTable, permit: Permit) -> None:
        if permit.hash:
            slot, block = self._slot_of(t, permit)
            if block is not None and (permit.model_token or block[I_FAILURES]):
                with t.table_lock, t.frames[slot].edit() as rec:
                    if rec.hash == permit.hash:
                        if is_current_probe(rec, permit.model_token):
                            recover(rec)
                        elif rec.state == CLOSED:
                            rec.failures = 0
                        rec.last_write = self._clock()
        host = t.host.read()
        if permit.host_token or host[I_FAILURES] or host[I_UNREACHABLE]:
            with t.host.locked() as hrec:
                if is_current_probe(hrec, permit.host_token):
                    recover(hrec)
                    _end_run(hrec)
                elif hrec.state == CLOSED:
                    hrec.failures = 0
                    _end_run(hrec)

    def _model_failure(self, t: SharedTable, permit: Permit) -> None:
        if not permit.hash:  # no model known: all we can say is that the host failed
            self._host_failure(t, permit)
            return
        now = self._clock()
        threshold = self._policy.threshold
        with t.table_lock:
            slot = t.find_locked(permit.hash)
            evicted = False
            if slot < 0:
                slot, evicted = t.allocate(permit.hash, permit.model or "", now)
            if slot >= 0:
                with t.frames[slot].edit() as rec:
                    rec.failures += 1
                    rec.last_write = now
                    if permit.model_token:
                        if is_current_probe(rec, permit.model_token):
                            trip(rec, now)
                    elif rec.state == CLOSED and rec.failures >= threshold:
                        trip(rec, now)
        with t.host.locked() as hrec:
            hrec.unreachable = 0  # the backend answered: reachable
            hrec.failures += 1
            hrec.model_failures += 1
            if hrec.run_model == 0:
                hrec.run_model = permit.hash
            elif hrec.run_model != permit.hash:
                hrec.run_multi = 1
            if slot < 0:
                hrec.untracked += 1
            if evicted:
                hrec.evictions += 1
            if is_current_probe(hrec, permit.host_token):
                if permit.model_token:
                    # This request was also its model's probe: a model already
                    # known to fail, failing again, says nothing new about the host.
                    release_probe(hrec, permit.host_token)
                else:
                    trip(hrec, now)
            elif hrec.state == CLOSED and hrec.failures >= threshold and hrec.run_multi:
                trip(hrec, now)

    def _host_failure(self, t: SharedTable, permit: Permit) -> None:
        if permit.model_token:  # says nothing about the model: its probe goes to the next caller
            self._release_model(t, permit)
        now = self._clock()
        threshold = self._policy.threshold
        with t.host.locked() as hrec:
            hrec.unreachable += 1
            hrec.failures += 1
            if is_current_probe(hrec, permit.host_token):
                trip(hrec, now)
            elif hrec.state == CLOSED and (
                hrec.unreachable >= threshold or (hrec.failures >= threshold and hrec.run_multi)
            ):
                trip(hrec, now)

    def _no_verdict(self, t: SharedTable, permit: Permit) -> None:
        if permit.model_token:
            self._release_model(t, permit)
        if permit.host_token:
            with t.host.locked() as hrec:
                release_probe(hrec, permit.host_token)

    def _release_model(self, t: SharedTable, permit: Permit) -> None:
        slot, _ = self._slot_of(t, permit)
        if slot >= 0:
            with t.table_lock, t.frames[slot].edit() as rec:
                if rec.hash == permit.hash:
                    release_probe(rec, permit.model_token)

    # -- observation ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """For ``/health``: the host breaker, and the models whose breaker is not closed.

        ``is_open`` is True in half-open too: apart from the single probe,
        requests are refused. ``admits_probe``: the next request would be let
        through as the host's probe (recovery time over, no probe in flight).
        """
        return observe.snapshot(self._table, self._policy, self._clock())

    def host_state(self) -> BreakerState:
        return observe.host_state(self._table, self._policy, self._clock())

    def model_states(self) -> list[BreakerState]:
        """Every slot in use, closed ones included (metrics read their counters)."""
        return observe.model_states(self._table, self._policy, self._clock())

    def table_stats(self) -> dict[str, int]:
        """Slots in the table and in use; failures of models that found no slot; evictions."""
        return observe.table_stats(self._table)


def _end_run(rec: HostRecord) -> None:
    rec.unreachable = 0
    rec.run_model = 0
    rec.run_multi = 0
