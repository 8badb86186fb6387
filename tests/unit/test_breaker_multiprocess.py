"""The breakers across forked processes, as gunicorn workers share them.

Joins and waits carry a generous timeout only so a regression fails instead
of hanging; no assertion depends on timing.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import proxy.breaker as breaker_pkg
from proxy.breaker import BreakerOpen, Breakers, Permit, SharedTable, Verdict

CTX = multiprocessing.get_context("fork")
GUARD = 30.0  # seconds; only to turn a deadlock into a failure
OK, MODEL, HOST = Verdict.SUCCESS, Verdict.MODEL_FAILURE, Verdict.HOST_FAILURE


@pytest.fixture
def table():
    t = SharedTable(16)
    yield t
    t.close()


def breakers(table: SharedTable | None, **kw) -> Breakers:
    args = {"threshold": 3, "recovery_secs": 3600.0, "probe_timeout_secs": 600.0, **kw}
    return Breakers(enabled=True, table=table, **args)


def run_child(target, *args) -> int:
    p = CTX.Process(target=target, args=args)
    p.start()
    p.join(GUARD)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("child process hung")
    return p.exitcode


@contextlib.contextmanager
def child_until_ready(target) -> Iterator[None]:
    """Run ``target(ready)`` in a child; once it has set ``ready``, run the body, then SIGKILL the child."""
    ready = CTX.Event()
    p = CTX.Process(target=target, args=(ready,))
    p.start()
    try:
        assert ready.wait(GUARD), "the child never got ready"
        yield
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(GUARD)


def refuses(b: Breakers, model: str) -> str | None:
    """The scope that refuses ``model``, or None if it is admitted."""
    try:
        b.record(b.acquire(model), Verdict.NONE)
    except BreakerOpen as exc:
        return exc.scope
    return None


def test_one_model_failing_in_several_processes_opens_only_that_model(table):
    def fail_once() -> None:
        b = breakers(table)
        b.record(b.acquire("dead"), MODEL)
        b.record(b.acquire("fine"), OK)

    for _ in range(3):  # each failure from another process: one shared count
        assert run_child(fail_once) == 0

    def check() -> None:
        b = breakers(table)
        assert refuses(b, "dead") == "model"
        assert refuses(b, "fine") is None
        os._exit(0)

    assert run_child(check) == 0
    snap = breakers(table).snapshot()
    assert snap["is_open"] is False
    assert snap["open_models"] == [{"model": "dead", "state": "open", "consecutive_failures": 3, "retry_after": 3600}]


def test_respawned_workers_inherit_the_table_made_before_fork(monkeypatch):
    monkeypatch.setattr(breaker_pkg, "_shared", None)
    created = breaker_pkg.shared_table(8)  # in the "master", before forking
    try:
        assert breaker_pkg.shared_table() is created

        def worker_then_killed(ready) -> None:
            b = breakers(None, threshold=1)  # as a worker: no explicit table, the inherited one
            b.record(b.acquire("dead"), MODEL)
            ready.set()
            time.sleep(GUARD)

        with child_until_ready(worker_then_killed):
            pass

        def respawned() -> None:
            b = breakers(None)
            os._exit(0 if refuses(b, "dead") == "model" and refuses(b, "other") is None else 1)

        assert run_child(respawned) == 0
    finally:
        created.close()


def _probe_round(table: SharedTable, n: int, models: tuple[str, ...]) -> list[tuple]:
    go = CTX.Event()
    q = CTX.Queue()

    def contender() -> None:
        b = breakers(table, threshold=1, recovery_secs=0.0)
        go.wait(GUARD)
        for model in models:
            try:
                p = b.acquire(model)
                q.put((model, "permit", p.host_token, p.model_token))
            except BreakerOpen as e:
                q.put((model, "refused", e.scope, e.retry_after))

    procs = [CTX.Process(target=contender) for _ in range(n)]
    for p in procs:
        p.start()
    go.set()
    results = [q.get(timeout=GUARD) for _ in range(n * len(models))]
    for p in procs:
        p.join(GUARD)
        assert p.exitcode == 0
    return results


def test_exactly_one_probe_per_model_across_processes(table):
    b = breakers(table, threshold=1, recovery_secs=0.0)
    for model in ("a", "b"):
        b.record(b.acquire(model), MODEL)
        b.record(b.acquire("ok"), OK)  # keeps the host rule out of it
    for _ in range(5):
        results = _probe_round(table, 8, ("a", "b"))
        for model in ("a", "b"):
            mine = [r for r in results if r[0] == model]
            probes = [r for r in mine if r[1] == "permit"]
            assert len(probes) == 1 and probes[0][3] != 0, results
            assert all(r[1:3] == ("refused", "model") and r[3] >= 1 for r in mine if r[1] != "permit"), results
            b.record(Permit(model, hash(model), -1, -1, 0, probes[0][3]), MODEL)  # its worker reports: open again
            b.record(b.acquire("ok"), OK)
        assert b.snapshot()["is_open"] is False
    assert {s.model: s.probes for s in b.model_states()} == {"a": 5, "b": 5}


def test_exactly_one_host_probe_across_processes(table):
    b = breakers(table, threshold=1, recovery_secs=0.0)
    b.record(b.acquire("x"), HOST)
    for _ in range(5):
        results = _probe_round(table, 8, ("x",))
        probes = [r for r in results if r[1] == "permit"]
        assert len(probes) == 1 and probes[0][2] != 0, results
        assert sum(r[1:3] == ("refused", "host") for r in results) == 7, results
        b.record(Permit("x", hash("x"), -1, -1, probes[0][2], 0), HOST)
        assert b.snapshot()["state"] == "open"
    assert b.host_state().probes == 5


def test_probe_success_in_one_process_closes_for_all(table):
    b = breakers(table, threshold=1, recovery_secs=0.0)
    b.record(b.acquire("m"), MODEL)

    def probe_and_succeed() -> None:
        child = breakers(table, threshold=1, recovery_secs=0.0)
        p = child.acquire("m")
        assert p.model_token
        child.record(p, OK)

    assert run_child(probe_and_succeed) == 0
    assert b.snapshot()["open_models"] == []
    assert b.acquire("m").probe is False


def test_probe_of_a_killed_worker_is_superseded_after_timeout(table):
    now = [100.0]
    b = breakers(table, threshold=1, recovery_secs=0.0, probe_timeout_secs=50.0, clock=lambda: now[0])
    b.record(b.acquire("m"), MODEL)

    def probe_then_hang(ready) -> None:
        child = breakers(table, threshold=1, recovery_secs=0.0, probe_timeout_secs=50.0, clock=lambda: 100.0)
        assert child.acquire("m").model_token
        ready.set()
        time.sleep(GUARD)

    with child_until_ready(probe_then_hang):
        pass
    assert refuses(b, "m") == "model"
    now[0] = 150.0
    assert b.acquire("m").model_token


def test_eviction_across_processes(monkeypatch):
    """Two slots: both models open, a third failing model is untracked everywhere;
    once one recovers, the third takes its (clean) slot."""
    t = SharedTable(2)
    try:
        def fail(model: str) -> None:
            child = breakers(t, threshold=1, recovery_secs=0.0)
            child.record(child.acquire(model), MODEL)
            child.record(child.acquire("ok"), OK)

        for model in ("a", "b", "c", "c"):
            assert run_child(fail, model) == 0
        b = breakers(t, threshold=1, recovery_secs=3600.0)
        assert {m["model"] for m in b.snapshot()["open_models"]} == {"a", "b"}
        assert b.table_stats()["untracked_failures"] == 2
        assert refuses(b, "c") is None

        def recover_a() -> None:
            child = breakers(t, threshold=1, recovery_secs=0.0)
            child.record(child.acquire("a"), OK)

        assert run_child(recover_a) == 0
        assert run_child(fail, "c") == 0
        assert {s.model for s in b.model_states()} == {"b", "c"}
        assert refuses(b, "c") == "model"
        assert b.table_stats()["evictions"] == 1
    finally:
        t.close()


def test_worker_killed_while_holding_the_lock_does_not_deadlock(table):
    def hold_lock_and_hang(holding) -> None:
        with table.table_lock:
            holding.set()
            time.sleep(GUARD)

    done = threading.Event()
    b = breakers(table, threshold=1)

    def record_failure() -> None:
        b.record(b.acquire("m"), MODEL)
        done.set()

    writer = threading.Thread(target=record_failure)
    with child_until_ready(hold_lock_and_hang):
        writer.start()
        assert not done.wait(0.5), "the child's lock did not exclude this process's writer"
    assert done.wait(GUARD), "the kernel should release a dead process's lock"
    writer.join(GUARD)
    assert refuses(b, "m") == "model"


@pytest.mark.parametrize("nth_store, torn", [(1, "the model's slot"), (4, "the host frame")])
def test_worker_killed_mid_store_leaves_a_readable_state(table, nth_store, torn):
    """A writer SIGKILLed right after its ``nth_store`` raw store into shared memory
    (a failure is three stores into the model's slot, then three into the host frame)."""
    b = breakers(table, threshold=10)
    b.record(b.acquire("m"), MODEL)
    b.record(b.acquire("m"), MODEL)

    def fail_and_die_mid_store(stopped) -> None:
        stores = [0]

        def on_call(frame, event, arg) -> None:
            if event == "c_return" and getattr(arg, "__name__", "") == "pack_into":
                stores[0] += 1
                if stores[0] == nth_store:
                    stopped.set()
                    time.sleep(GUARD)

        child = breakers(table, threshold=10)
        permit = child.acquire("m")
        sys.setprofile(on_call)
        child.record(permit, MODEL)

    with child_until_ready(fail_and_die_mid_store):  # "ready": stopped right after that store
        pass

    def read_then_fail() -> None:
        child = breakers(table, threshold=10)
        [state] = child.model_states()
        assert state.model == "m" and state.consecutive_failures in (2, 3), state
        assert child.snapshot()["consecutive_failures"] in (2, 3)
        child.record(child.acquire("m"), MODEL)

    assert run_child(read_then_fail) == 0
    [state] = b.model_states()
    assert state.consecutive_failures in (3, 4)
    assert b.snapshot()["consecutive_failures"] in (3, 4)


def test_failures_from_many_processes_are_all_counted(table):
    def fail_n(n: int) -> None:
        b = breakers(table, threshold=10_000)
        for _ in range(n):
            b.record(b.acquire("m"), MODEL)

    procs = [CTX.Process(target=fail_n, args=(200,)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(GUARD)
        assert p.exitcode == 0
    b = breakers(table, threshold=10_000)
    assert [s.consecutive_failures for s in b.model_states()] == [1200]
    assert b.snapshot()["consecutive_failures"] == 1200


def test_lock_free_reads_never_see_a_half_written_frame(table):
    # The writer keeps three fields equal in every store; a torn read would show them different.
    rounds = 20_000
    done = CTX.Event()

    def writer() -> None:
        for k in range(1, rounds + 1):
            with table.host.locked() as rec:
                rec.failures = rec.probe_token = rec.probes = k
        done.set()

    p = CTX.Process(target=writer)
    p.start()
    torn = 0
    seen = set()
    b = breakers(table)
    try:
        while not done.is_set():
            state = b.host_state()
            block = table.host.read()
            if not (block[2] == block[6] == block[8]):
                torn += 1
            seen.add(state.consecutive_failures)
    finally:
        p.join(GUARD)
    assert p.exitcode == 0
    assert torn == 0
    assert len(seen) > 1  # the reads really overlapped the writes
