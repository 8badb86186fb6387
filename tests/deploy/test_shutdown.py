"""How a stopping instance treats connections, seen on the wire of a real gunicorn (one worker,
so every connection reaches the worker being stopped), with no balancer in between.

- ``SHUTDOWN_LINGER_SECS`` (``proxy/worker.py``): a keep-alive connection idle when its
  worker starts shutting down still carries one more request, answered with
  ``Connection: close``; a WebSocket handshake on it gets an OpenAI-shaped 503; one left
  idle is closed when the linger is over; a stream in progress (its head already out, with no
  ``Connection: close`` in it) ends, then its connection lingers the same way, where uvicorn
  closed it right after the last byte. ``SHUTDOWN_LINGER_SECS=0`` is uvicorn's own
  behaviour, which closed it at once: the very request this fixes.
- ``SHUTDOWN_DRAIN_SECS`` (``proxy/drain.py``): on SIGTERM ``/health`` answers 503
  ``draining`` while requests are served as usual, then the instance stops; SIGHUP never
  drains; a second SIGTERM ends the drain at once.
- The draining flag is shared memory that a forked child's write reaches the parent through.
"""
from __future__ import annotations

import base64
import os
import re
import signal
import socket
import time

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from proxy.drain import DrainFlag
from proxy.settings import SettingsError, load
from tests.conformance_ws import TERMINALS
from tests.conftest import API_KEY
from tests.faults.helpers import reload_worker, worker_pids
from tests.http import auth, health, wait_for
from tests.wsclient import open_ws, read_response, recv, send

pytestmark = pytest.mark.slow

REQUEST = (
    "POST /v1/responses HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {key}\r\n"
    "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{body}"
)


def _request(text: str) -> bytes:
    body = orjson.dumps({"model": "mock-echo", "input": text}).decode()
    return REQUEST.format(key=API_KEY, length=len(body), body=body).encode()


