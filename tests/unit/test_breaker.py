"""The breakers' rules, in one process, with an injected clock (across processes: test_breaker_multiprocess.py)."""
from __future__ import annotations

import threading

import pytest

from proxy import settings as settings_mod
from proxy.breaker import BreakerOpen, Breakers, Permit, SharedTable, Verdict

OK, MODEL, HOST, NONE = Verdict.SUCCESS, Verdict.MODEL_FAILURE, Verdict.HOST_FAILURE, Verdict.NONE


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table():
    t = SharedTable(16)
    yield t
    t.close()


@pytest.fixture
def clock():
    return FakeClock()


def make(table, clock, **kw) -> Breakers:
    kw.setdefault("threshold", 3)
    kw.setdefault("recovery_secs", 30.0)
    kw.setdefault("probe_timeout_secs", 600.0)
    return Breakers(enabled=True, table=table, clock=clock, **kw)


def send(b: Breakers, model: str, verdict: Verdict, n: int = 1) -> None:
    for _ in range(n):
        b.record(b.acquire(model), verdict)


def fail_alone(b: Breakers, model: str, n: int = 1) -> None:
    """``n`` failures of ``model``, then a success of another: the host rule never fires."""
    send(b, model, MODEL, n)
    send(b, "elsewhere", OK)


def refused(b: Breakers, model: str) -> BreakerOpen:
    with pytest.raises(BreakerOpen) as exc:
        b.acquire(model)
    return exc.value


def opened(b: Breakers) -> dict[str, int]:
    return {m["model"]: m["consecutive_failures"] for m in b.snapshot()["open_models"]}


# --------------------------------------------------------------------------- per model


def test_a_failing_model_opens_alone(table, clock):
    b = make(table, clock)
    send(b, "dead", MODEL, 2)
    assert b.snapshot()["open_models"] == []
    send(b, "dead", MODEL)
    err = refused(b, "dead")
    assert (err.scope, err.model, err.retry_after) == ("model", "dead", 30)
    assert "dead" in str(err)
    for _ in range(50):
        b.record(b.acquire("healthy"), OK)  # other models flow untouched
    snap = b.snapshot()
    assert snap["is_open"] is False and snap["state"] == "closed"
    assert snap["open_models"] == [{"model": "dead", "state": "open", "consecutive_failures": 3, "retry_after": 30}]


def test_other_models_successes_do_not_reset_a_models_count(table, clock):
    """The bug a host-wide count had: a dead model with little traffic never tripped."""
    b = make(table, clock)
    for _ in range(3):
        send(b, "rare", MODEL)
        send(b, "busy", OK, 20)
    refused(b, "rare")
    b.acquire("busy")


@pytest.mark.parametrize("status", [200, 400, 401, 404, 429])
def test_an_answer_that_is_not_a_backend_failure_resets_the_model(table, clock, status):
    b = make(table, clock)
    send(b, "m", MODEL, 2)
    send(b, "m", OK)  # whatever the status: the caller's verdict is SUCCESS
    send(b, "m", MODEL, 2)
    assert opened(b) == {}
    send(b, "m", MODEL)
    assert opened(b) == {"m": 3}


def test_model_retry_after_counts_down(table, clock):
    b = make(table, clock)
    send(b, "m", MODEL, 3)
    clock.now += 10.5
    assert refused(b, "m").retry_after == 20
    clock.now += 19.4
    assert refused(b, "m").retry_after == 1


def test_one_probe_per_model_and_its_success_closes(table, clock):
    b = make(table, clock)
    fail_alone(b, "a", 3)
    fail_alone(b, "b", 3)
    clock.now += 30
    pa = b.acquire("a")
    pb = b.acquire("b")
    assert pa.probe and pb.probe
    refused(b, "a")
    refused(b, "b")
    assert {m["model"]: m["state"] for m in b.snapshot()["open_models"]} == {"a": "half_open", "b": "half_open"}
    b.record(pa, OK)
    assert b.acquire("a").probe is False
    refused(b, "b")
    assert [s for s in b.model_states() if s.model == "a"][0][4:] == (1, 1, 1)  # opens, probes, recoveries


def test_a_failed_model_probe_reopens_from_the_failure(table, clock):
    b = make(table, clock)
    send(b, "m", MODEL, 3)
    clock.now += 40
    probe = b.acquire("m")
    clock.now += 5
    b.record(probe, MODEL)
    assert opened(b) == {"m": 4}
    clock.now += 29
    assert refused(b, "m").retry_after == 1
    clock.now += 1
    assert b.acquire("m").probe


def test_a_probe_without_verdict_goes_to_the_next_caller(table, clock):
    b = make(table, clock)
    send(b, "m", MODEL, 3)
    clock.now += 30
    first = b.acquire("m")
    refused(b, "m")
    b.record(first, NONE)
    second = b.acquire("m")
    assert second.probe
    b.record(first, NONE)  # a second report of the first permit changes nothing
    refused(b, "m")
    b.record(second, OK)
    assert opened(b) == {}


