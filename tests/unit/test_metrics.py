"""Metrics across forked processes writing to one multiprocess directory, as gunicorn workers do.

Every process that writes metrics is a forked child (the test process itself
only reads the files), so prometheus_client's per-process state never leaks
between tests.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy import metrics
from proxy.breaker import Breakers, SharedTable, Verdict

CTX = multiprocessing.get_context("fork")
GUARD = 30.0
P = metrics.PREFIX


@pytest.fixture
def mpdir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "metrics"
    monkeypatch.setenv(metrics.DIR_ENV, "")  # restored after the test
    metrics.prepare_multiprocess_dir(str(path))
    return path


@pytest.fixture
def table():
    t = SharedTable(16)
    yield t
    t.close()


def scrape(b: Breakers | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of ``render``, parsed by prometheus_client's own parser: (name, labels) → value."""
    b = b or Breakers(enabled=False, threshold=1, recovery_secs=1, probe_timeout_secs=1)
    body, content_type = metrics.render(b)
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def label_values(samples: dict, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls), _ in samples.items() if n == name and label in dict(ls)}


REQUESTS = [  # route, model, status, streaming, seconds
    ("/v1/responses", "mock-echo", 200, False, 0.02),
    ("/v1/responses", "mock-echo", 200, True, 0.7),
    ("/v1/responses", "other-model", 502, False, 0.3),
    ("/v1/responses", "-", 400, False, 0.001),
    ("/health", "-", 200, False, 0.0005),
]


def _work(n: int, open_requests: int = 0, open_streams: int = 0, ready=None, hang: bool = False) -> None:
    """One worker's traffic: ``n`` rounds of REQUESTS and more, some left in flight."""
    m = metrics.Metrics(model_labels=8)
    assert m.multiprocess
    for _ in range(n):
        for route, model, status, streaming, secs in REQUESTS:
            m.request_started()
            if streaming:
                m.stream_opened()
                m.first_event(route, secs / 2)
                m.stream_closed()
            m.request_finished(route, model, status, streaming, secs)
        m.upstream_error("status_5xx")
        m.upstream_error("timeout")
        m.store_op("get", "redis", True, 0.002)
        m.store_op("put", "redis", False, 0.2)
    for _ in range(open_requests):
        m.request_started()
    for _ in range(open_streams):
        m.stream_opened()
    if ready is not None:
        ready.set()
    if hang:
        time.sleep(GUARD)


def run(target, *args, **kw) -> None:
    p = CTX.Process(target=target, args=args, kwargs=kw)
    p.start()
    p.join(GUARD)
    assert p.exitcode == 0, f"child exited with {p.exitcode}"


def start_hanging(**kw) -> multiprocessing.Process:
    ready = CTX.Event()
    p = CTX.Process(target=_work, kwargs={**kw, "ready": ready, "hang": True})
    p.start()
    assert ready.wait(GUARD), "child did not get ready"
    return p


def test_counters_are_summed_over_processes(mpdir):
    for n in (1, 2, 3):
        run(_work, n)
    s = scrape()
    assert total(s, P + "requests_total", route="/v1/responses", model="mock-echo", status="200", streaming="false") == 6
    assert total(s, P + "requests_total", route="/v1/responses", model="mock-echo", status="200", streaming="true") == 6
    assert total(s, P + "requests_total", route="/v1/responses", model="other-model", status="502") == 6
    assert total(s, P + "requests_total", route="/health") == 6
    assert total(s, P + "requests_total") == 30
    assert total(s, P + "request_duration_seconds_count") == 30
    assert total(s, P + "request_duration_seconds_sum") == pytest.approx(6 * sum(r[4] for r in REQUESTS))
    assert total(s, P + "request_duration_seconds_bucket", route="/v1/responses", streaming="true", le="1.0") == 6
    assert total(s, P + "request_duration_seconds_bucket", route="/v1/responses", streaming="true", le="0.5") == 0
    assert total(s, P + "time_to_first_event_seconds_count", route="/v1/responses") == 6
    assert total(s, P + "upstream_errors_total", kind="status_5xx") == 6
    assert total(s, P + "upstream_errors_total", kind="timeout") == 6
    assert total(s, P + "store_operations_total", op="put", backend="redis") == 6
    assert total(s, P + "store_failures_total", op="put", backend="redis") == 6
    assert total(s, P + "store_failures_total", op="get", backend="redis") == 0
    assert total(s, P + "store_operation_seconds_count") == 12
    assert s[(P + "requests_in_flight", ())] == 0
    assert s[(P + "open_streams", ())] == 0


def test_a_killed_worker_keeps_its_counts_and_loses_its_live_gauges(mpdir):
    run(_work, 2)
    victim = start_hanging(n=3, open_requests=2, open_streams=1)
    survivor = start_hanging(n=1, open_requests=1)
    try:
        s = scrape()
        assert total(s, P + "requests_total") == 30
        assert s[(P + "requests_in_flight", ())] == 3
        assert s[(P + "open_streams", ())] == 1
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(GUARD)
        metrics.worker_exited(victim.pid)  # gunicorn's child_exit
        s = scrape()
        assert total(s, P + "requests_total") == 30, "a dead worker's counts were lost or doubled"
        assert s[(P + "requests_in_flight", ())] == 1
        assert s[(P + "open_streams", ())] == 0
        run(_work, 1)  # the respawned worker: another pid, its own files
        s = scrape()
        assert total(s, P + "requests_total") == 35
        assert total(s, P + "upstream_errors_total") == 2 * 7
    finally:
        for p in (victim, survivor):
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join(GUARD)


