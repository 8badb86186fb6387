"""Redis stopped mid-run under a real proxy (gunicorn, 2 workers), killed or frozen: every request
that must read the store gets a 503 ``store_unavailable`` with ``Retry-After`` promptly (within a
few store timeouts, never a hang) and never reaches the backend; a request that only writes is
still answered in full, its lost write logged (no key) and counted in ``/metrics``; the circuit
breaker is untouched; when Redis is back on the same port the same workers serve again.

The time bound is a hang check, generous for a shared machine, not a performance test.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.conformance import check_stream, parse_sse
from tests.faults.helpers import worker_pids
from tests.integration.test_metrics import scrape
from tests.redis_server import RedisServer
from tests.state_kit import KEY_A, call, get, post, upstream
from tests.wsclient import open_ws, read_response, send

TIMEOUT_SECS = 1.0
HANG_BOUND_SECS = 4 * TIMEOUT_SECS + 6  # two waits (a stale connection, then a fresh one) and slack
P = "responses_proxy_"


def _reads(s: dict[str, Any], model: str) -> list[tuple[str, str, Any]]:
    rid, cid = s["id"], s["cid"]
    return [
        ("POST", "/v1/responses", {"model": model, "input": "x", "previous_response_id": rid}),
        ("POST", "/v1/responses", {"model": model, "input": "x", "previous_response_id": rid, "stream": True}),
        ("POST", "/v1/responses", {"model": model, "input": "x", "conversation": cid}),
        ("POST", "/v1/responses", {"model": model, "input": [{"type": "item_reference", "id": s["out"]}]}),
        ("GET", f"/v1/responses/{rid}", None),
        ("DELETE", f"/v1/responses/{rid}", None),
        ("GET", f"/v1/responses/{rid}/input_items", None),
        ("POST", "/v1/conversations", {"items": [{"role": "user", "content": "new"}]}),
        ("GET", f"/v1/conversations/{cid}", None),
        ("POST", f"/v1/conversations/{cid}", {"metadata": {"a": "b"}}),
        ("DELETE", f"/v1/conversations/{cid}", None),
        ("POST", f"/v1/conversations/{cid}/items", {"items": [{"role": "user", "content": "more"}]}),
        ("GET", f"/v1/conversations/{cid}/items", None),
        ("GET", f"/v1/conversations/{cid}/items/{s['iid']}", None),
        ("DELETE", f"/v1/conversations/{cid}/items/{s['iid']}", None),
    ]


def _failures(url: str, op: str) -> float:
    return scrape(url).get((P + "store_failures_total", (("backend", "redis"), ("op", op))), 0.0)


def _health_untouched(url: str) -> None:
    r = call(url, "GET", "/health")
    doc = r.json()
    assert r.status_code == 200 and doc["status"] == "healthy", doc
    assert doc["circuit_breaker"]["is_open"] is False and doc["circuit_breaker"]["consecutive_failures"] == 0
    assert doc["open_models"] == []


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_redis_stopped_mid_run(proxy_factory, mock, how):
    with RedisServer() as server:
        svc = proxy_factory(RESPONSE_STORE_URL=server.url, RESPONSE_STORE_TIMEOUT_SECS=str(TIMEOUT_SECS))
        model = "fault-" + os.urandom(3).hex()
        first = post(svc.url, "/v1/responses", {"model": model, "input": "before the fault"})
        assert first.status_code == 200
        conv = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "kept"}]}).json()
        s = {"id": first.json()["id"], "out": first.json()["output"][0]["id"], "cid": conv["id"]}
        s["iid"] = get(svc.url, f"/v1/conversations/{conv['id']}/items").json()["data"][0]["id"]
        workers = worker_pids(svc)
        calls = len(upstream(mock, model))

        if how == "SIGSTOP":
            server.send(signal.SIGSTOP)  # alive but silent: every wait must time out
        else:
            server.stop(signal.SIGKILL)
        try:
            for method, path, body in _reads(s, model):
                started = time.monotonic()
                r = call(svc.url, method, path, body=body, **{"X-Request-ID": f"read-{os.urandom(4).hex()}"})
                took = time.monotonic() - started
                assert r.status_code == 503, (method, path, r.status_code, r.text[:300])
                assert r.headers["content-type"].startswith("application/json")
                assert r.json() == {"error": {"message": "The response store is unavailable; retry shortly.",
                                              "type": "server_error", "param": None, "code": "store_unavailable"}}
                assert int(r.headers["retry-after"]) >= 1
                assert took < HANG_BOUND_SECS, f"{method} {path} took {took:.1f} s"
            # WebSocket mode and compaction read through the same code: the same 503, as their frames.
            with open_ws(svc.url) as ws:
                send(ws, {"type": "response.create", "model": model, "input": "x", "previous_response_id": s["id"]})
                [frame] = read_response(ws, timeout=HANG_BOUND_SECS)
                assert (frame["type"], frame["status"]) == ("error", 503), frame
                assert frame["error"]["code"] == "store_unavailable", frame
                send(ws, {"type": "response.create", "model": model, "input": "still usable?", "store": False})
                assert read_response(ws)[-1]["type"] == "response.completed"
            r = call(svc.url, "POST", "/v1/responses/compact", body={"model": model, "input": "x",
                                                                      "previous_response_id": s["id"]})
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
            assert len(upstream(mock, model)) == calls + 1, "a request that could not read its context went upstream"

            # Requests that only write are answered in full; the lost writes are logged and counted.
            failed_before = _failures(svc.url, "put_response")
            json_answer = post(svc.url, "/v1/responses", {"model": model, "input": "only writes"},
                               **{"X-Request-ID": "write-json-1"})
            assert json_answer.status_code == 200 and json_answer.json()["status"] == "completed"
            assert json_answer.json()["output"][0]["content"][0]["text"] == "You said: only writes"
            streamed = post(svc.url, "/v1/responses", {"model": model, "input": "streamed write", "stream": True},
                            **{"X-Request-ID": "write-sse-1"})
            assert streamed.status_code == 200
            final = check_stream(parse_sse(streamed.content))
            assert final["status"] == "completed" and final["output"][0]["content"][0]["text"].endswith("write")
            unstored = post(svc.url, "/v1/responses", {"model": model, "input": "no store", "store": False})
            assert unstored.status_code == 200
            assert _failures(svc.url, "put_response") == failed_before + 2
            log = svc.log_text()
            for rid, resp_id in (("write-json-1", json_answer.json()["id"]), ("write-sse-1", final["id"])):
                line = next(ln for ln in log.splitlines() if f"request_id={rid}: response {resp_id}" in ln)
                assert "answered but not stored (redis store)" in line and "WARNING" in line
            assert KEY_A not in log
            _health_untouched(svc.url)
        finally:
            if how == "SIGSTOP":
                server.send(signal.SIGCONT)
            else:
                server.start()  # the same port, empty (no persistence)

        # Recovery, by the same workers.
        again = post(svc.url, "/v1/responses", {"model": model, "input": "after the fault"})
        assert again.status_code == 200
        rid = again.json()["id"]
        assert get(svc.url, f"/v1/responses/{rid}").content == again.content
        chained = post(svc.url, "/v1/responses", {"model": model, "input": "chained", "previous_response_id": rid})
        assert chained.status_code == 200
        assert upstream(mock, model)[-1][-3:] == [
            {"role": "user", "content": "after the fault"}, {"role": "assistant", "content": "You said: after the fault"},
            {"role": "user", "content": "chained"}]
        fresh = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "back"}]})
        assert fresh.status_code == 200
        if how == "SIGSTOP":  # nothing was lost: what was there before is there again
            assert get(svc.url, f"/v1/responses/{s['id']}").content == first.content
        assert worker_pids(svc) == workers, "recovery must not need a worker restart"
        _health_untouched(svc.url)
