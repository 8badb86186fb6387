"""Circuit breaker state machine, in one process, with an injected clock."""
from __future__ import annotations

import dataclasses
import fcntl
import os
import struct
import threading

import pytest

from proxy import breaker as breaker_mod
from proxy.breaker import BreakerOpen, CircuitBreaker, Permit, SharedState


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def state():
    s = SharedState()
    yield s
    s.close()


@pytest.fixture
def clock():
    return FakeClock()


def make(state, clock, **kw) -> CircuitBreaker:
    kw.setdefault("threshold", 3)
    kw.setdefault("recovery_secs", 30.0)
    kw.setdefault("probe_timeout_secs", 600.0)
    return CircuitBreaker(state=state, clock=clock, **kw)


def open_it(b: CircuitBreaker, n: int = 3) -> None:
    for _ in range(n):
        b.record_failure(b.acquire())


def test_starts_closed(state, clock):
    b = make(state, clock)
    assert b.snapshot() == {"enabled": True, "is_open": False, "consecutive_failures": 0, "state": "closed", "admits_probe": False}
    p = b.acquire()
    assert p == Permit(probe=False)


def test_opens_after_threshold_consecutive_failures(state, clock):
    b = make(state, clock)
    b.record_failure(b.acquire())
    b.record_failure(b.acquire())
    assert b.snapshot()["state"] == "closed"
    assert b.snapshot()["consecutive_failures"] == 2
    b.record_failure(b.acquire())
    assert b.snapshot() == {"enabled": True, "is_open": True, "consecutive_failures": 3, "state": "open", "admits_probe": False}
    with pytest.raises(BreakerOpen) as exc:
        b.acquire()
    assert exc.value.retry_after == 30
    assert b.stats()["opens"] == 1


def test_success_resets_the_count(state, clock):
    b = make(state, clock)
    b.record_failure(b.acquire())
    b.record_failure(b.acquire())
    b.record_success(b.acquire())
    assert b.snapshot()["consecutive_failures"] == 0
    b.record_failure(b.acquire())
    b.record_failure(b.acquire())
    assert b.snapshot()["state"] == "closed"


def test_retry_after_counts_down_and_is_at_least_one(state, clock):
    b = make(state, clock)
    open_it(b)
    clock.now += 10.5
    with pytest.raises(BreakerOpen) as exc:
        b.acquire()
    assert exc.value.retry_after == 20  # ceil(19.5)
    clock.now += 19.4
    with pytest.raises(BreakerOpen) as exc:
        b.acquire()
    assert exc.value.retry_after == 1
    assert b.snapshot()["state"] == "open"  # refusals do not change state


def test_one_probe_after_recovery_and_its_success_closes(state, clock):
    b = make(state, clock)
    open_it(b)
    clock.now += 30
    probe = b.acquire()
    assert probe.probe is True
    assert b.snapshot() == {"enabled": True, "is_open": True, "consecutive_failures": 3, "state": "half_open", "admits_probe": False}
    with pytest.raises(BreakerOpen) as exc:
        b.acquire()
    # While the probe is in flight the wait is bounded by recovery_secs.
    assert exc.value.retry_after == 30
    b.record_success(probe)
    assert b.snapshot() == {"enabled": True, "is_open": False, "consecutive_failures": 0, "state": "closed", "admits_probe": False}
    assert b.acquire().probe is False
    assert b.stats() == {"opens": 1, "probes": 1, "recoveries": 1}


def test_probe_failure_reopens_from_failure_time(state, clock):
    b = make(state, clock)
    open_it(b)
    clock.now += 40
    probe = b.acquire()
    clock.now += 5  # the probe took 5 s to fail
    b.record_failure(probe)
    assert b.snapshot()["state"] == "open"
    assert b.snapshot()["consecutive_failures"] == 4
    clock.now += 29
    with pytest.raises(BreakerOpen) as exc:
        b.acquire()
    assert exc.value.retry_after == 1
    clock.now += 1
    assert b.acquire().probe is True
    assert b.stats()["opens"] == 2


def test_probe_that_never_reports_is_superseded_after_timeout(state, clock):
    b = make(state, clock, probe_timeout_secs=100.0)
    open_it(b)
    clock.now += 30
    lost = b.acquire()
    clock.now += 99.5
    with pytest.raises(BreakerOpen):
        b.acquire()
    clock.now += 0.5
    second = b.acquire()
    assert second.probe is True and second.token != lost.token
    # The superseded probe's late verdict decides nothing.
    b.record_success(lost)
    assert b.snapshot()["state"] == "half_open"
    b.record_failure(lost)
    assert b.snapshot()["state"] == "half_open"
    with pytest.raises(BreakerOpen):
        b.acquire()
    b.record_success(second)
    assert b.snapshot()["state"] == "closed"


def test_release_of_probe_lets_next_caller_probe(state, clock):
    b = make(state, clock)
    open_it(b)
    clock.now += 30
    probe = b.acquire()
    with pytest.raises(BreakerOpen):
        b.acquire()
    b.release(probe)
    assert b.snapshot()["state"] == "half_open"
    nxt = b.acquire()
    assert nxt.probe is True and nxt.token != probe.token
    # Releasing the old probe again must not free the new probe's slot.
    b.release(probe)
    with pytest.raises(BreakerOpen):
        b.acquire()
    b.record_success(nxt)
    assert b.snapshot()["state"] == "closed"


