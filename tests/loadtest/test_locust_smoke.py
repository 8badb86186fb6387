"""Smoke test of the load-test scenarios: ``loadtest/locustfile.py`` runs headless for
10 s against the real process tree (mock backend + gunicorn with 2 Uvicorn workers),
and every request of every scenario must succeed.

This guards the harness itself (a scenario that always fails or never runs would make
every later measurement meaningless) and the proxy under concurrent mixed traffic.
It asserts counts, never timings.
"""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.checks import json_failure, stream_failure
from proxy.devtools import ROOT, start_mock, start_proxy

pytestmark = pytest.mark.slow

SCENARIO_NAMES = {"json", "stream-50", "tool-call", "tool-result"}


def test_locust_scenarios_run_without_failures(tmp_path: Path) -> None:
    mock = start_mock(tmp_path / "mock.log", workers=1)
    try:
        proxy = start_proxy(mock.url + "/v1", tmp_path / "proxy.log", WEB_CONCURRENCY="2", LOG_LEVEL="warning")
        try:
            locust = Path(sys.executable).with_name("locust")
            prefix = tmp_path / "locust"
            run = subprocess.run(
                [
                    str(locust), "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
                    "-u", "20", "-r", "20", "-t", "10s", "--stop-timeout", "10",
                    "--host", proxy.url, "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
                ],
                cwd=ROOT, capture_output=True, text=True, timeout=120,
            )
            assert proxy.proc.poll() is None, "the proxy died under load:\n" + proxy.log_text()[-3000:]
        finally:
            proxy.stop()
    finally:
        mock.stop()

    output = run.stdout[-3000:] + run.stderr[-3000:]
    stats_file = prefix.with_name("locust_stats.csv")
    assert stats_file.exists(), output
    rows = {row["Name"]: row for row in csv.DictReader(stats_file.open())}
    total = rows["Aggregated"]
    failures_file = prefix.with_name("locust_failures.csv")
    failures = failures_file.read_text() if failures_file.exists() else ""
    assert int(total["Failure Count"]) == 0, failures + output
    assert run.returncode == 0, output
    # Every scenario ran, and enough requests for the run to mean something
    # (a healthy run on two cores makes thousands; a stalled proxy makes a handful).
    assert SCENARIO_NAMES <= set(rows), sorted(rows)
    assert int(total["Request Count"]) >= 200, output
    for name in SCENARIO_NAMES:
        assert int(rows[name]["Request Count"]) >= 5, (name, rows[name])


COMPLETED = (
    b"event: response.created\ndata: {}\n\n"
    b"event: response.output_text.delta\ndata: {}\n\n"
    b'event: response.completed\ndata: {"type":"response.completed"}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize(
    "status, ctype, body, ok",
    [
        (200, "text/event-stream; charset=utf-8", COMPLETED, True),
        (200, "text/event-stream", COMPLETED.replace(b"response.completed", b"response.failed"), False),
        (200, "text/event-stream", COMPLETED.replace(b"response.completed", b"response.incomplete"), False),
        (200, "text/event-stream", COMPLETED[: -len(b"data: [DONE]\n\n")], False),  # no [DONE]
        (200, "text/event-stream", COMPLETED[:40], False),  # cut short
        (502, "text/event-stream", COMPLETED, False),
        (200, "application/json", COMPLETED, False),
    ],
)
def test_stream_success_check(status: int, ctype: str, body: bytes, ok: bool) -> None:
    """The scenarios' definition of a successful stream (what the smoke test relies on)."""
    assert (stream_failure(status, ctype, body) is None) is ok


@pytest.mark.parametrize(
    "status, body, ok",
    [
        (200, b'{"status":"completed","output":[]}', True),
        (200, b'{"status":"incomplete"}', False),
        (200, b"not json", False),
        (500, b'{"status":"completed"}', False),
    ],
)
def test_json_success_check(status: int, body: bytes, ok: bool) -> None:
    assert (json_failure(status, body) is None) is ok
