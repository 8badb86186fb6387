"""Time and cancellation: unreachable / hanging / silent backends, departing clients, signals."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx
import orjson
import pytest

from proxy.devtools import free_port
from tests.conformance import check_stream, parse_sse
from tests.conftest import API_KEY
from tests.faults.helpers import completed_for, stream
from tests.http import auth, error_of, post, wait_for

SLOW = [f"t{i} " for i in range(100)]


def _record(mock, model: str, timeout: float = 10.0) -> dict:
    """The backend's record of the (single) request for ``model``, once it ended."""
    return wait_for(
        lambda: next((r for r in mock.requests(model) if r["ended_at"] is not None), None),
        timeout, what=f"the backend request for {model} to end",
    )


def test_unreachable_backend_is_502_fast(proxy_factory):
    svc = proxy_factory(backend_url=f"http://127.0.0.1:{free_port()}/v1", CIRCUIT_BREAKER_THRESHOLD="1000")
    for body in ({"model": "m", "input": "x"}, {"model": "m", "input": "x", "stream": True}):
        t0 = time.monotonic()
        r = post(svc.url, body, timeout=15)
        elapsed = time.monotonic() - t0
        assert r.status_code == 502, r.text
        err = error_of(r)
        assert err["code"] == "backend_unreachable" and err["type"] == "server_error"
        assert elapsed < 2.0, elapsed
    print(f"\nunreachable backend: 502 in {elapsed * 1000:.0f} ms")


@pytest.mark.slow
def test_connect_timeout_is_502(proxy_factory):
    """A backend whose accept queue is full: SYNs are dropped, connect() times out (10 s in the proxy)."""
    with socket.socket() as blackhole, socket.socket() as filler:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        port = blackhole.getsockname()[1]
        filler.connect(("127.0.0.1", port))  # takes the only slot of the queue
        svc = proxy_factory(backend_url=f"http://127.0.0.1:{port}/v1", CIRCUIT_BREAKER_THRESHOLD="1000")
        t0 = time.monotonic()
        r = post(svc.url, {"model": "m", "input": "x"}, timeout=20)
        elapsed = time.monotonic() - t0
    print(f"\nconnect timeout: {r.status_code} {r.json()['error']['code']} after {elapsed:.1f} s")
    assert elapsed < 12, elapsed
    assert r.status_code == 502, r.text
    assert error_of(r)["type"] == "server_error"


def test_backend_hanging_before_first_byte_is_504_within_backend_timeout(proxy_factory, mock):
    # BACKEND_TIMEOUT_SECS bounds a whole JSON call, headers included; the idle
    # timeout is left at its default (300 s) so that only the total deadline can fire.
    svc = proxy_factory(BACKEND_TIMEOUT_SECS="2", CIRCUIT_BREAKER_THRESHOLD="1000")
    mock.script("to-hang", {"hang": True})
    t0 = time.monotonic()
    try:
        r = post(svc.url, {"model": "to-hang", "input": "x"}, timeout=12)
    except httpx.ReadTimeout:
        pytest.fail(f"no answer after {time.monotonic() - t0:.1f} s with BACKEND_TIMEOUT_SECS=2 (backend sent no headers)")
    elapsed = time.monotonic() - t0
    print(f"\nhang before first byte: {r.status_code} after {elapsed:.2f} s (BACKEND_TIMEOUT_SECS=2)")
    assert r.status_code == 504, r.text
    assert error_of(r)["code"] == "backend_timeout"
    assert 1.9 <= elapsed < 3.5, elapsed
    assert _record(mock, "to-hang", 3)["disconnected"] is True, "the proxy did not close the upstream request"


def test_backend_slow_body_is_504_at_backend_timeout(proxy_factory, mock):
    """A streamed upstream that keeps trickling: the JSON client's total deadline still holds."""
    svc = proxy_factory(BACKEND_TIMEOUT_SECS="2", CIRCUIT_BREAKER_THRESHOLD="1000", JSON_UPSTREAM="stream")
    mock.script("to-slowbody", {"chunks": SLOW, "delay": 0.1})
    t0 = time.monotonic()
    r = post(svc.url, {"model": "to-slowbody", "input": "x"}, timeout=12)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert error_of(r)["code"] == "backend_timeout"
    assert 1.9 <= elapsed < 3.5, elapsed
    assert _record(mock, "to-slowbody")["disconnected"] is True