def test_release_of_plain_permit_changes_nothing(state, clock):
    b = make(state, clock)
    b.record_failure(b.acquire())
    b.release(b.acquire())
    assert b.snapshot()["consecutive_failures"] == 1


def test_late_plain_results_do_not_close_or_extend_open(state, clock):
    b = make(state, clock)
    early = b.acquire()  # admitted before the breaker opened
    open_it(b)
    clock.now += 20
    b.record_success(early)
    assert b.snapshot()["state"] == "open"
    b.record_failure(early)
    assert b.snapshot()["state"] == "open"
    clock.now += 10  # still 30 s after the opening, not after the late failure
    assert b.acquire().probe is True


def test_disabled_is_really_off(clock, monkeypatch):
    monkeypatch.setattr(breaker_mod, "_shared", None)
    b = CircuitBreaker(enabled=False, threshold=1, clock=clock)
    for _ in range(10):
        p = b.acquire()
        assert p.probe is False
        b.record_failure(p)
    b.release(p)
    b.record_success(p)
    assert b.acquire().probe is False
    assert b.snapshot() == {"enabled": False, "is_open": False, "consecutive_failures": 0, "state": "closed", "admits_probe": False}
    assert breaker_mod._shared is None  # never touched shared memory


def test_disabled_ignores_a_shared_state_others_opened(state, clock):
    CircuitBreaker(threshold=1, state=state, clock=clock).record_failure(Permit(probe=False))
    off = CircuitBreaker(enabled=False, state=state, clock=clock)
    assert off.acquire().probe is False
    assert off.snapshot()["is_open"] is False


def test_hot_path_takes_no_lock_and_reads_no_clock(state, monkeypatch):
    def no_clock() -> float:
        raise AssertionError("clock read on hot path")

    b = CircuitBreaker(state=state, clock=no_clock)

    def no_lock(*a, **k):
        raise AssertionError("lock taken on hot path")

    monkeypatch.setattr(fcntl, "lockf", no_lock)
    for _ in range(1000):
        b.record_success(b.acquire())
    assert b.snapshot()["state"] == "closed"
    # Positive control: the patch does catch a locking path.
    with pytest.raises(AssertionError, match="lock taken"):
        b.record_failure(b.acquire())


def test_success_after_a_failure_takes_the_lock_once(state, clock, monkeypatch):
    b = make(state, clock)
    b.record_failure(b.acquire())
    calls = []
    real = fcntl.lockf
    monkeypatch.setattr(fcntl, "lockf", lambda *a: (calls.append(a[1]), real(*a)))
    b.record_success(b.acquire())
    b.record_success(b.acquire())
    assert calls == [fcntl.LOCK_EX, fcntl.LOCK_UN]
    assert b.snapshot()["consecutive_failures"] == 0


def test_threads_of_one_process_get_exactly_one_probe(state):
    b = CircuitBreaker(threshold=1, recovery_secs=0.0, state=state)
    b.record_failure(b.acquire())
    barrier = threading.Barrier(16)
    results: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            r: object = b.acquire()
        except BreakerOpen as e:
            r = e
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    probes = [r for r in results if isinstance(r, Permit) and r.probe]
    assert len(probes) == 1
    assert sum(isinstance(r, BreakerOpen) for r in results) == 15


def test_torn_block_is_repaired_under_the_lock(state, clock):
    b = make(state, clock)
    open_it(b)
    # A writer killed between storing seq_b and seq_a leaves them different.
    seq = struct.unpack_from("@Q", state._mm, 0)[0]
    struct.pack_into("@Q", state._mm, breaker_mod._SEQ_B_OFFSET, seq + 1)
    assert b.snapshot()["state"] == "open"
    block = breaker_mod._BLOCK.unpack_from(state._mm, 0)
    assert block[0] == block[-1] > seq + 1
    clock.now += 30
    assert b.acquire().probe is True


def test_garbage_state_is_clamped_to_open(state, clock):
    struct.pack_into("@qQ", state._mm, 8, 77, 0)
    struct.pack_into("@Q", state._mm, 0, 5)  # torn frame forces a repair
    b = make(state, clock)
    assert b.snapshot()["state"] == "open"


def test_backing_file_is_unlinked(state):
    st = os.fstat(state.fileno())
    assert st.st_nlink == 0
    assert st.st_size == breaker_mod._BLOCK.size


def test_permit_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Permit(probe=False).probe = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "kw", [{"threshold": 0}, {"recovery_secs": -1}, {"probe_timeout_secs": 0}]
)
def test_rejects_nonsense_config(state, kw):
    with pytest.raises(ValueError):
        CircuitBreaker(state=state, **kw)


def test_admits_probe_once_recovery_time_has_passed(state, clock):
    """/health turns 200 ("recovering") when the next request would be the probe,
    so a load balancer that took the host out lets that probe arrive."""
    b = make(state, clock)
    open_it(b)
    assert b.snapshot()["admits_probe"] is False
    clock.now += 30
    assert b.snapshot()["admits_probe"] is True
    assert b.snapshot()["is_open"] is True
    probe = b.acquire()
    assert b.snapshot()["admits_probe"] is False  # a probe is in flight
    b.release(probe)
    assert b.snapshot()["admits_probe"] is True  # its slot is free again
