"""What happens to background jobs when workers die or the service stops, and under load:
SIGKILL of the worker running a job (failed within the lease bound, reaped by another worker),
SIGTERM (jobs that can finish in the graceful timeout do, the others end failed before gunicorn's
kill), and 50 jobs at once with none lost. Real gunicorn, real signals, one SQLite store."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from proxy.background.bodies import LOST_MESSAGE, SHUTDOWN_MESSAGE
from proxy.store.sqlite_store import SQLiteStore
from tests.background_kit import (
    background,
    poll,
    read_logged,
    read_some,
    slow_text,
    start,
    stream_events,
    wait_upstream,
    worker_of,
)
from tests.conformance import check_response, check_stream
from tests.conftest import API_KEY
from tests.http import auth

LEASE_SECS = 3.0
# Lease + reaper interval (lease / 5, jittered 20%) + a store call: Jobs.lease_bound_secs.
LEASE_BOUND_SECS = LEASE_SECS + 0.6 * 1.2 + 1.0
HANG_SLACK_SECS = 15.0  # a hang check on a shared machine, not the bound itself (reported by the test)


def metric(proxy, name: str, **labels: str) -> float:
    text = httpx.get(proxy.url + "/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_a_job_whose_worker_is_sigkilled_fails_within_the_lease_bound(proxy_factory, mock):
    svc = start(proxy_factory, BACKGROUND_LEASE_SECS=str(LEASE_SECS))
    text = slow_text(60)
    live = read_some(svc, {"model": "mock-slow-100", "input": text}, 5)
    rid = live[0]["response"]["id"]
    wait_upstream(mock, text, ended=False)
    assert read_logged(svc, rid, 5) == live  # the log holds what the client saw (it may lag by a write)
    pid = worker_of(svc, rid)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    final = poll(svc, rid, timeout=LEASE_BOUND_SECS + HANG_SLACK_SECS)
    took = time.monotonic() - killed
    print(f"SIGKILL to failed: {took:.2f} s (documented bound {LEASE_BOUND_SECS:.1f} s)")
    check_response(final)
    assert final["status"] == "failed" and final["error"]["message"] == LOST_MESSAGE
    assert metric(svc, "responses_proxy_background_jobs_total", event="reaped") == 1
    # Its stream ends where the dead worker stopped logging: a replay does not wait forever.
    replay = stream_events(svc, rid)
    assert replay[:5] == live and all(e["type"] not in ("response.completed",) for e in replay)
    # The backend's request went with the worker.
    assert wait_upstream(mock, text, ended=True)["disconnected"]


def test_on_sigterm_jobs_get_the_graceful_timeout_then_end_failed(proxy_factory, mock, tmp_path):
    path = tmp_path / "store.sqlite3"
    svc = start(proxy_factory, GRACEFUL_TIMEOUT_SECS="4", RESPONSE_STORE_URL=f"sqlite:///{path}")
    short_text, long_text = "short " + slow_text(2.0), slow_text(60)
    short = background(svc, {"model": "mock-slow-100", "input": short_text})
    long = read_some(svc, {"model": "mock-slow-100", "input": long_text}, 3)[0]["response"]  # streamed, then left
    wait_upstream(mock, long_text, ended=False)
    wait_upstream(mock, short_text, ended=False)
    svc.signal(signal.SIGTERM)
    stopped = time.monotonic()
    svc.proc.wait(4 + 5 + HANG_SLACK_SECS)  # graceful timeout + the jobs' margin, then gunicorn kills
    took = time.monotonic() - stopped
    print(f"SIGTERM to exit: {took:.2f} s")
    assert took >= 3.5  # the long job held the worker for the graceful timeout

    async def read(store: SQLiteStore) -> tuple[dict, dict, list[bytes]]:
        owner = store.owner_of(API_KEY)
        try:
            a, b = await store.get_response(owner, short["id"]), await store.get_response(owner, long["id"])
            page = await store.read_events(owner, long["id"], -1)
            return httpx.Response(200, content=a).json(), httpx.Response(200, content=b).json(), page
        finally:
            await store.aclose()

    finished, stopped_job, page = asyncio.run(read(SQLiteStore(str(path))))
    assert check_response(finished)["status"] == "completed"  # it could finish in time: it did
    assert check_response(stopped_job)["status"] == "failed"
    assert stopped_job["error"]["message"] == SHUTDOWN_MESSAGE
    assert page.ended
    events = [httpx.Response(200, content=e).json() for e in page.events]
    assert check_stream(events)["status"] == "failed"  # its log ends with error + response.failed
    assert wait_upstream(mock, long_text, ended=True)["disconnected"]


def test_fifty_background_jobs_at_once_none_lost(proxy_factory, mock):
    svc = start(proxy_factory, BACKGROUND_MAX_PER_KEY="100")
    texts = [f"job {n} " + slow_text(1.0, 20) for n in range(50)]

    def create(n: int) -> dict:
        body = {"model": "mock-slow-20", "input": texts[n], "background": True, "stream": n % 2 == 0}
        with httpx.stream("POST", svc.url + "/v1/responses", json=body, headers=auth(), timeout=60) as r:
            assert r.status_code == 200, r.read()
            if n % 2 == 0:  # a streamed one: read its first event, then leave
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        return httpx.Response(200, content=line[6:]).json()["response"]
            return httpx.Response(200, content=r.read()).json()

    with ThreadPoolExecutor(50) as pool:
        created = list(pool.map(create, range(50)))
    assert len({doc["id"] for doc in created}) == 50
    with ThreadPoolExecutor(10) as pool:
        finals = list(pool.map(lambda doc: poll(svc, doc["id"], timeout=120), created))
    for n, final in enumerate(finals):
        assert final["status"] == "completed", (n, final["status"], final["error"])
        assert final["output"][0]["content"][0]["text"] == "You said: " + texts[n]
    for n in (0, 2, 48):  # the streamed ones kept every event
        assert check_stream(stream_events(svc, created[n]["id"])) == finals[n]
    assert metric(svc, "responses_proxy_background_jobs_total", event="started") == 50
    assert metric(svc, "responses_proxy_background_jobs_total", event="completed") == 50
    assert metric(svc, "responses_proxy_background_jobs_running") == 0
