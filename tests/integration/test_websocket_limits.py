"""WebSocket mode at its edges: authentication at the handshake, frame size, a client that
vanishes, the connection's lifetime, keep-alive pings, and the metrics line — each against
real gunicorn processes with the settings lowered so the limits are reached in seconds."""
from __future__ import annotations

import base64
import os
import re
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed

from proxy.devtools import start_proxy
from proxy.logs import mask_key
from tests.conformance_ws import check_ws_error, check_ws_stream
from tests.conftest import API_KEY
from tests.http import health, wait_for
from tests.wsclient import open_ws, read_response, recv, send

MAX_BODY = 65536
MAX_SECS = 6
OPERATOR_KEY = "sk-operator-0123456789-UPSTREAM"
CLIENT_KEY = "sk-client-0123456789abcdef"


@pytest.fixture(scope="module")
def tight(mock_backend, logs_dir):
    """A proxy whose WebSocket limits are reached in seconds."""
    service = start_proxy(
        mock_backend.url + "/v1", logs_dir / f"proxy-ws-tight-{os.urandom(3).hex()}.log",
        MAX_BODY_BYTES=str(MAX_BODY), WEBSOCKET_MAX_SECS=str(MAX_SECS), WEBSOCKET_PING_SECS="1",
    )
    yield service
    service.stop()


def _metrics_lines(service, model: str) -> list[str]:
    return [line for line in service.log_text().splitlines() if "request_completed:" in line and f"model={model}," in line]


def test_a_handshake_without_a_key_is_refused_with_the_posts_401(tight):
    with open_ws(tight.url, key="") as ws:
        send(ws, {"type": "response.create", "model": "ws-nokey", "input": "x"})
        error = check_ws_error(recv(ws), 401, "missing_api_key")
        assert "API key" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws, timeout=10)
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "missing_api_key"


def test_operator_mode_checks_the_handshake_key_and_sends_the_operators(mock_backend, logs_dir, mock):
    service = start_proxy(
        mock_backend.url + "/v1", logs_dir / f"proxy-ws-operator-{os.urandom(3).hex()}.log",
        BACKEND_API_KEY=OPERATOR_KEY, PROXY_API_KEYS=CLIENT_KEY,
    )
    try:
        with open_ws(service.url, key="sk-wrong-key-0123456789") as ws:
            send(ws, {"type": "response.create", "model": "ws-op", "input": "x"})
            check_ws_error(recv(ws), 401, "invalid_api_key")
        with open_ws(service.url, key=CLIENT_KEY) as ws:
            send(ws, {"type": "response.create", "model": "ws-op", "input": "x"})
            assert check_ws_stream(read_response(ws))["status"] == "completed"
        (record,) = mock.requests("ws-op")
        assert record["headers"]["authorization"] == f"Bearer {OPERATOR_KEY}"
        log = service.log_text()
        assert OPERATOR_KEY not in log and CLIENT_KEY not in log
        assert len(_metrics_lines(service, "ws-op")) == 1
    finally:
        service.stop()


def test_a_frame_over_the_body_limit_gets_413_and_a_huge_one_closes_cleanly(tight, mock):
    with open_ws(tight.url) as ws:
        send(ws, {"type": "response.create", "model": "ws-big", "input": "x" * (MAX_BODY + 100)})
        check_ws_error(recv(ws), 413, "request_too_large")
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "small"})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
        with pytest.raises(ConnectionClosed) as closed:
            send(ws, {"type": "response.create", "model": "ws-big", "input": "x" * (MAX_BODY + 2 * 1024 * 1024)})
            recv(ws, timeout=20)
    # Refused by the protocol before it is buffered: close 1009 (message too big). The server may
    # close while the client is still writing the rest, and then its close frame can be lost in
    # the reset; either way the message never reaches the app or the backend.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009, closed.value
    assert mock.requests("ws-big") == []
    assert health(tight.url)[0] == 200
    with open_ws(tight.url) as ws:  # the worker lives on
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "again"})
        assert check_ws_stream(read_response(ws))["status"] == "completed"


def test_a_frame_over_the_body_limit_is_refused_on_its_lane(tight, mock):
    """The 413 of an oversized ``response.create`` names its ``stream_id``, as every other refusal
    of a frame naming a valid one does (the openai SDK's lane session routes an ``error`` by it);
    one naming no lane, or an invalid one, gets none, and the lane serves on."""
    big = "x" * (MAX_BODY + 100)
    cases = [
        ({"type": "response.create", "stream_id": "big-lane", "model": "ws-big", "input": big}, "big-lane"),
        ({"type": "response.create", "model": "ws-big", "input": big, "stream_id": "tail.lane-2"}, "tail.lane-2"),
        ({"type": "response.create", "model": "ws-big", "input": big}, None),
        ({"type": "response.create", "model": "ws-big", "input": big, "stream_id": "has space"}, None),
        ({"type": "response.create", "model": "ws-big", "input": big, "metadata": {"stream_id": "nested"}}, None),
    ]
    with open_ws(tight.url) as ws:
        for frame, lane in cases:
            send(ws, frame)
            error = recv(ws)
            assert error.pop("stream_id", None) == lane, (lane, error)
            check_ws_error(error, 413, "request_too_large")
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "small", "stream_id": "big-lane"})
        frames = read_response(ws)
        assert {f.get("stream_id") for f in frames} == {"big-lane"}
    assert mock.requests("ws-big") == []


