"""A rolling restart of both instances behind HAProxy, under continuous load, loses no request,
done either way README's Deployment section describes.

**Undrained** (the tested default: nothing is said to HAProxy), each instance in turn:

1. ``SIGHUP`` (``systemctl reload``): gunicorn starts new workers on the same
   socket; the old ones finish their requests and streams, and each idle
   connection HAProxy holds to them may still carry one more request, answered
   with ``Connection: close`` (``SHUTDOWN_LINGER_SECS``, ``proxy/worker.py``);
2. ``SIGTERM`` (``systemctl restart``) with ``SHUTDOWN_DRAIN_SECS``: ``/health``
   answers 503 ``draining`` while everything is served as usual, HAProxy's
   checks mark the instance down, and only then does gunicorn close the
   listener and finish what is in flight; the instance is started again on
   its port and HAProxy's checks bring it back.

**Drained** (belt and braces), each instance in turn: ``set server
responses_proxy/<name> state drain`` on HAProxy's runtime API and wait until
the instance has read every request already sent to it; SIGHUP; ``state
ready``; drain again; SIGTERM; start; ``state ready``. Run with
``SHUTDOWN_LINGER_SECS=0``: this procedure does not need the linger.

Streams take ~1.6 s and slow JSON answers ~1 s, so requests are in flight on the
instance at every signal; every request must succeed, streams with
``response.completed``, chained turns finding their predecessor.

Before ``proxy/worker.py``'s linger, undrained signals lost a request now and
then: uvicorn's shutdown (``Server.shutdown`` → ``HttpToolsProtocol.shutdown``)
closed at once every connection with no request in progress, even one whose
next request was already in its socket; HAProxy cannot resend a POST
(``python -m tests.deploy.measure_undrained --linger 0`` shows it).
"""
from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.deploy.conftest import Fleet
from tests.deploy.haproxy import SERVERS, StatusWatch
from tests.deploy.kinds import CHAIN, KINDS
from tests.deploy.load import Load
from tests.faults.helpers import worker_pids
from tests.http import wait_for

pytestmark = pytest.mark.slow

# Above HAProxy's time to mark an instance down with the tests' checks (every 200 ms, fall 2),
# with room for a busy machine; production: above inter × fall = 6 s (README).
DRAIN_SECS = 2.0

Signal = tuple[str, str, float, float]  # (instance, signal, sent, done)


def _traffic_on(fleet: Fleet, name: str, after: float) -> None:
    hap = fleet.haproxy
    assert hap is not None
    wait_for(lambda: sum(ln.server == name and ln.received > after for ln in hap.log_lines()) >= 5, 30,
             what=f"traffic on {name} again")


def _reload(fleet: Fleet, name: str) -> Signal:
    """SIGHUP; returns once the old workers have exited and only new ones run."""
    service = fleet.instances[name]
    old = set(worker_pids(service))
    sent = time.time()
    service.signal(signal.SIGHUP)
    wait_for(lambda: len(set(worker_pids(service)) - old) == 2 and not set(worker_pids(service)) & old, 60,
             what=f"{name}'s old workers to finish and new ones to run")
    return name, "SIGHUP", sent, time.time()


def _restart(fleet: Fleet, name: str) -> Signal:
    """SIGTERM, wait for a clean exit, start again on the same port."""
    service = fleet.instances[name]
    sent = time.time()
    service.signal(signal.SIGTERM)
    rc = service.proc.wait(60)
    done = time.time()
    assert rc == 0, service.log_text()[-3000:]
    service.stop()
    fleet.start(name)
    return name, "SIGTERM", sent, done


def _check_no_loss(fleet: Fleet, load: Load, signals: list[Signal], title: str) -> None:
    hap = fleet.haproxy
    assert hap is not None
    outcomes = load.outcomes()
    served = {ln.request_id: ln.server for ln in hap.log_lines()}
    failures = [o for o in outcomes if not o.ok]
    turns = CHAIN.turns_of(load.prefix)
    report = [f"{title}: {len(outcomes)} requests ({sum(o.kind == 'stream' for o in outcomes)} streams, "
              f"{sum(t.ok for t in turns)} chained turns), {len(failures)} failed"]
    carried = 0
    for name, sig, sent, done in signals:
        across = [o for o in outcomes if o.started < sent < o.ended and served.get(o.request_id) == name]
        carried += len(across)
        report.append(f"  {name} {sig}: {len(across)} requests in flight across it "
                      f"({sum(o.kind == 'stream' for o in across)} streams), done {done - sent:.2f} s after")
    print("\n" + "\n".join(report))
    assert not failures, "\n".join(report + [o.describe() for o in failures[:20]])
    assert carried, "no request was in flight across any signal: the graceful paths were not exercised"


def _rolling(fleet: Fleet, step: Callable[[Load, str], list[Signal]], title: str) -> list[Signal]:
    signals: list[Signal] = []
    with Load(fleet.url, KINDS, threads=8) as load:
        load.wait_until(lambda out: sum(o.ok for o in out) >= 20, 30, "load running")
        for name in SERVERS:
            signals += step(load, name)
    _check_no_loss(fleet, load, signals, title)
    return signals


def test_undrained_rolling_restart_loses_no_request(fleet_factory):
    """SIGHUP, then SIGTERM with SHUTDOWN_DRAIN_SECS, each instance in turn; HAProxy is told nothing."""
    fleet = fleet_factory(SHUTDOWN_DRAIN_SECS=str(DRAIN_SECS))
    hap = fleet.haproxy
    downs: list[tuple[str, float, float, float]] = []  # (instance, SIGTERM sent, marked down, exited)

    def step(load: Load, name: str) -> list[Signal]:
        hup = _reload(fleet, name)
        _traffic_on(fleet, name, after=hup[3])
        with StatusWatch(hap) as watch:
            term = _restart(fleet, name)
            down = watch.first(name, "DOWN", after=term[2])
            up = watch.first(name, "UP", after=term[3], timeout=30)
        downs.append((name, term[2], down, term[3]))
        _traffic_on(fleet, name, after=up)
        return [hup, term]

    _rolling(fleet, step, "undrained rolling restart")
    for name, sent, down, exited in downs:
        print(f"  {name}: marked down {down - sent:.2f} s after SIGTERM (drain {DRAIN_SECS:g} s), exited "
              f"{exited - sent:.2f} s after it")
        # The health checks took it out while it was still serving: before the drain was over.
        assert down < sent + DRAIN_SECS < exited, (name, sent, down, exited)
        log = fleet.log_path(name).read_text("utf-8", "replace")
        assert f'Draining for {DRAIN_SECS:g} s before stopping: /health answers 503 "draining"' in log


def test_drained_rolling_restart_loses_no_request(fleet_factory):
    """The runtime API's `state drain` before each signal, `state ready` after (README's procedure).

    With SHUTDOWN_LINGER_SECS=0, uvicorn's own shutdown: the drained procedure needs no linger
    (nothing is sent to the instance any more when it stops), so it holds on its own."""
    fleet = fleet_factory(SHUTDOWN_LINGER_SECS="0")
    hap = fleet.haproxy

    def back_in_rotation(name: str) -> None:
        hap.set_state(name, "ready")
        _traffic_on(fleet, name, after=hap.wait_status(name, "UP"))

    def step(load: Load, name: str) -> list[Signal]:
        hap.drain(name, fleet.ports[name])
        hup = _reload(fleet, name)
        back_in_rotation(name)
        hap.drain(name, fleet.ports[name])
        term = _restart(fleet, name)
        back_in_rotation(name)
        return [hup, term]

    _rolling(fleet, step, "drained rolling restart")
