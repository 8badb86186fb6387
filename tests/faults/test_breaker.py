"""The circuit breaker on the real process tree: one state for every worker.

The request edge still calls the host breaker's old API (``CircuitBreaker``):
every backend failure counts for the host, whatever the model.

Which worker serves a request is forced with ``only_worker`` (SIGSTOP the
other) and checked against the pid in the worker's ``request_completed`` line.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.faults.helpers import completed_for, only_worker, wait_workers, worker_pids
from tests.http import error_of, health, post, wait_for

BREAKER = {"CIRCUIT_BREAKER_THRESHOLD": "3", "CIRCUIT_BREAKER_RECOVERY_SECS": "2"}
FAIL = {"status": 500, "error": {"message": "backend exploded"}}


def _fail_on(svc, pid: int, model: str, rid: str) -> None:
    with only_worker(svc, pid):
        r = post(svc.url, {"model": model, "input": "x"}, headers={"X-Request-ID": rid})
    assert r.status_code == 502, r.text
    assert error_of(r)["code"] == "backend_error"
    lines = completed_for(svc, rid)
    assert [c.pid for c in lines] == [pid], f"{rid} was not served by worker {pid}: {lines}"


def _assert_refused(svc, pid: int, model: str, mock, recovery: float) -> int:
    """A request on worker ``pid`` is refused by the open breaker without reaching the backend."""
    before = len(mock.requests(model))
    with only_worker(svc, pid):
        r = post(svc.url, {"model": model, "input": "x"})
        status, doc = health(svc.url)
    assert r.status_code == 503, r.text
    err = error_of(r)
    assert err["code"] == "circuit_open" and err["type"] == "server_error"
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= recovery, retry_after
    assert status == 503 and doc["status"] == "unhealthy" and doc["circuit_breaker"]["is_open"] is True, doc
    assert len(mock.requests(model)) == before, "a refused request reached the backend"
    return retry_after


@pytest.mark.slow
def test_breaker_shared_by_workers_opens_probes_and_closes(proxy_factory, mock):
    svc = proxy_factory(**BREAKER)
    a, b = wait_workers(svc)
    mock.script("cb-fail", FAIL)

    # Failures on alternating workers add up in one shared count.
    for i, pid in enumerate((a, b)):
        _fail_on(svc, pid, "cb-fail", f"cb-f{i}")
        status, doc = health(svc.url)
        assert status == 200 and doc["circuit_breaker"]["consecutive_failures"] == i + 1, doc
    _fail_on(svc, a, "cb-fail", "cb-f2")
    opened = time.monotonic()
    assert len(mock.requests("cb-fail")) == 3

    # Open on both workers: 503 + Retry-After, nothing reaches the backend.
    for pid in (a, b):
        _assert_refused(svc, pid, "cb-fail", mock, 2)
    assert len(mock.requests("cb-fail")) == 3

    # After recovery: exactly one probe reaches the backend, the rest are refused.
    mock.script("cb-probe", {"text": "recovered", "first_byte_delay": 1.5})
    time.sleep(max(0.0, opened + 2.2 - time.monotonic()))
    probe: dict = {}
    probe_thread = threading.Thread(
        target=lambda: probe.setdefault("r", post(svc.url, {"model": "cb-probe", "input": "x"}))
    )
    probe_thread.start()
    wait_for(lambda: mock.requests("cb-probe"), 5, what="the probe to reach the backend")
    refused = 0
    for pid in (a, b, a, b):
        with only_worker(svc, pid):
            r = post(svc.url, {"model": "cb-probe", "input": "x"})
        assert r.status_code == 503, f"request during the probe got {r.status_code}: {r.text}"
        refused += 1
    probe_thread.join(10)
    assert probe["r"].status_code == 200, probe["r"].text
    assert len(mock.requests("cb-probe")) == 1, "more than one probe reached the backend"
    status, doc = health(svc.url)
    assert status == 200 and doc == {
        "status": "healthy",
        "circuit_breaker": {"enabled": True, "is_open": False, "consecutive_failures": 0},
        "open_models": [],
    }, doc
    for pid in (a, b):
        with only_worker(svc, pid):
            assert post(svc.url, {"model": "cb-probe", "input": "x"}).status_code == 200
    print(f"\nbreaker: 3 failures over workers {a},{b} opened it; {refused} refused during the probe; 1 probe closed it")

    # A failed probe re-opens it at once, for another recovery period.
    for i in range(3):
        _fail_on(svc, (a, b)[i % 2], "cb-fail", f"cb-g{i}")
    time.sleep(2.2)
    before = len(mock.requests("cb-fail"))
    r = post(svc.url, {"model": "cb-fail", "input": "x"})
    assert r.status_code == 502, r.text  # the probe, failing
    assert len(mock.requests("cb-fail")) == before + 1
    for pid in (a, b):
        _assert_refused(svc, pid, "cb-fail", mock, 2)


def test_client_errors_never_open_the_breaker(proxy_factory, mock):
    svc = proxy_factory(CIRCUIT_BREAKER_THRESHOLD="2", CIRCUIT_BREAKER_RECOVERY_SECS="30")
    for status in (401, 400, 404, 429):
        mock.script(f"cb-c{status}", {"status": status, "error": {"message": f"client error {status}"}})
        for _ in range(4):
            r = post(svc.url, {"model": f"cb-c{status}", "input": "x"})
            assert r.status_code == status, r.text
            error_of(r)
    invalid = [
        b"{not json",
        b"[1, 2]",
        b'{"input": "no model"}',
        b'{"model": "a b", "input": "x"}',
        b'{"model": "m", "input": 42}',
    ]
    for body in invalid * 2:
        r = post(svc.url, body)
        assert r.status_code == 400, r.text
    for _ in range(3):
        assert post(svc.url, {"model": "cb-c401", "input": "x"}, key=None).status_code == 401
    status, doc = health(svc.url)
    assert status == 200, doc
    assert doc["circuit_breaker"] == {"enabled": True, "is_open": False, "consecutive_failures": 0}
    assert post(svc.url, {"model": "cb-ok", "input": "x"}).status_code == 200


def test_disabled_breaker_never_refuses(proxy_factory, mock):
    svc = proxy_factory(
        CIRCUIT_BREAKER_ENABLED="false", CIRCUIT_BREAKER_THRESHOLD="1", CIRCUIT_BREAKER_RECOVERY_SECS="30"
    )
    mock.script("cb-off", FAIL)
    statuses = [post(svc.url, {"model": "cb-off", "input": "x"}).status_code for _ in range(12)]
    assert statuses == [502] * 12
    assert len(mock.requests("cb-off")) == 12
    status, doc = health(svc.url)
    assert status == 200 and doc["circuit_breaker"]["enabled"] is False and doc["status"] == "healthy", doc


def _open_for_a_minute(proxy_factory, mock, model: str):
    """A proxy whose breaker three backend 500s have opened (recovery 60 s); its first workers."""
    svc = proxy_factory(CIRCUIT_BREAKER_THRESHOLD="3", CIRCUIT_BREAKER_RECOVERY_SECS="60")
    first = wait_workers(svc)
    mock.script(model, FAIL)
    for _ in range(3):
        assert post(svc.url, {"model": model, "input": "x"}).status_code == 502
    assert health(svc.url)[0] == 503
    return svc, first


@pytest.mark.slow
def test_respawned_workers_see_the_open_breaker(proxy_factory, mock):
    svc, first = _open_for_a_minute(proxy_factory, mock, "cb-kill")
    # Kill both original workers (one at a time); gunicorn respawns them by forking the master.
    seen = set(first)
    for pid in first:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: pid not in worker_pids(svc), 10, what=f"worker {pid} to die")
    new = wait_workers(svc, exclude=seen)
    print(f"\nrespawn: workers {first} SIGKILLed, respawned as {new}")
    for pid in new:
        _assert_refused(svc, pid, "cb-kill", mock, 60)
        with only_worker(svc, pid):
            _, doc = health(svc.url)
        assert doc["circuit_breaker"]["consecutive_failures"] == 3, doc
    assert len(mock.requests("cb-kill")) == 3


def test_breaker_state_survives_a_sighup_reload(proxy_factory, mock):
    """`systemctl reload` sends SIGHUP: gunicorn re-reads its config and replaces
    every worker; the open breaker must not be reset by it."""
    svc, first = _open_for_a_minute(proxy_factory, mock, "cb-hup")
    svc.signal(signal.SIGHUP)
    new = wait_workers(svc, exclude=set(first))
    assert not set(new) & set(first)
    status, doc = health(svc.url)
    assert status == 503 and doc["circuit_breaker"]["consecutive_failures"] == 3, doc
    r = post(svc.url, {"model": "cb-hup", "input": "x"})
    assert r.status_code == 503 and error_of(r)["code"] == "circuit_open"
    assert len(mock.requests("cb-hup")) == 3
