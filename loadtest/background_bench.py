"""Background mode's figures, measured on real processes (prints numbers; not a test).

Usage::

    python -m loadtest.background_bench             # SQLite (one instance) and Redis (two instances)
    python -m loadtest.background_bench --cancels 20 --jobs 50 --lease 10

Per store (SQLite: one gunicorn with 2 workers; Redis: two such instances on one redis-server of
its own), with the mock backend streaming slowly:

- **cancel latency**: from sending ``POST …/cancel`` to the backend seeing its request closed
  (the mock's own clock), for a cancel reaching another worker (SQLite: heard by lease renewal)
  or another instance (Redis: pushed);
- **lease bound**: from SIGKILL of the worker running a job to ``GET`` showing it ``failed``,
  with ``BACKGROUND_LEASE_SECS`` as given (documented bound: lease + reap interval × 1.2 + 1 s);
- **N jobs at once**: wall time from the first POST to the last completed poll, none lost, and
  the store operations per job (from ``/metrics``).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from proxy.devtools import Service, start_mock, start_proxy
from tests.background_kit import background, poll, slow_text, wait_upstream, worker_of
from tests.http import auth
from tests.mock_client import MockControl
from tests.redis_server import RedisServer


def cancel_latencies(run: Service, cancel_on: Service, mock: MockControl, count: int) -> list[float]:
    out = []
    for n in range(count):
        text = f"cancel {run.port} {n} " + slow_text(30)
        job = background(run, {"model": "mock-slow-100", "input": text})
        wait_upstream(mock, text, ended=False)
        time.sleep(0.3)  # well under way
        asked = time.time()
        r = httpx.post(f"{cancel_on.url}/v1/responses/{job['id']}/cancel", headers=auth(), timeout=10)
        assert r.json()["status"] == "cancelled", r.text
        out.append(wait_upstream(mock, text, ended=True)["ended_at"] - asked)
    return out


def lease_bound(run: Service, watch: Service, mock: MockControl) -> float:
    text = "kill " + slow_text(120)
    job = background(run, {"model": "mock-slow-100", "input": text})
    wait_upstream(mock, text, ended=False)
    os.kill(worker_of(run, job["id"]), signal.SIGKILL)
    killed = time.monotonic()
    final = poll(watch, job["id"], timeout=120)
    assert final["status"] == "failed", final["status"]
    return time.monotonic() - killed


def many_jobs(services: list[Service], count: int) -> tuple[float, dict[str, float]]:
    texts = [f"job {n} " + slow_text(1.0, 20) for n in range(count)]
    before = store_ops(services)
    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        created = list(pool.map(
            lambda n: background(services[n % len(services)], {"model": "mock-slow-20", "input": texts[n]}),
            range(count),
        ))
    with ThreadPoolExecutor(16) as pool:
        finals = list(pool.map(lambda doc: poll(services[0], doc["id"], timeout=300), created))
    took = time.monotonic() - started
    lost = [f["id"] for n, f in enumerate(finals) if f["output"][0]["content"][0]["text"] != "You said: " + texts[n]]
    assert not lost, lost
    after = store_ops(services)
    return took, {op: (after[op] - before.get(op, 0)) / count for op in after if after[op] != before.get(op, 0)}


def store_ops(services: list[Service]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for svc in services:
        text = httpx.get(svc.url + "/metrics", timeout=10).text
        for labels, value in re.findall(r"responses_proxy_store_operations_total\{([^}]*)\} ([0-9.e+]+)", text):
            named = re.search(r'op="([^"]+)"', labels)
            op = named.group(1) if named else "?"
            totals[op] = totals.get(op, 0) + float(value)
    return totals


def report(name: str, cancels: list[float], bound: float, lease: float, jobs: int, took: float,
           ops: dict[str, float]) -> None:
    documented = lease + min(2.0, max(0.5, lease / 5)) * 1.2 + 1.0
    print(f"== {name}")
    print(f"cancel → backend request closed: median {statistics.median(cancels) * 1000:.0f} ms, "
          f"max {max(cancels) * 1000:.0f} ms over {len(cancels)}")
    print(f"SIGKILL → failed: {bound:.2f} s (lease {lease:g} s, documented bound {documented:.1f} s)")
    print(f"{jobs} jobs at once: all completed in {took:.1f} s; store operations per job (excluding polls): "
          + ", ".join(f"{op} {n:.1f}" for op, n in sorted(ops.items()) if op not in ("get_response",)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cancels", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--lease", type=float, default=10.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bg-bench-"))
    mock_svc = start_mock(tmp / "mock.log")
    mock = MockControl(mock_svc.url)
    env = {"BACKGROUND_LEASE_SECS": str(args.lease), "BACKGROUND_MAX_PER_KEY": "1000", "GRACEFUL_TIMEOUT_SECS": "2"}
    started: list[Service] = []
    try:
        one = start_proxy(mock_svc.url + "/v1", tmp / "sqlite.log", **env)
        started.append(one)
        cancels = cancel_latencies(one, one, mock, args.cancels)
        bound = lease_bound(one, one, mock)
        took, ops = many_jobs([one], args.jobs)
        report("SQLite, one instance (2 workers)", cancels, bound, args.lease, args.jobs, took, ops)
        with RedisServer() as redis_server:
            shared = {**env, "RESPONSE_STORE_URL": redis_server.url}
            a = start_proxy(mock_svc.url + "/v1", tmp / "redis-a.log", **shared)
            started.append(a)
            b = start_proxy(mock_svc.url + "/v1", tmp / "redis-b.log", **shared)
            started.append(b)
            cancels = cancel_latencies(a, b, mock, args.cancels)
            bound = lease_bound(a, b, mock)
            took, ops = many_jobs([a, b], args.jobs)
            report("Redis, two instances (2 workers each)", cancels, bound, args.lease, args.jobs, took, ops)
            for svc in (a, b):
                svc.stop()
    finally:
        for svc in started:
            svc.stop()
        mock.close()
        mock_svc.stop()


if __name__ == "__main__":
    main()