def test_silent_stream_gets_keepalives_then_fails_at_idle_timeout(proxy_factory, mock):
    svc = proxy_factory(SSE_KEEPALIVE_SECS="0.5", BACKEND_IDLE_TIMEOUT_SECS="2", CIRCUIT_BREAKER_THRESHOLD="1000")
    # The role chunk, then 30 s of silence.
    mock.script("to-silent", {"chunks": ["never"], "delay": 30})
    t0 = time.monotonic()
    res = stream(svc.url, {"model": "to-silent", "input": "x"}, timeout=15)
    elapsed = time.monotonic() - t0
    assert res.status == 200
    events = parse_sse(res.raw)
    final = check_stream(events)
    types = [e["type"] for e in events]
    assert types[-2:] == ["error", "response.failed"], types
    assert "response.completed" not in types
    # The spec's error codes have no "timeout": server_error, and the message says what happened.
    assert final["status"] == "failed" and final["error"]["code"] == "server_error", final["error"]
    assert "sent nothing for 2 s" in final["error"]["message"], final["error"]
    assert events[-2]["message"] == final["error"]["message"]
    # Keep-alive comments fill the silence, about every 0.5 s.
    ka_times = [t - t0 for t, chunk in res.arrivals if chunk.startswith(b": keep-alive")]
    gaps = [b - a for a, b in zip(ka_times, ka_times[1:])]
    print(f"\nsilent stream: {res.keepalives} keep-alives at {[round(t, 2) for t in ka_times]} s, failed after {elapsed:.2f} s")
    assert res.keepalives >= 3, res.raw
    assert all(0.3 <= g <= 1.0 for g in gaps), gaps
    assert 1.9 <= elapsed < 3.5, elapsed
    assert _record(mock, "to-silent")["disconnected"] is True, "the proxy did not close the silent upstream"


def _leave_stream_after(url: str, body: dict, n_deltas: int) -> float:
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", url + "/v1/responses", json={**body, "stream": True}, headers=auth()) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith("event: response.output_text.delta"):
                    seen += 1
                    if seen >= n_deltas:
                        break
        left = time.time()  # the connection is closed once the response is closed unread
    return left


def test_client_leaving_mid_stream_closes_upstream_within_1s(fproxy, mock):
    mock.script("to-leave-stream", {"chunks": SLOW, "delay": 0.1})
    left = _leave_stream_after(fproxy.url, {"model": "to-leave-stream", "input": "x"}, 3)
    rec = _record(mock, "to-leave-stream")
    delay = rec["ended_at"] - left
    print(f"\nclient left mid-stream: upstream closed {delay * 1000:.0f} ms later")
    assert rec["disconnected"] is True and rec["completed"] is False
    assert delay < 1.0, delay


def _abandon(port: int, body: dict, after: float) -> float:
    """Send a request on a raw socket, wait ``after`` seconds, hang up; return when."""
    payload = orjson.dumps(body)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + API_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(payload)).encode()
            + b"\r\n\r\n" + payload
        )
        time.sleep(after)
    return time.time()


