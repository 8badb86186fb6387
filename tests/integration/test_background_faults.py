"""A background job whose store fails while it runs: real gunicorn, a real ``redis-server`` of
the test's own, paused with SIGSTOP. A short outage is ridden out (the job's writes are retried
and its log is whole); a long one stops the job, closes its backend request, and the response
ends ``failed`` with a clear error once the store is back. The workers survive both."""
from __future__ import annotations

import signal
import time

from proxy.background.bodies import LOST_MESSAGE, STORE_LOST_MESSAGE
from tests.background_kit import poll, read_some, slow_text, start, stream_events, wait_upstream
from tests.conformance import check_stream
from tests.redis_server import RedisServer


def test_a_short_store_outage_is_ridden_out_with_every_event_kept(proxy_factory, mock):
    with RedisServer() as server:
        svc = start(proxy_factory, RESPONSE_STORE_URL=server.url, BACKGROUND_LEASE_SECS="5")
        text = "outage " + slow_text(4.0)
        live = read_some(svc, {"model": "mock-slow-100", "input": text}, 4)
        rid = live[0]["response"]["id"]
        server.send(signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            server.send(signal.SIGCONT)
        final = poll(svc, rid)
        assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "You said: " + text
        full = stream_events(svc, rid)
        assert check_stream(full) == final and full[:4] == live


def test_a_long_store_outage_stops_the_job_and_it_ends_failed(proxy_factory, mock):
    with RedisServer() as server:
        svc = start(
            proxy_factory, RESPONSE_STORE_URL=server.url, BACKGROUND_LEASE_SECS="3", RESPONSE_STORE_TIMEOUT_SECS="0.5"
        )
        text = slow_text(60)
        live = read_some(svc, {"model": "mock-slow-100", "input": text}, 4)
        rid = live[0]["response"]["id"]
        server.send(signal.SIGSTOP)
        try:
            record = wait_upstream(mock, text, ended=True, timeout=60)  # the job gave up: its request closed
        finally:
            server.send(signal.SIGCONT)
        assert record["disconnected"] and not record["completed"]
        final = poll(svc, rid, timeout=30)
        assert final["status"] == "failed"
        assert final["error"]["message"] in (STORE_LOST_MESSAGE, LOST_MESSAGE)
        # Both workers are still there and background mode works again.
        again = read_some(svc, {"model": "mock-echo", "input": "after the outage"}, 3)
        assert poll(svc, again[0]["response"]["id"])["status"] == "completed"
        assert "Traceback" not in svc.log_text()
