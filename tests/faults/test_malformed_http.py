"""Bytes that are not HTTP/1.1, over raw sockets to the real gunicorn + uvicorn workers: refused by
httptools before any app sees them, yet answered as every other error is, an OpenAI-shaped JSON
400 (``proxy.worker``), never uvicorn's plain-text "Invalid HTTP request received.", and logged
with a ``request_completed`` line. Likewise WebSocket handshakes the ``websockets`` library (or
uvicorn) refuses: JSON, never its plain text (``proxy.edge``)."""
from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from proxy.logs import mask_key
from tests.conftest import API_KEY
from tests.faults.helpers import completed_lines
from tests.http import post, wait_for
from tests.wsclient import open_ws, read_response, send

KEY = b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
JSON = b"Content-Type: application/json\r\n"
BODY = b'{"model": "mal-http", "input": "x"}'
POST = b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n" + KEY + JSON


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


MALFORMED = {
    "control-char-in-header-value": POST + b"X-Custom-Trace: a\x01b\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "nul-in-header-value": POST + b"X-Tenant: \x00\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "content-length-and-chunked": (
        POST + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(BODY) + _chunk(BODY) + b"0\r\n\r\n"
    ),
    "two-content-lengths": POST + b"Content-Length: %d\r\nContent-Length: 3\r\n\r\n" % len(BODY) + BODY,
    "invalid-chunk-size": POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "invalid-chunk-size-after-a-chunk": POST + b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(BODY) + b"-1\r\n\r\n",
    "invalid-request-line": b"GARBAGE\r\n\r\n",
    "space-in-the-target": b"POST /v1/res ponses HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "unknown-http-version": b"GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    "header-without-colon": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\n\r\n",
}


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``, then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def _head_and_body(answer: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_is_an_openai_shaped_json_400_and_the_connection_closed(fproxy, mock, data):
    answer = _exchange(fproxy.port, data)
    lines, body = _head_and_body(answer)
    assert lines[0] == b"HTTP/1.1 400 Bad Request", answer[:300]
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    assert headers[b"content-type"] == b"application/json", answer[:300]
    assert headers[b"connection"] == b"close"
    assert int(headers[b"content-length"]) == len(body)
    doc = orjson.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    assert doc["error"]["type"] == "invalid_request_error" and doc["error"]["code"] == "invalid_http_request", doc
    assert doc["error"]["param"] is None and "HTTP/1.1" in doc["error"]["message"], doc
    assert mock.requests("mal-http") == []


def test_bad_bytes_during_a_stream_are_not_written_into_it(fproxy, mock):
    """A client that sends bytes the parser refuses while its previous request's answer streams:
    the connection closes (as uvicorn's does), but no 400 status line is spliced into the stream."""
    mock.script("mal-stream", {"chunks": [f"w{i} " for i in range(20)], "delay": 0.05})
    body = orjson.dumps({"model": "mal-stream", "input": "x", "stream": True})
    with socket.create_connection(("127.0.0.1", fproxy.port), timeout=10) as s:
        s.sendall(POST + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer = s.recv(65536)
        while b"response.output_text.delta" not in answer:
            answer += s.recv(65536)
        s.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1 and b"invalid_http_request" not in answer, answer[-600:]


def test_the_worker_serves_on_after_malformed_requests(fproxy, mock):
    for data in MALFORMED.values():
        _exchange(fproxy.port, data)
    mock.script("mal-after", {"text": "fine"})
    t0 = time.monotonic()
    r = post(fproxy.url, {"model": "mal-after", "input": "x"})
    assert r.status_code == 200 and time.monotonic() - t0 < 10, r.text[:300]


def _completed(service, http_status: int):
    return [c for c in completed_lines(service) if c.http_status == http_status]


def test_each_malformed_request_writes_one_request_completed_line(proxy_factory, mock):
    """An operator sees every refused request in the metrics line, as every other request: one line
    each, ``http_status=400``; with the client's ``X-Request-ID`` and its masked key when the parser
    got that far (a body whose framing is bad reaches the app first: it writes no second line)."""
    svc = proxy_factory(WEB_CONCURRENCY="1")
    for data in MALFORMED.values():
        _exchange(svc.port, data)
    wait_for(lambda: len(_completed(svc, 400)) == len(MALFORMED), 10, what="a metrics line per malformed request")
    framed = POST + b"X-Request-ID: rid-bad-chunk\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk(BODY) + b"-1\r\n\r\n"
    _exchange(svc.port, framed)
    line = wait_for(lambda: [c for c in completed_lines(svc) if c.request_id == "rid-bad-chunk"], 10)
    time.sleep(0.5)  # (a second line of the app's would have come by now)
    lines = [c for c in completed_lines(svc) if c.http_status != 200]
    assert len(lines) == len(MALFORMED) + 1 and line[0].http_status == 400 and line[0].status == "error", lines
    assert all(c.model == "-" and c.http_status == 400 for c in lines), lines
    text = svc.log_text()
    assert API_KEY not in text and f"key={mask_key(API_KEY)}, request_id=rid-bad-chunk" in text


# --------------------------------------------------------------------------- WebSocket handshakes

WS_KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
UPGRADE = b"Upgrade: websocket\r\nConnection: Upgrade\r\nHost: 127.0.0.1\r\n" + KEY


def _json_error(answer: bytes, status: bytes) -> dict:
    lines, body = _head_and_body(answer)
    assert lines[0] == b"HTTP/1.1 " + status, answer[:300]
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    assert headers[b"content-type"] == b"application/json", answer[:300]
    assert headers[b"connection"].lower() == b"close" and int(headers[b"content-length"]) == len(body)
    doc = orjson.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    return doc["error"]


BAD_HANDSHAKES = {  # refused by the `websockets` library inside uvicorn, before any app sees them
    "bad-key": (b"Sec-WebSocket-Key: bad\r\nSec-WebSocket-Version: 13\r\n", b"invalid Sec-WebSocket-Key"),
    "short-key": (b"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n", b"invalid Sec-WebSocket-Key"),
    "no-key": (b"Sec-WebSocket-Version: 13\r\n", b"missing Sec-WebSocket-Key"),
    "wrong-version": (WS_KEY + b"Sec-WebSocket-Version: 8\r\n", b"invalid Sec-WebSocket-Version"),
    "no-version": (WS_KEY, b"missing Sec-WebSocket-Version"),
}


@pytest.mark.parametrize("headers, reason", BAD_HANDSHAKES.values(), ids=BAD_HANDSHAKES.keys())
def test_a_handshake_the_websocket_library_refuses_is_an_openai_shaped_json_400(fproxy, headers, reason):
    answer = _exchange(fproxy.port, b"GET /v1/responses HTTP/1.1\r\n" + UPGRADE + headers + b"\r\n")
    error = _json_error(answer, b"400 Bad Request")
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_websocket_handshake", error
    assert reason.decode() in error["message"] and error["param"] is None, error


def test_each_refused_handshake_writes_one_request_completed_line(proxy_factory):
    svc = proxy_factory(WEB_CONCURRENCY="1")
    for i, (headers, _) in enumerate(BAD_HANDSHAKES.values()):
        rid = b"X-Request-ID: rid-ws-%d\r\n" % i
        _exchange(svc.port, b"GET /v1/responses HTTP/1.1\r\n" + UPGRADE + rid + headers + b"\r\n")
    wanted = {f"rid-ws-{i}" for i in range(len(BAD_HANDSHAKES))}
    lines = wait_for(lambda: (lambda c: c if {x.request_id for x in c} >= wanted else None)(completed_lines(svc)), 10)
    assert sorted(c.request_id for c in lines) == sorted(wanted), lines  # one each
    assert all(c.http_status == 400 and c.status == "error" and c.model == "-" for c in lines), lines
    assert f"key={mask_key(API_KEY)}, request_id=rid-ws-0" in svc.log_text()


def _server_answered(url: str) -> dict[str, float]:
    """``responses_proxy_requests_total`` of ``route="server"``, by status, as ``/metrics`` shows it."""
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return {s.labels["status"]: s.value for family in text_string_to_metric_families(r.text)
            for s in family.samples if s.name == "responses_proxy_requests_total" and s.labels["route"] == "server"}


def test_requests_the_server_answers_itself_are_counted_in_the_metrics(proxy_factory, mock):
    """Beside their request_completed lines, the Prometheus request counter counts them, under
    ``route="server"`` (no model, not streamed), so a dashboard sees a client sending garbage."""
    svc = proxy_factory(WEB_CONCURRENCY="1")
    assert _server_answered(svc.url) == {}
    for data in MALFORMED.values():
        _exchange(svc.port, data)
    for headers, _ in BAD_HANDSHAKES.values():
        _exchange(svc.port, b"GET /v1/responses HTTP/1.1\r\n" + UPGRADE + headers + b"\r\n")
    wanted = {"400": float(len(MALFORMED) + len(BAD_HANDSHAKES))}
    assert wait_for(lambda: (lambda c: c if c == wanted else None)(_server_answered(svc.url)), 10) == wanted


@pytest.mark.parametrize("path", [b"/v1/nowhere", b"/v1/models", b"/"])
def test_a_handshake_to_a_path_without_websocket_mode_is_a_json_404_with_its_line_and_count(proxy_factory, path):
    """RFC 6455 (4.2.2): a resource that is not available is a 404 — not the 403 uvicorn answered when
    Falcon closed the handshake (no route), with no line written. Now a JSON 404 ``not_found`` naming
    where WebSocket mode is served, its ``request_completed`` line (masked key, request id) and its
    count under ``route="server"``."""
    svc = proxy_factory(WEB_CONCURRENCY="1")
    head = b"GET " + path + b" HTTP/1.1\r\n" + UPGRADE + WS_KEY + b"Sec-WebSocket-Version: 13\r\n"
    answer = _exchange(svc.port, head + b"X-Request-ID: rid-ws-404\r\n\r\n")
    error = _json_error(answer, b"404 Not Found")
    assert error["code"] == "not_found" and error["type"] == "invalid_request_error", error
    assert path.decode() in error["message"] and "/v1/responses" in error["message"], error
    lines = wait_for(lambda: [c for c in completed_lines(svc) if c.request_id == "rid-ws-404"] or None, 10)
    assert [(c.http_status, c.status, c.model) for c in lines] == [(404, "error", "-")], lines
    assert f"key={mask_key(API_KEY)}, request_id=rid-ws-404" in svc.log_text()
    assert wait_for(lambda: (lambda c: c if c == {"404": 1.0} else None)(_server_answered(svc.url)), 10)


def test_websocket_mode_still_serves_after_refused_handshakes(fproxy, mock):
    for headers, _ in BAD_HANDSHAKES.values():
        _exchange(fproxy.port, b"GET /v1/responses HTTP/1.1\r\n" + UPGRADE + headers + b"\r\n")
    mock.script("mal-ws", {"text": "fine"})
    with open_ws(fproxy.url) as conn:
        send(conn, {"type": "response.create", "model": "mal-ws", "input": "x"})
        frames = read_response(conn)
    assert frames[-1]["type"] == "response.completed", frames[-1]
