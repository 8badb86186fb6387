"""Bytes that are not HTTP/1.1, over raw sockets to the real gunicorn + uvicorn workers: refused by
httptools before any app sees them, yet answered as every other error is, an OpenAI-shaped JSON
400 (``proxy.worker``), never uvicorn's plain-text "Invalid HTTP request received."."""
from __future__ import annotations

import socket
import time

import orjson
import pytest

from tests.conftest import API_KEY
from tests.http import post

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