def test_a_client_that_vanishes_mid_response_cancels_the_upstream_request(tight, mock):
    model = "ws-vanish"
    mock.script(model, {"chunks": [f"tok{i} " for i in range(60)], "delay": 0.1})
    ws = open_ws(tight.url)
    send(ws, {"type": "response.create", "model": model, "input": "x"})
    while recv(ws)["type"] != "response.output_text.delta":
        pass
    ws.socket.shutdown(socket.SHUT_RDWR)  # gone, without a closing handshake
    ws.socket.close()
    left = time.time()
    record = wait_for(lambda: next((r for r in mock.requests(model) if r["ended_at"]), None), 20, what="the upstream end")
    print(f"\nWebSocket client vanished: upstream closed {(record['ended_at'] - left) * 1000:.0f} ms later")
    assert record["disconnected"] is True and record["completed"] is False, record
    (line,) = wait_for(lambda: _metrics_lines(tight, model), 10, what="the metrics line")
    assert "status=client_disconnected" in line and "http_status=499" in line


def test_the_connection_limit_lets_a_running_response_finish_then_closes(tight, mock):
    model = "ws-lifetime"
    mock.script(model, {"text": "quick"}, {"chunks": [f"s{i} " for i in range(30)], "delay": 0.25})
    with open_ws(tight.url) as ws:
        started = time.monotonic()
        send(ws, {"type": "response.create", "model": model, "input": "one"})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
        wait_for(lambda: time.monotonic() - started > MAX_SECS - 4, 10)
        send(ws, {"type": "response.create", "model": model, "input": "spans the deadline"})
        final = check_ws_stream(read_response(ws))
        assert final["status"] == "completed" and time.monotonic() - started > MAX_SECS
        error = check_ws_error(recv(ws), 400, "websocket_connection_limit_reached")
        assert "Create a new websocket connection" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws, timeout=10)
    assert closed.value.rcvd.code == 1000
    assert len(_metrics_lines(tight, model)) == 2


def test_an_idle_connection_is_closed_at_the_limit(tight):
    with open_ws(tight.url) as ws:
        check_ws_error(recv(ws, timeout=MAX_SECS + 20), 400, "websocket_connection_limit_reached")
        with pytest.raises(ConnectionClosed):
            recv(ws, timeout=10)


def test_the_server_pings_and_drops_a_peer_that_never_answers(tight):
    """A raw client that completes the handshake and then stays silent: it gets pings
    (opcode 0x9) every WEBSOCKET_PING_SECS, and is dropped when it answers none."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", tight.port), timeout=30) as s:
        s.sendall(
            f"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        while True:  # until the server gives up on us
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    opcodes = [data[i] & 0x0F for i in _frame_starts(data)]
    assert 0x9 in opcodes, opcodes  # at least one ping
    assert opcodes[-1] == 0x8, opcodes  # then a close frame: keepalive ping timeout (1011)
    close = data[_frame_starts(data)[-1]:]
    assert int.from_bytes(close[2:4], "big") == 1011


def _frame_starts(data: bytes) -> list[int]:
    """Offsets of the (unmasked, short) frames the server sent."""
    starts, i = [], 0
    while i + 2 <= len(data):
        starts.append(i)
        i += 2 + (data[i + 1] & 0x7F)
    return starts


def test_one_metrics_line_per_response(tight, mock):
    model = "ws-lines"
    mock.script(model, {"text": "a"}, {"text": "b"})
    with open_ws(tight.url) as ws:
        for frame in ({"input": "warm", "generate": False}, {"input": "one"}, {"input": "bad", "temperature": 9}):
            send(ws, {"type": "response.create", "model": model, **frame})
            read_response(ws)
    lines = wait_for(lambda: (ls := _metrics_lines(tight, model)) and len(ls) >= 3 and ls, 10, what="3 metrics lines")
    assert len(lines) == 3, lines
    statuses = sorted(re.search(r"status=(\w+), http_status=(\d+)", line).groups() for line in lines)
    assert statuses == [("completed", "200"), ("completed", "200"), ("error", "400")], statuses
    assert all(API_KEY not in line and f"key={mask_key(API_KEY)}," in line for line in lines)