def _many_models(names: int, status: int) -> None:
    m = metrics.Metrics(model_labels=8)
    for i in range(names):
        m.request_started()
        m.request_finished("/v1/responses", f"junk-{status}-{i}", status, False, 0.01)
    for kind in range(100):
        m.upstream_error(f"kind-{kind}")
    for i in range(100):
        m.store_op(f"op-{i}", "redis", True, 0.001)


def test_label_values_are_bounded(mpdir):
    run(_many_models, 5000, 200)
    run(_many_models, 5000, 404)
    s = scrape()
    models = label_values(s, P + "requests_total", "model")
    assert len(models) == 8 + 1 and metrics.OTHER in models  # the first 8 answered names, then "other"
    assert not any(m.startswith("junk-404") for m in models), "names the backend refused got labels"
    assert total(s, P + "requests_total") == 10_000
    assert total(s, P + "requests_total", model=metrics.OTHER) == 10_000 - 8
    assert len(label_values(s, P + "upstream_errors_total", "kind")) <= 33
    assert total(s, P + "upstream_errors_total") == 200
    assert len(label_values(s, P + "store_operations_total", "op")) <= 33
    assert total(s, P + "store_operations_total") == 200


def test_breaker_state_is_read_from_the_shared_table(mpdir, table):
    def worker(dead: int, flaky: int) -> None:
        b = Breakers(enabled=True, threshold=3, recovery_secs=60, probe_timeout_secs=60, table=table)
        for model, n in (("dead", dead), ("flaky", flaky)):
            for _ in range(n):
                b.record(b.acquire(model), Verdict.MODEL_FAILURE)
            b.record(b.acquire("fine"), Verdict.SUCCESS)

    run(worker, 3, 1)
    run(worker, 0, 1)  # another worker: the numbers are the table's, never summed per process
    s = scrape(Breakers(enabled=True, threshold=3, recovery_secs=60, probe_timeout_secs=60, table=table))
    state = P + "breaker_state"
    assert s[(state, (("model", "dead"), ("scope", "model"), ("state", "open")))] == 1
    assert s[(state, (("model", "dead"), ("scope", "model"), ("state", "closed")))] == 0
    assert s[(state, (("model", "flaky"), ("scope", "model"), ("state", "closed")))] == 1
    assert s[(state, (("model", ""), ("scope", "host"), ("state", "closed")))] == 1
    assert s[(P + "breaker_opens_total", (("model", "dead"), ("scope", "model")))] == 1
    assert s[(P + "breaker_opens_total", (("model", ""), ("scope", "host")))] == 0
    assert s[(P + "breaker_consecutive_failures", (("model", "flaky"), ("scope", "model")))] == 2
    assert s[(P + "breaker_model_slots", (("kind", "used"),))] == 2
    assert s[(P + "breaker_model_slots", (("kind", "total"),))] == 16
    assert s[(P + "breaker_enabled", ())] == 1
    assert label_values(s, state, "model") == {"", "dead", "flaky"}  # models without failures have no slot


def test_prepare_removes_only_stale_files_and_keeps_them_on_a_reload(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.DIR_ENV, "")
    path = tmp_path / "m"
    path.mkdir()
    (path / "counter_123.db").write_bytes(b"x")
    (path / "notes.txt").write_text("not ours")
    metrics.prepare_multiprocess_dir(str(path))
    assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]
    assert os.environ[metrics.DIR_ENV] == str(path)
    run(_work, 1)
    files = sorted(p.name for p in path.glob("*.db"))
    assert files
    metrics.prepare_multiprocess_dir(str(path))  # SIGHUP re-reads the configuration
    assert sorted(p.name for p in path.glob("*.db")) == files


def test_each_instance_gets_its_own_directory():
    code = "from proxy import metrics; print(metrics.instance_dir()); metrics.remove_instance_dir()"
    dirs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(2)
    ]
    assert dirs[0] != dirs[1]
    assert not any(Path(d).exists() for d in dirs)  # removed at exit


def test_without_a_directory_one_process_counts_alone(monkeypatch):
    def single() -> None:
        os.environ.pop(metrics.DIR_ENV, None)
        m = metrics.Metrics()
        assert not m.multiprocess
        m.request_started()
        m.request_finished("/v1/responses", "x", 200, False, 0.1)
        b = Breakers(enabled=False, threshold=1, recovery_secs=1, probe_timeout_secs=1)
        body, _ = metrics.render(b, m)
        names = Counter(
            s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.value
        )
        assert names[P + "requests_total"] == 1
        assert names[P + "request_duration_seconds_count"] == 1

    run(single)
