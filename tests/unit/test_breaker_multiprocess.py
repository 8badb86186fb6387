"""The breaker across forked processes, as gunicorn workers share it.

Joins carry a generous timeout only so a regression fails instead of hanging;
no assertion depends on timing.
"""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import struct
import time

import pytest

from proxy import breaker as breaker_mod
from proxy.breaker import BreakerOpen, CircuitBreaker, Permit, SharedState

CTX = multiprocessing.get_context("fork")
GUARD = 30.0  # seconds; only to turn a deadlock into a failure


@pytest.fixture
def state():
    s = SharedState()
    yield s
    s.close()


def run_child(target, *args) -> int:
    p = CTX.Process(target=target, args=args)
    p.start()
    p.join(GUARD)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("child process hung")
    return p.exitcode


def test_state_set_in_one_process_is_seen_by_another(state):
    b = CircuitBreaker(threshold=2, recovery_secs=3600.0, state=state)

    def fail_twice() -> None:
        child = CircuitBreaker(threshold=2, recovery_secs=3600.0, state=state)
        child.record_failure(child.acquire())
        child.record_failure(child.acquire())

    assert run_child(fail_twice) == 0
    assert b.snapshot() == {"enabled": True, "is_open": True, "consecutive_failures": 2, "state": "open", "admits_probe": False}
    with pytest.raises(BreakerOpen):
        b.acquire()

    def must_be_refused() -> None:
        try:
            CircuitBreaker(state=state).acquire()
        except BreakerOpen:
            os._exit(0)
        os._exit(1)

    assert run_child(must_be_refused) == 0


def test_workers_inherit_the_state_created_before_fork(monkeypatch):
    monkeypatch.setattr(breaker_mod, "_shared", None)
    created = breaker_mod.create_shared_state()
    try:
        assert breaker_mod.shared_state() is created

        def worker() -> None:
            # As a worker would: no explicit state, so the inherited one.
            b = CircuitBreaker(threshold=1)
            b.record_failure(b.acquire())

        assert run_child(worker) == 0
        assert CircuitBreaker(threshold=1).snapshot()["state"] == "open"
    finally:
        created.close()


def _probe_round(state: SharedState, n: int) -> list[tuple]:
    go = CTX.Event()
    q = CTX.Queue()

    def contender() -> None:
        b = CircuitBreaker(threshold=1, recovery_secs=0.0, state=state)
        go.wait(GUARD)
        try:
            p = b.acquire()
            q.put(("permit", p.probe, p.token))
        except BreakerOpen as e:
            q.put(("refused", e.retry_after, 0))

    procs = [CTX.Process(target=contender) for _ in range(n)]
    for p in procs:
        p.start()
    go.set()
    results = [q.get(timeout=GUARD) for _ in procs]
    for p in procs:
        p.join(GUARD)
        assert p.exitcode == 0
    return results


def test_exactly_one_probe_across_processes(state):
    b = CircuitBreaker(threshold=1, recovery_secs=0.0, state=state)
    b.record_failure(b.acquire())
    for _ in range(10):
        results = _probe_round(state, 8)
        probes = [r for r in results if r[0] == "permit" and r[1] is True]
        assert len(probes) == 1, results
        refused = [r for r in results if r[0] == "refused"]
        assert len(refused) == 7, results
        assert all(r[1] >= 1 for r in refused)
        # The probe fails (reported here, as if by its worker): open again.
        b.record_failure(Permit(probe=True, token=probes[0][2]))
        assert b.snapshot()["state"] == "open"
    assert b.stats()["probes"] == 10


def test_probe_success_in_one_process_closes_for_all(state):
    b = CircuitBreaker(threshold=1, recovery_secs=0.0, state=state)
    b.record_failure(b.acquire())

    def probe_and_succeed() -> None:
        child = CircuitBreaker(threshold=1, recovery_secs=0.0, state=state)
        p = child.acquire()
        assert p.probe
        child.record_success(p)

    assert run_child(probe_and_succeed) == 0
    assert b.snapshot()["state"] == "closed"
    assert b.acquire().probe is False