def test_a_host_failure_releases_a_model_probe_instead_of_failing_it(table, clock):
    b = make(table, clock)
    send(b, "m", MODEL, 3)
    clock.now += 30
    b.record(b.acquire("m"), HOST)  # connect refused: says nothing about the model
    assert opened(b) == {"m": 3}
    assert b.acquire("m").probe


def test_a_probe_that_never_reports_is_superseded(table, clock):
    b = make(table, clock, probe_timeout_secs=100.0)
    send(b, "m", MODEL, 3)
    clock.now += 30
    lost = b.acquire("m")
    clock.now += 99.5
    refused(b, "m")
    clock.now += 0.5
    second = b.acquire("m")
    assert second.probe
    b.record(lost, OK)  # the superseded probe's late verdict decides nothing
    refused(b, "m")
    b.record(second, OK)
    assert opened(b) == {}


def test_late_results_of_requests_admitted_before_opening_change_nothing(table, clock):
    b = make(table, clock)
    early_ok, early_fail = b.acquire("m"), b.acquire("m")
    send(b, "m", MODEL, 3)
    clock.now += 20
    b.record(early_ok, OK)
    b.record(early_fail, MODEL)
    assert opened(b) == {"m": 4}
    clock.now += 10  # still 30 s after the opening, not after the late failure
    assert b.acquire("m").probe


def test_record_twice_is_a_no_op(table, clock):
    b = make(table, clock)
    p = b.acquire("m")
    b.record(p, MODEL)
    b.record(p, MODEL)
    b.record(p, MODEL)
    assert [s.consecutive_failures for s in b.model_states()] == [1]


def test_a_model_failure_after_a_cached_lookup_is_seen(table, clock):
    """Workers remember "no slot" per model; a failure recorded since must still count."""
    b, other = make(table, clock), make(table, clock)  # two workers' instances, one table
    b.record(b.acquire("m"), OK)  # b now remembers that m has no slot
    send(other, "m", MODEL, 3)
    assert refused(b, "m").scope == "model"


# --------------------------------------------------------------------------- the host


def test_host_failures_open_the_host_for_every_model(table, clock):
    b = make(table, clock)
    for model in ("a", "b", "c"):
        send(b, model, HOST)
    snap = b.snapshot()
    assert (snap["is_open"], snap["state"], snap["consecutive_failures"]) == (True, "open", 3)
    for model in ("a", "new"):
        err = refused(b, model)
        assert (err.scope, err.model, err.retry_after) == ("host", None, 30)
    assert snap["open_models"] == []  # the models themselves are not blamed


def test_one_dead_model_at_all_the_traffic_never_opens_the_host(table, clock):
    b = make(table, clock, recovery_secs=1.0)
    for _ in range(200):
        try:
            b.record(b.acquire("dead"), MODEL)
        except BreakerOpen as exc:
            assert exc.scope == "model"
            clock.now += 1.0  # until its next probe, which fails again
    snap = b.snapshot()
    assert snap["is_open"] is False
    assert snap["consecutive_failures"] > 3  # counted, but from one model only
    assert opened(b) == {"dead": snap["consecutive_failures"]}
    assert b.acquire("healthy").probe is False


def test_failures_of_two_models_with_no_success_between_open_the_host(table, clock):
    b = make(table, clock)
    send(b, "a", MODEL, 2)
    send(b, "b", MODEL)
    snap = b.snapshot()
    assert snap["is_open"] is True and snap["consecutive_failures"] == 3
    assert refused(b, "c").scope == "host"


def test_a_success_anywhere_between_keeps_the_host_closed(table, clock):
    b = make(table, clock)
    send(b, "a", MODEL, 2)
    send(b, "c", OK)
    send(b, "b", MODEL, 2)
    assert b.snapshot()["is_open"] is False
    send(b, "a", MODEL)  # a: 3 in a row of its own; the host: 3 since the success, two models
    assert b.snapshot()["is_open"] is True


def test_a_backend_answer_breaks_a_run_of_host_failures(table, clock):
    b = make(table, clock)
    send(b, "a", HOST, 2)
    send(b, "a", MODEL)  # the backend answered: reachable
    send(b, "a", HOST, 2)
    assert b.snapshot()["is_open"] is False
    send(b, "a", HOST)
    assert b.snapshot()["is_open"] is True


def test_host_probe_success_closes_and_failure_reopens(table, clock):
    b = make(table, clock)
    send(b, "a", HOST, 3)
    clock.now += 30
    assert b.snapshot()["admits_probe"] is True
    probe = b.acquire("a")
    assert probe.probe and b.snapshot()["admits_probe"] is False
    assert refused(b, "b").scope == "host"
    b.record(probe, HOST)
    assert b.snapshot()["state"] == "open"
    clock.now += 30
    probe = b.acquire("b")
    b.record(probe, MODEL)  # b was closed: another model failing, still down
    assert b.snapshot()["state"] == "open"
    clock.now += 30
    b.record(b.acquire("c"), OK)
    snap = b.snapshot()
    assert (snap["state"], snap["consecutive_failures"]) == ("closed", 0)


