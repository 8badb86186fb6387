"""Background mode across two instances (each gunicorn with 2 workers) sharing one real Redis:
a job created on one is polled, cancelled and resumed on the other — the cancel pushed to the
worker running it, which closes its backend request — and a worker SIGKILLed on one instance has
its job failed by a reaper; 50 jobs spread over both, none lost."""
from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from proxy.background.bodies import LOST_MESSAGE
from tests.background_kit import (
    background,
    check_queued_start,
    check_resumed,
    get,
    poll,
    read_some,
    slow_text,
    start,
    stream_events,
    wait_upstream,
    worker_of,
)
from tests.conformance import check_response, check_stream
from tests.http import auth
from tests.redis_server import RedisServer

_dbs = itertools.count(1)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this module's own: each test takes a database of it (16 by default)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def pair(redis_server, proxy_factory):
    """Two instances on one Redis database (``BACKGROUND_LEASE_SECS=3`` for the reaper test)."""
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"
    env = {"RESPONSE_STORE_URL": url, "BACKGROUND_LEASE_SECS": "3", "BACKGROUND_MAX_PER_KEY": "100"}
    return start(proxy_factory, **env), start(proxy_factory, **env)


def test_created_on_one_instance_polled_on_the_other(pair, mock):
    a, b = pair
    text = "across " + slow_text(1.5)
    job = background(a, {"model": "mock-slow-100", "input": text})
    assert get(b, job["id"])["status"] in ("queued", "in_progress")
    final = poll(b, job["id"])
    assert check_response(final)["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "You said: " + text
    assert get(a, job["id"]) == final


def test_a_cancel_on_the_other_instance_reaches_the_running_worker_at_once(pair, mock):
    a, b = pair
    text = slow_text(30)
    job = background(a, {"model": "mock-slow-100", "input": text})
    wait_upstream(mock, text, ended=False)
    asked = time.time()
    r = httpx.post(f"{b.url}/v1/responses/{job['id']}/cancel", headers=auth(), timeout=10)
    assert r.status_code == 200 and check_response(r.json())["status"] == "cancelled"
    record = wait_upstream(mock, text, ended=True, timeout=15)
    assert record["disconnected"] and not record["completed"]
    print(f"cancel (other instance) to upstream closed: {record['ended_at'] - asked:.3f} s")
    assert get(a, job["id"]) == r.json() == get(b, job["id"])


def test_a_stream_left_on_one_instance_resumes_on_the_other(pair, mock):
    a, b = pair
    text = "resume " + slow_text(3.0)
    live = read_some(a, {"model": "mock-slow-100", "input": text}, 5)
    rid = live[0]["response"]["id"]
    check_queued_start(live)
    with ThreadPoolExecutor(4) as pool:  # while it still runs: followed live, from either side of in_progress
        following = {after: pool.submit(stream_events, b, rid, starting_after=after) for after in (0, 1, 2, 3)}
    full = stream_events(b, rid)
    final = check_stream(full)
    assert final["status"] == "completed" and full[:5] == live
    for after, resumed in following.items():
        check_resumed(full, after, resumed.result())
    for after in (0, 1, 2, 10, len(full) - 1):
        check_resumed(full, after, stream_events(a, rid, starting_after=after))


def test_a_job_of_a_sigkilled_worker_is_reaped_by_another(pair, mock):
    a, b = pair
    text = slow_text(60)
    job = background(a, {"model": "mock-slow-100", "input": text})
    wait_upstream(mock, text, ended=False)
    os.kill(worker_of(a, job["id"]), signal.SIGKILL)
    killed = time.monotonic()
    final = poll(b, job["id"], timeout=30)
    print(f"SIGKILL to failed (Redis): {time.monotonic() - killed:.2f} s")
    assert final["status"] == "failed" and final["error"]["message"] == LOST_MESSAGE


def test_fifty_jobs_over_two_instances_none_lost(pair, mock):
    a, b = pair
    texts = [f"job {n} " + slow_text(1.0, 20) for n in range(50)]
    with ThreadPoolExecutor(50) as pool:
        created = list(pool.map(
            lambda n: background((a, b)[n % 2], {"model": "mock-slow-20", "input": texts[n]}), range(50)
        ))
    with ThreadPoolExecutor(10) as pool:
        finals = list(pool.map(lambda n: poll((b, a)[n % 2], created[n]["id"], timeout=120), range(50)))
    for n, final in enumerate(finals):
        assert final["status"] == "completed", (n, final["status"], final["error"])
        assert final["output"][0]["content"][0]["text"] == "You said: " + texts[n]
