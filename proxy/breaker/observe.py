"""Reading the breakers for ``/health`` and ``/metrics``: lock-free, never changing state.

Every function takes the table (``None``: breakers disabled), the policy (to
compute how long until a probe may go) and the current time.
"""
from __future__ import annotations

from typing import Any

from .machine import CLOSED, I_FAILURES, I_OPENS, I_PROBES, I_RECOVERIES, I_STATE, STATE_NAMES, Policy, retry_after
from .permits import BreakerState
from .table import I_EVICTIONS, I_HASH, I_UNTRACKED, SharedTable, slot_name

_DISABLED_HOST = BreakerState(None, "closed", 0, 0, 0, 0, 0)


def snapshot(table: SharedTable | None, policy: Policy, now: float) -> dict[str, Any]:
    if table is None:
        return {
            "enabled": False, "is_open": False, "consecutive_failures": 0,
            "state": "closed", "admits_probe": False, "open_models": [],
        }
    host = table.host.read()
    state = host[I_STATE]
    return {
        "enabled": True,
        "is_open": state != CLOSED,
        "consecutive_failures": host[I_FAILURES],
        "state": _state_name(state),
        "admits_probe": state != CLOSED and policy.wait_of(host, now) <= 0,
        "open_models": [
            {"model": s.model, "state": s.state, "consecutive_failures": s.consecutive_failures,
             "retry_after": s.retry_after}
            for s in model_states(table, policy, now)
            if s.state != "closed"
        ],
    }


def host_state(table: SharedTable | None, policy: Policy, now: float) -> BreakerState:
    if table is None:
        return _DISABLED_HOST
    return _state(None, table.host.read(), policy, now)


def model_states(table: SharedTable | None, policy: Policy, now: float) -> list[BreakerState]:
    """Every slot in use (one read of the index, then one read per used slot)."""
    if table is None:
        return []
    out = []
    for slot, entry in enumerate(table.index_entries()):
        if entry:
            block = table.frames[slot].read_full()
            if block[I_HASH] == entry:
                out.append(_state(slot_name(block), block, policy, now))
    return out


def table_stats(table: SharedTable | None) -> dict[str, int]:
    if table is None:
        return {"slots": 0, "used": 0, "untracked_failures": 0, "evictions": 0}
    host = table.host.read()
    return {
        "slots": table.slots,
        "used": sum(1 for entry in table.index_entries() if entry),
        "untracked_failures": host[I_UNTRACKED],
        "evictions": host[I_EVICTIONS],
    }


def _state(model: str | None, block: tuple[Any, ...], policy: Policy, now: float) -> BreakerState:
    state = block[I_STATE]
    wait = policy.wait_of(block, now) if state != CLOSED else 0.0
    return BreakerState(
        model, _state_name(state), block[I_FAILURES], retry_after(wait) if wait > 0 else 0,
        block[I_OPENS], block[I_PROBES], block[I_RECOVERIES],
    )


def _state_name(state: int) -> str:
    return STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else "open"