def test_a_dead_models_combined_probe_failing_releases_the_host_probe(table, clock):
    b = make(table, clock, recovery_secs=30.0)
    send(b, "dead", MODEL, 3)
    clock.now += 10
    send(b, "x", HOST, 3)  # the host opens 10 s after "dead" did
    clock.now += 25  # the host's recovery is not over, "dead"'s is
    assert refused(b, "dead").scope == "host"
    clock.now += 5
    # Both recovered: this request is the host's probe and "dead"'s.
    probe = b.acquire("dead")
    assert probe.host_token and probe.model_token
    b.record(probe, MODEL)  # a known-dead model failing again: the host probe is released
    assert b.snapshot()["admits_probe"] is True
    assert opened(b)["dead"] == 4
    healthy = b.acquire("healthy")
    assert healthy.host_token
    b.record(healthy, OK)
    assert b.snapshot()["state"] == "closed"


def test_a_refused_model_leaves_the_host_probe_for_others(table, clock):
    b = make(table, clock, recovery_secs=30.0)
    early = [b.acquire("dead") for _ in range(3)]
    send(b, "x", HOST, 3)
    clock.now += 20
    for permit in early:
        b.record(permit, MODEL)  # late results, counted while the host is open: "dead" opens
    clock.now += 10  # host recovered, "dead" (opened 10 s ago) not
    assert refused(b, "dead").scope == "model"
    assert b.snapshot()["admits_probe"] is True
    assert b.acquire("fine").host_token


# --------------------------------------------------------------------------- the table


def test_more_failing_models_than_slots(clock):
    """4 slots: a new failing model takes a free slot, else the least recently written
    clean one, else the least recently written failing one, and never an open one."""
    t = SharedTable(4)
    try:
        b = make(t, clock, threshold=2)
        for i, model in enumerate("abcd"):
            clock.now += 1
            fail_alone(b, model)
            if i < 2:
                send(b, model, OK)  # a, b: clean (a written first)
        assert b.table_stats() == {"slots": 4, "used": 4, "untracked_failures": 0, "evictions": 0}
        clock.now += 1
        fail_alone(b, "e")  # evicts a: clean, least recently written
        assert {s.model for s in b.model_states()} == {"b", "c", "d", "e"}
        clock.now += 1
        fail_alone(b, "f")  # evicts b, the last clean one
        clock.now += 1
        fail_alone(b, "g")  # no clean slot: evicts c, the least recently failing
        assert {s.model for s in b.model_states()} == {"d", "e", "f", "g"}
        assert b.table_stats()["evictions"] == 3
        for model in "defg":
            fail_alone(b, model)  # all four open now
        assert set(opened(b)) == set("defg")
        for _ in range(5):
            b.record(b.acquire("h"), MODEL)  # untracked: admitted every time, counted
            send(b, "elsewhere", OK)
        assert set(opened(b)) == set("defg")
        assert b.table_stats()["untracked_failures"] == 5
        send(b, "h", MODEL)
        send(b, "i", MODEL)  # untracked models still feed the host rule
        assert b.snapshot()["is_open"] is True
    finally:
        t.close()


def test_long_names_are_kept_apart_and_shown_cut(table, clock):
    b = make(table, clock, threshold=1)
    base = "m" * 300
    send(b, base + "1", MODEL)
    b.acquire(base + "2")
    [state] = b.model_states()
    assert state.model == "m" * 256 + "…"
    send(b, "é" * 200, MODEL)  # 400 bytes: cut on a character boundary
    assert "é" * 128 + "…" in {s.model for s in b.model_states()}


# --------------------------------------------------------------------------- the rest


def test_disabled_admits_everything_and_makes_no_table(clock, monkeypatch):
    import proxy.breaker as pkg

    monkeypatch.setattr(pkg, "_shared", None)
    b = Breakers(enabled=False, threshold=1, recovery_secs=30, probe_timeout_secs=60, clock=clock)
    for verdict in (MODEL, HOST, MODEL, NONE, OK):
        b.record(b.acquire("m"), verdict)
    assert b.acquire("m").probe is False
    assert b.snapshot() == {
        "enabled": False, "is_open": False, "consecutive_failures": 0, "state": "closed",
        "admits_probe": False, "open_models": [],
    }
    assert b.model_states() == [] and pkg._shared is None


def test_threads_of_one_process_get_exactly_one_probe(table):
    b = Breakers(enabled=True, threshold=1, recovery_secs=0.0, probe_timeout_secs=600, table=table)
    send(b, "m", MODEL)
    barrier = threading.Barrier(16)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(b.acquire("m"))
        except BreakerOpen as e:
            results.append(e)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Permit) and r.probe for r in results) == 1
    assert sum(isinstance(r, BreakerOpen) for r in results) == 15


def test_slot_count_setting():
    assert settings_mod.load({}).breaker_model_slots == 256
    assert settings_mod.load({"CIRCUIT_BREAKER_MODEL_SLOTS": "16"}).breaker_model_slots == 16
    for bad in ("0", "4097", "many"):
        with pytest.raises(settings_mod.SettingsError, match="CIRCUIT_BREAKER_MODEL_SLOTS"):
            settings_mod.load({"CIRCUIT_BREAKER_MODEL_SLOTS": bad})