def _read_response(s: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length response; raises ConnectionError if the server hangs up first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return head, body


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def _idle_connection_at_reload(service) -> tuple[socket.socket, int]:
    """A keep-alive connection that served one request, then SIGHUP: returns once the worker
    holding it has begun shutting down (its "Shutting down" line), the connection idle."""
    s = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    s.sendall(_request("first"))
    head, _ = _read_response(s)
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower(), head
    old = reload_worker(service)
    time.sleep(0.3)  # past uvicorn's 0.1 s pause after it told every connection to shut down
    return s, old


def test_an_idle_connection_still_carries_a_request_when_its_worker_stops(proxy_factory):
    service = proxy_factory(WEB_CONCURRENCY="1")
    s, old = _idle_connection_at_reload(service)
    with s:
        s.sendall(_request("after the signal"))
        head, body = _read_response(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"\r\nconnection: close" in head.lower(), head
        assert orjson.loads(body)["output"][0]["content"][0]["text"] == "You said: after the signal"
        assert _closed_by_server(s, 10)
    # The old worker had nothing left and exited; the new one serves.
    wait_for(lambda: old not in worker_pids(service), 30, what="the old worker to exit")
    assert httpx.get(service.url + "/health", timeout=10).status_code == 200


def _stream_request(text: str, model: str) -> bytes:
    body = orjson.dumps({"model": model, "input": text, "stream": True}).decode()
    return REQUEST.format(key=API_KEY, length=len(body), body=body).encode()


def _read_chunked_to_end(s: socket.socket, data: bytes) -> bytes:
    """The rest of a chunked body (``data``: what was read past its head), up to its last chunk."""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed mid-stream after {data[-200:]!r}")
        data += chunk
    return data


def _stream_across_reload(service) -> tuple[socket.socket, bytes]:
    """A stream whose head is out when its worker starts shutting down (SIGHUP), read to its end."""
    s = socket.create_connection(("127.0.0.1", service.port), timeout=15)
    s.sendall(_stream_request("one two three four five six seven eight", "mock-slow-400"))
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower(), head
    reload_worker(service)
    body = _read_chunked_to_end(s, rest)
    assert b"event: response.completed" in body, body[-500:]
    return s, body


def test_a_stream_in_progress_at_shutdown_ends_and_its_connection_lingers(proxy_factory):
    """The stream's head had no "Connection: close" to send: the connection must not close right
    after its last byte (a balancer may reuse it at once); the next request on it is answered."""
    service = proxy_factory(WEB_CONCURRENCY="1")
    s, _ = _stream_across_reload(service)
    with s:
        assert not _closed_by_server_within(s, 0.5), "closed right after the stream's last byte"
        s.sendall(_request("after the stream"))
        head, body = _read_response(s)
        assert head.startswith(b"HTTP/1.1 200") and b"\r\nconnection: close" in head.lower(), head
        assert orjson.loads(body)["output"][0]["content"][0]["text"] == "You said: after the stream"
        assert _closed_by_server(s, 10)


def test_without_the_linger_a_stream_in_progress_closes_its_connection_at_its_end(proxy_factory):
    """SHUTDOWN_LINGER_SECS=0 (uvicorn's behaviour): the stream is served whole, then the server hangs up."""
    service = proxy_factory(WEB_CONCURRENCY="1", SHUTDOWN_LINGER_SECS="0")
    s, _ = _stream_across_reload(service)
    with s:
        assert _closed_by_server(s, 10)


def test_without_the_linger_the_idle_connection_is_closed_under_the_client(proxy_factory):
    """SHUTDOWN_LINGER_SECS=0, uvicorn's behaviour: the request sent after the signal gets no answer."""
    service = proxy_factory(WEB_CONCURRENCY="1", SHUTDOWN_LINGER_SECS="0")
    s, _ = _idle_connection_at_reload(service)
    with s, pytest.raises(OSError):
        s.sendall(_request("after the signal"))
        _read_response(s)


def test_a_websocket_handshake_on_a_lingering_connection_is_refused_with_503(proxy_factory):
    service = proxy_factory(WEB_CONCURRENCY="1")
    s, _ = _idle_connection_at_reload(service)
    key = base64.b64encode(os.urandom(16)).decode()
    with s:
        s.sendall(
            f"GET /v1/responses HTTP/1.1\r\nHost: proxy\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
        )
        head, body = _read_response(s)
        assert head.startswith(b"HTTP/1.1 503") and b"connection: close" in head.lower(), head
        err = orjson.loads(body)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == "service_unavailable", err
        assert _closed_by_server(s, 10)


def test_a_websocket_response_in_progress_at_shutdown_finishes_then_the_socket_closes_1012(proxy_factory):
    """uvicorn closed every WebSocket at once on shutdown (1012), cutting the response it was
    streaming: the client lost the turn. Now the running response ends normally, a new
    ``response.create`` meanwhile gets a 503 ``error`` (the client retries it elsewhere), and
    then the server closes with 1012 (service restart)."""
    service = proxy_factory(WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT_SECS="60")
    words = "one two three four five six seven eight"
    with open_ws(service.url) as ws:
        send(ws, {"type": "response.create", "model": "mock-slow-400", "input": words})
        frames = [recv(ws)]
        while frames[-1]["type"] != "response.output_text.delta":
            frames.append(recv(ws))
        old = reload_worker(service)
        time.sleep(0.3)  # past uvicorn's 0.1 s pause after it told every connection to shut down
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "while it stops"})
        refusals = []
        while frames[-1]["type"] not in TERMINALS:
            frame = recv(ws)
            (refusals if frame["type"] == "error" else frames).append(frame)
        assert frames[-1]["type"] == "response.completed", frames[-1]
        text = "".join(f["delta"] for f in frames if f["type"] == "response.output_text.delta")
        assert text == frames[-1]["response"]["output"][0]["content"][0]["text"] == f"You said: {words}"
        refusals += _frames_until_closed(ws, 30)
        assert [(r["status"], r["error"]["type"], r["error"]["code"]) for r in refusals] == [
            (503, "server_error", "service_unavailable")], refusals
        assert ws.close_code == 1012, (ws.close_code, ws.close_reason)
    wait_for(lambda: old not in worker_pids(service), 30, what="the old worker to exit")


def _frames_until_closed(ws, timeout: float) -> list[dict]:
    """Every frame the server still sends before its close frame (each awaited ``timeout`` s at most)."""
    out = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            out.append(recv(ws, timeout))
    assert closed.value.rcvd is not None, f"closed with no close frame: {closed.value!r}"
    return out


