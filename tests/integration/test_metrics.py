"""``GET /metrics`` on the real process tree: every count equals what was sent, over both workers,
through a worker SIGKILLed mid-stream and respawned, and a SIGHUP reload.

Which worker serves a request is forced with ``only_worker`` (SIGSTOP the other).
"""
from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.devtools import start_proxy
from tests.faults.helpers import only_worker, wait_workers, worker_pids
from tests.http import post, stream_raw, wait_for

P = "responses_proxy_"
ROUTE = "/v1/responses"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def requests_by_label(samples: dict) -> Counter:
    """(model, status, streaming) → count, for POST /v1/responses."""
    out: Counter = Counter()
    for (name, labels), value in samples.items():
        ls = dict(labels)
        if name == P + "requests_total" and ls["route"] == ROUTE and value:
            out[(ls["model"], ls["status"], ls["streaming"])] += int(value)
    return out


def gauge(samples: dict, name: str) -> float:
    return samples[(P + name, ())]


class Traffic:
    """Requests sent through the proxy, and what ``/metrics`` must say about them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.expected: Counter = Counter()

    def json(self, model: str, status: int, label: str | None = None) -> None:
        r = post(self.url, {"model": model, "input": "hi"})
        assert r.status_code == status, r.text
        self.expected[(label or model, str(status), "false")] += 1

    def stream(self, model: str) -> None:
        r, raw = stream_raw(self.url, {"model": model, "input": "hi"})
        assert r.status_code == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
        self.expected[(model, "200", "true")] += 1

    def invalid(self) -> None:
        r = post(self.url, {"model": "a b", "input": "hi"})
        assert r.status_code == 400, r.text
        self.expected[("-", "400", "false")] += 1

    def mix(self) -> None:
        self.json("mock-echo", 200)
        self.json("mock-echo", 200)
        self.stream("mock-stream-3")
        self.json("mx-fail", 502)
        self.json("mock-error-404", 404, label="other")  # refused names never get a label
        self.invalid()

    def counted(self, timeout: float = 15.0) -> dict:
        """Wait until ``/metrics`` shows exactly the expected counts (a stream is counted when it closes)."""
        return wait_for(
            lambda: (lambda s: s if requests_by_label(s) == self.expected else None)(scrape(self.url)),
            timeout, what=f"/metrics to count {dict(self.expected)}",
        )


@pytest.mark.slow
def test_counts_over_both_workers_survive_a_sigkill_and_a_reload(proxy_factory, mock):
    svc = proxy_factory(CIRCUIT_BREAKER_THRESHOLD="1000")
    a, b = wait_workers(svc)
    mock.script("mx-fail", {"status": 500, "error": {"message": "down"}})
    traffic = Traffic(svc.url)
    for pid in (a, b, a):
        with only_worker(svc, pid):
            traffic.mix()
    s = traffic.counted()
    n = sum(traffic.expected.values())
    assert n == 18
    assert sum(v for (name, ls), v in s.items() if name == P + "request_duration_seconds_count"
               and dict(ls)["route"] == ROUTE) == n
    assert gauge(s, "requests_in_flight") == 1  # this scrape
    assert gauge(s, "open_streams") == 0

    # A stream in flight on worker a, then a SIGKILL: its live gauges go, every count stays.
    mock.script("mx-slow", {"chunks": ["x"] * 20, "delay": 0.5})
    cut: list[Exception] = []

    def read_slow_stream() -> None:
        try:
            stream_raw(svc.url, {"model": "mx-slow", "input": "hi"}, timeout=30)
        except httpx.HTTPError as exc:  # the worker serving it is killed
            cut.append(exc)

    with only_worker(svc, a):
        reader = threading.Thread(target=read_slow_stream)
        reader.start()
        wait_for(lambda: mock.requests("mx-slow"), 10, what="the slow stream to reach the backend")
    s = wait_for(lambda: (lambda s: s if gauge(s, "open_streams") == 1 else None)(scrape(svc.url)), 10,
                 what="the open stream to show")
    assert gauge(s, "requests_in_flight") == 2
    os.kill(a, signal.SIGKILL)
    reader.join(30)
    assert cut, "the stream should have been cut by the SIGKILL"
    new_a = wait_workers(svc, exclude={a})
    s = wait_for(lambda: (lambda s: s if gauge(s, "open_streams") == 0 else None)(scrape(svc.url)), 10,
                 what="the dead worker's open stream to go")
    assert gauge(s, "requests_in_flight") == 1
    assert requests_by_label(s) == traffic.expected, "a dead worker's counts were lost or doubled"
    for pid in new_a:
        with only_worker(svc, pid):
            traffic.mix()
    traffic.counted()

    # SIGHUP replaces every worker; the counts stay.
    svc.signal(signal.SIGHUP)
    wait_workers(svc, exclude=set(new_a))
    s = traffic.counted()
    assert sum(traffic.expected.values()) == 30
    print(f"\nmetrics: 30 requests over workers {a},{b}, {a} killed mid-stream, a reload: every count exact")


def _metrics_dirs(svc) -> set[str]:
    """Where the instance's workers keep their metrics files (they hold them open)."""
    return {
        os.path.dirname(f.path)
        for pid in worker_pids(svc)
        for f in psutil.Process(pid).open_files()
        if f.path.endswith(".db")
    }


def test_two_instances_never_share_counts(proxy_factory, mock):
    first, second = proxy_factory(), proxy_factory()
    for _ in range(3):
        assert post(first.url, {"model": "mock-echo", "input": "hi"}).status_code == 200
    assert post(second.url, {"model": "mock-echo", "input": "hi"}).status_code == 200
    assert requests_by_label(scrape(first.url)) == {("mock-echo", "200", "false"): 3}
    assert requests_by_label(scrape(second.url)) == {("mock-echo", "200", "false"): 1}
    [first_dir], [second_dir] = _metrics_dirs(first), _metrics_dirs(second)
    assert first_dir != second_dir
    assert first.stop() == 0
    assert not os.path.exists(first_dir), "the instance's temporary metrics directory outlived it"
    assert os.path.isdir(second_dir)


def test_other_routes_are_counted_by_template(proxy_factory):
    svc = proxy_factory(WEB_CONCURRENCY="1")
    for path in ("/v1/nope", "/random/abc", "/v1/responses/resp_123"):
        httpx.get(svc.url + path, timeout=10)
    s = scrape(svc.url)
    routes = {dict(ls)["route"]: v for (name, ls), v in s.items() if name == P + "requests_total"}
    assert routes["unmatched"] == 2
    assert routes["/v1/responses/{response_id}"] == 1
    assert "/v1/nope" not in routes and "/random/abc" not in routes
    assert worker_pids(svc)


def test_an_unusable_metrics_dir_stops_the_service_with_its_name(tmp_path, mock_backend):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeError, match="exited with 2"):
        start_proxy(mock_backend.url + "/v1", tmp_path / "proxy.log", METRICS_DIR=str(blocker / "metrics"))
    assert "invalid setting: METRICS_DIR" in (tmp_path / "proxy.log").read_text()