def test_probe_of_a_killed_worker_is_superseded_after_timeout(state):
    clock_now = [100.0]
    b = CircuitBreaker(threshold=1, recovery_secs=0.0, probe_timeout_secs=50.0, state=state,
                       clock=lambda: clock_now[0])
    b.record_failure(b.acquire())
    ready = CTX.Event()

    def probe_then_hang() -> None:
        child = CircuitBreaker(threshold=1, recovery_secs=0.0, probe_timeout_secs=50.0,
                               state=state, clock=lambda: 100.0)
        assert child.acquire().probe
        ready.set()
        time.sleep(GUARD)

    p = CTX.Process(target=probe_then_hang)
    p.start()
    try:
        assert ready.wait(GUARD)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(GUARD)
    with pytest.raises(BreakerOpen):
        b.acquire()
    clock_now[0] = 150.0
    assert b.acquire().probe is True


def _try_lock_nb(state: SharedState) -> bool:
    try:
        fcntl.lockf(state.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    fcntl.lockf(state.fileno(), fcntl.LOCK_UN)
    return True


def test_worker_killed_while_holding_the_lock_does_not_deadlock(state):
    holding = CTX.Event()

    def hold_lock_and_hang() -> None:
        with state.locked() as rec:
            rec.failures = 99  # never stored: the process dies first
            holding.set()
            time.sleep(GUARD)

    p = CTX.Process(target=hold_lock_and_hang)
    p.start()
    try:
        assert holding.wait(GUARD)
        assert not _try_lock_nb(state), "child should hold the record lock"
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(GUARD)
    assert p.exitcode == -signal.SIGKILL
    assert _try_lock_nb(state), "kernel should release a dead process's lock"

    def fail_once() -> None:
        child = CircuitBreaker(threshold=1, state=state)
        child.record_failure(child.acquire())

    assert run_child(fail_once) == 0
    snap = CircuitBreaker(state=state).snapshot()
    assert snap["state"] == "open"
    assert snap["consecutive_failures"] == 1


def test_worker_killed_mid_store_leaves_a_readable_state(state):
    holding = CTX.Event()

    def half_store_and_hang() -> None:
        with state.locked():
            # First of the three stores done, the other two never happen.
            struct.pack_into("@Q", state._mm, breaker_mod._SEQ_B_OFFSET, 41)
            holding.set()
            time.sleep(GUARD)

    p = CTX.Process(target=half_store_and_hang)
    p.start()
    try:
        assert holding.wait(GUARD)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(GUARD)

    def read_and_fail() -> None:
        child = CircuitBreaker(threshold=1, state=state)
        assert child.snapshot()["state"] == "closed"
        child.record_failure(child.acquire())

    assert run_child(read_and_fail) == 0
    assert CircuitBreaker(state=state).snapshot()["state"] == "open"


def test_failures_from_many_processes_are_all_counted(state):
    def fail_n(n: int) -> None:
        b = CircuitBreaker(threshold=10_000, state=state)
        for _ in range(n):
            b.record_failure(b.acquire())

    procs = [CTX.Process(target=fail_n, args=(200,)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(GUARD)
        assert p.exitcode == 0
    assert CircuitBreaker(state=state).snapshot()["consecutive_failures"] == 1200


def test_lock_free_reads_never_see_a_half_written_block(state):
    # The writer keeps two fields equal in every store; a torn read would
    # show them different.
    rounds = 20_000
    done = CTX.Event()

    def writer() -> None:
        for k in range(1, rounds + 1):
            with state.locked() as rec:
                rec.failures = k
                rec.probe_token = k
                rec.total_probes = k
        done.set()

    p = CTX.Process(target=writer)
    p.start()
    torn = 0
    seen = set()
    try:
        while not done.is_set():
            block = state.read()
            if not (block[2] == block[6] == block[8]):
                torn += 1
            seen.add(block[2])
    finally:
        p.join(GUARD)
    assert p.exitcode == 0
    assert torn == 0
    assert len(seen) > 1  # the reads really overlapped the writes