def test_an_idle_websocket_is_closed_1012_as_soon_as_its_worker_stops(proxy_factory):
    """No response running: closed at once, not after the graceful timeout (60 s here)."""
    service = proxy_factory(WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT_SECS="60")
    with open_ws(service.url) as ws:
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "one turn"})
        assert read_response(ws)[-1]["type"] == "response.completed"
        (old,) = worker_pids(service)
        service.signal(signal.SIGHUP)
        assert _frames_until_closed(ws, 15) == []
        assert ws.close_code == 1012, (ws.close_code, ws.close_reason)
    wait_for(lambda: old not in worker_pids(service), 30, what="the old worker to exit")


def test_a_connection_left_idle_is_closed_when_the_linger_is_over(proxy_factory):
    service = proxy_factory(WEB_CONCURRENCY="1", SHUTDOWN_LINGER_SECS="2")
    s, old = _idle_connection_at_reload(service)
    with s:
        assert not _closed_by_server_within(s, 1.0), "closed before the linger was over"
        assert _closed_by_server(s, 15)
    wait_for(lambda: old not in worker_pids(service), 30, what="the old worker to exit")


def _closed_by_server_within(s: socket.socket, secs: float) -> bool:
    try:
        return _closed_by_server(s, secs)
    except TimeoutError:
        return False


def test_sigterm_drains_health_first_and_serves_meanwhile(proxy_factory):
    service = proxy_factory(SHUTDOWN_DRAIN_SECS="3")
    sent = time.time()
    service.signal(signal.SIGTERM)
    wait_for(lambda: health(service.url) == (503, {**health(service.url)[1], "status": "draining"}), 10,
             interval=0.02, what="/health to say draining")
    seen = []
    with httpx.Client(timeout=10) as client:
        while service.proc.poll() is None:
            try:
                status = client.get(service.url + "/health").json()["status"]
                answer = client.post(service.url + "/v1/responses", json={"model": "mock-echo", "input": "x"},
                                     headers=auth())
                seen.append((time.time() - sent, status, answer.status_code))
            except httpx.TransportError:
                seen.append((time.time() - sent, "refused", None))
            time.sleep(0.1)
    assert service.proc.returncode == 0
    assert seen and all(status in ("draining", "refused") for _, status, _ in seen), seen
    assert all(code == 200 for _, status, code in seen if status == "draining"), seen
    # The listener stayed open for the whole drain (contention can only make it later).
    refused = [t for t, status, _ in seen if status == "refused"]
    assert not refused or refused[0] >= 3.0, seen
    assert 'Draining for 3 s before stopping: /health answers 503 "draining"' in service.log_text()


def test_sighup_never_drains_and_a_second_sigterm_cuts_the_drain_short(proxy_factory):
    service = proxy_factory(SHUTDOWN_DRAIN_SECS="120")
    old = set(worker_pids(service))
    service.signal(signal.SIGHUP)
    statuses = []

    def replaced() -> bool:
        statuses.append(health(service.url)[1]["status"])
        now = set(worker_pids(service))
        return len(now) == 2 and not now & old

    wait_for(replaced, 60, interval=0.1, what="new workers")
    assert set(statuses) == {"healthy"}, statuses
    assert "Draining" not in service.log_text()
    # SIGTERM drains (120 s); a second one stops it now, cleanly.
    service.signal(signal.SIGTERM)
    wait_for(lambda: health(service.url)[1]["status"] == "draining", 10, what="the drain")
    service.signal(signal.SIGTERM)
    assert service.proc.wait(60) == 0, service.log_text()[-2000:]


def test_the_draining_flag_crosses_fork():
    flag = DrainFlag()
    assert not flag.active
    pid = os.fork()
    if pid == 0:  # the child, as a worker would: write, and leave at once
        flag.start()
        os._exit(0)
    os.waitpid(pid, 0)
    assert flag.active


@pytest.mark.parametrize("name", ["SHUTDOWN_LINGER_SECS", "SHUTDOWN_DRAIN_SECS"])
def test_bad_shutdown_settings_name_the_variable(name):
    with pytest.raises(SettingsError, match=name):
        load({name: "soon"})
    with pytest.raises(SettingsError, match=name):
        load({name: "-1"})
    assert (load({}).shutdown_linger_secs, load({}).shutdown_drain_secs) == (10.0, 0.0)