@pytest.mark.parametrize(
    "streaming,phase",
    [(False, "body"), (False, "headers"), (True, "headers")],
    ids=["json-slow-body", "json-before-headers", "sse-before-headers"],
)
def test_client_abandoning_a_waiting_request_closes_upstream_within_1s(fproxy, mock, phase, streaming):
    """The client hangs up while the backend is slow: sending its body, or before even its headers."""
    model = f"to-abandon-{phase}-{int(streaming)}"
    script = {"chunks": SLOW, "delay": 0.1} if phase == "body" else {"text": "late", "first_byte_delay": 5}
    mock.script(model, script)
    left = _abandon(fproxy.port, {"model": model, "input": "x", "stream": streaming}, 1.0)
    rec = _record(mock, model, 10)
    delay = rec["ended_at"] - left
    print(f"\nclient abandoned ({'sse' if streaming else 'json'}, backend slow in {phase}): upstream closed {delay * 1000:.0f} ms later")
    assert rec["disconnected"] is True and rec["completed"] is False, rec
    assert delay < 1.0, f"upstream kept open {delay:.2f} s after the client left"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except ConnectionRefusedError:
        return True


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,group",
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-to-process-group"],
)
def test_graceful_shutdown_finishes_inflight_stream(proxy_factory, mock, sig, group):
    """SIGTERM/SIGINT to the master; the group case is Ctrl-C in a terminal (every worker gets SIGINT too)."""
    svc = proxy_factory(GRACEFUL_TIMEOUT_SECS="15")
    mock.script("to-drain", {"chunks": [f"d{i} " for i in range(30)], "delay": 0.1})
    started = threading.Event()
    out: dict = {}

    def client() -> None:
        try:
            with httpx.Client(timeout=20) as c:
                with c.stream(
                    "POST", svc.url + "/v1/responses", json={"model": "to-drain", "input": "x", "stream": True}, headers=auth()
                ) as r:
                    chunks = []
                    for chunk in r.iter_raw():
                        chunks.append(chunk)
                        if b"output_text.delta" in chunk:
                            started.set()
                    out["raw"] = b"".join(chunks)
        except Exception as exc:  # reported by the assertions below
            out["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=client)
    thread.start()
    assert started.wait(10)
    t0 = time.monotonic()
    if group:
        os.killpg(svc.pid, sig)
    else:
        svc.signal(sig)
    wait_for(lambda: _refused(svc.port), 3, what="new connections to be refused")
    refused_after = time.monotonic() - t0
    thread.join(15)
    stream_done = time.monotonic() - t0
    assert "error" not in out, f"in-flight stream broke: {out.get('error')!r}"
    events = parse_sse(out["raw"])
    assert events[-1]["type"] == "response.completed", [e["type"] for e in events][-3:]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "".join(
        f"d{i} " for i in range(30)
    )
    code = svc.proc.wait(15)
    exited = time.monotonic() - t0
    print(
        f"\n{sig.name}{' (process group)' if group else ''}: refused new connections after {refused_after:.2f} s, stream completed after "
        f"{stream_done:.2f} s, master exited {code} after {exited:.2f} s"
    )
    assert code == 0
    assert exited < 15


@pytest.mark.slow
def test_stream_longer_than_graceful_timeout_is_cut_and_master_exits(proxy_factory, mock):
    svc = proxy_factory(GRACEFUL_TIMEOUT_SECS="2")
    mock.script("to-cut", {"chunks": SLOW, "delay": 0.1})
    out: dict = {}

    def client() -> None:
        try:
            out["res"] = stream(svc.url, {"model": "to-cut", "input": "x"}, timeout=20)
        except Exception as exc:  # a cut stream may surface as a protocol error
            out["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    wait_for(lambda: mock.requests("to-cut"), 5, what="the stream to start")
    time.sleep(0.3)
    t0 = time.monotonic()
    svc.signal(signal.SIGTERM)
    code = svc.proc.wait(10)
    exited = time.monotonic() - t0
    thread.join(10)
    rec = _record(mock, "to-cut", 5)
    print(f"\nstream past the graceful timeout: master exited {code} after {exited:.2f} s; client saw "
          f"{out.get('error')!r} / {len(out['res'].events) if 'res' in out else '-'} events")
    assert exited < 2 + 2.5, exited
    assert code == 0, code
    assert rec["disconnected"] is True, "the upstream request outlived the proxy"
    assert not thread.is_alive()


def test_client_leaving_while_sending_its_body(fproxy, mock):
    """Content-Length promises more than is sent, then the client hangs up: one metrics line, no traceback."""
    rid = "to-partial-" + os.urandom(4).hex()
    with socket.create_connection(("127.0.0.1", fproxy.port)) as s:
        s.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
            + b"\r\nX-Request-ID: " + rid.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"model": "to-partial", "inp'
        )
        time.sleep(0.3)
    lines = completed_for(fproxy, rid, timeout=5)
    assert len(lines) == 1, lines
    assert mock.requests("to-partial") == []
    tail = fproxy.log_text().splitlines()[-50:]
    assert not [line for line in tail if "Traceback" in line or "unhandled error" in line], "\n".join(tail)
