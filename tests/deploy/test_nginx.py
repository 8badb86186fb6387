"""nginx with the shipped ``conf/nginx.conf`` in front of one proxy instance.

The copy nginx runs differs from the shipped file only in its two addresses
(``tests/deploy/nginx.py``; the idle-WebSocket test also lowers
``proxy_read_timeout``); the main file around it turns gzip on for SSE.
WebSocket mode: two chained turns through nginx with the openai SDK, and an idle
socket that outlives nginx's read timeout because the proxy pings it (and, with
pings rarer than that timeout, is closed by nginx: the test can fail). nginx's own answers
(400, 405, 413, 414, 501, 502, 505…), each provoked for real, are OpenAI-shaped JSON.
"""
from __future__ import annotations

import base64
import os
import shutil
import socket
import time

import httpx
import openai
import orjson
import pytest

from proxy.devtools import free_port
from proxy.errors import type_for_status
from tests.conformance import check_response, check_stream, parse_sse
from tests.conftest import API_KEY
from tests.deploy.nginx import SITE, Nginx, check, make_prefix, render_site
from tests.deploy.ws import idle_between_turns, sdk_chained_turns
from tests.http import auth, error_of, health, post, wait_for

pytestmark = pytest.mark.slow


def test_nginx_accepts_the_config():
    prefix = make_prefix(render_site(18080, 18282))
    try:
        out = check(prefix)
        assert out.returncode == 0, out.stderr
        assert "test is successful" in out.stderr and "[warn]" not in out.stderr, out.stderr
        # nginx -t is not a formality: a broken copy fails it.
        broken = (prefix / "site.conf").read_text().replace("proxy_buffering off;", "proxy_buffering of;")
        (prefix / "site.conf").write_text(broken)
        assert check(prefix).returncode != 0
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_rendered_copy_differs_only_in_addresses():
    shipped = SITE.read_text().splitlines()
    rendered = render_site(18080, 18282).splitlines()
    changed = [(a, b) for a, b in zip(shipped, rendered) if a != b]
    assert len(shipped) == len(rendered) and [a.strip() for a, _ in changed] == ["server 127.0.0.1:8282;", "listen 80;"]
    lowered = render_site(18080, 18282, read_timeout="3s").splitlines()
    assert [(a.strip(), b.strip()) for a, b in zip(rendered, lowered) if a != b] == [
        ("proxy_read_timeout 650s;", "proxy_read_timeout 3s;")
    ]


@pytest.fixture
def nginx(proxy_factory):
    instance = proxy_factory(SSE_KEEPALIVE_SECS="1")
    server = Nginx(instance.port)
    server.instance = instance
    yield server
    server.stop()


def _first_delta_time(url: str, body: dict, request_id: str) -> tuple[float, bytes, httpx.Headers]:
    """Stream through ``url``; (when the first text delta arrived, the whole body, the headers)."""
    first = None
    chunks = []
    headers = {**auth(), "X-Request-ID": request_id, "Accept-Encoding": "gzip"}
    with httpx.stream("POST", url + "/v1/responses", json={**body, "stream": True}, headers=headers, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw():
            if first is None and b"response.output_text.delta" in chunk:
                first = time.time()
            chunks.append(chunk)
        response_headers = r.headers
    assert first is not None
    return first, b"".join(chunks), response_headers


def test_stream_arrives_unbuffered_through_nginx(nginx, mock):
    # mock-slow-300: the echo in 4-character deltas, 300 ms apart (~3 s for this input).
    request_id = "nginx-stream-" + os.urandom(4).hex()
    first, raw, headers = _first_delta_time(nginx.url, {"model": "mock-slow-300", "input": "stream me, not later"}, request_id)
    record = wait_for(lambda: [r for r in mock.requests("mock-slow-300") if r["headers"].get("x-request-id") == request_id
                               and r["ended_at"]], 10, what="the mock's record of the stream")[0]
    # Ordering, not a time bound: the first delta reached the client before the backend had
    # produced its last chunk, so nginx forwarded it as it came.
    assert first < record["ended_at"], (first, record["started_at"], record["ended_at"])
    assert "content-encoding" not in headers, headers  # not gzipped, despite the http-level gzip_types
    check_stream(parse_sse(raw))


def test_json_health_and_large_bodies_through_nginx(nginx):
    with openai.OpenAI(base_url=nginx.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        raw = client.responses.with_raw_response.create(model="mock-echo", input="hello through nginx")
    assert raw.parse().output_text == "You said: hello through nginx"
    check_response(raw.http_response.json())
    status, body = health(nginx.url)
    assert status == 200 and body["status"] == "healthy", body
    # 2 MB: past nginx's default 1 MB limit, within the proxy's 10 MB.
    big = post(nginx.url, {"model": "mock-stream-2", "input": "x" * 2_000_000}, timeout=60)
    assert big.status_code == 200, big.text[:500]
    # Over 10 MB: the proxy's own 413; over 11 MB: nginx's, in the same shape.
    for size, code in ((10_600_000, None), (12_000_000, "request_too_large")):
        r = post(nginx.url, {"model": "mock-echo", "input": "x" * size}, timeout=60)
        assert r.status_code == 413, r.text[:500]
        err = error_of(r)
        assert code is None or err["code"] == code, err


def test_websocket_upgrade_reaches_the_proxy(nginx):
    """The proxy upgrades the handshake (WebSocket mode, 101), which it can only do if nginx passes
    Upgrade/Connection through: without them it would see a plain GET and answer 405."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as s:
        s.sendall(
            f"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
        )
        answer = s.recv(65536)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"101", answer
    # uvicorn logs a WebSocket handshake, and only that, as `"WebSocket /v1/responses" [accepted]`.
    wait_for(lambda: '"WebSocket /v1/responses" [accepted]' in nginx.instance.log_text(), 10,
             what="the proxy's log line for the WebSocket handshake")


def test_websocket_chained_turns_through_nginx(nginx, mock):
    """The openai SDK's responses.connect() through nginx: two turns, the second chained."""
    first, second = sdk_chained_turns(nginx.url)
    assert '"WebSocket /v1/responses" [accepted]' in nginx.instance.log_text()
    # The backend got the first turn's exchange as the second's history.
    bodies = [r["body"] for r in mock.requests("mock-echo") if r["body"]]
    assert [m["role"] for m in bodies[-1]["messages"]] == ["user", "assistant", "user"], bodies[-1]


READ_TIMEOUT_SECS = 3


@pytest.mark.parametrize("ping_secs, survives", [(1, True), (30, False)], ids=["pings", "no-pings-in-time"])
def test_an_idle_websocket_outlives_nginx_read_timeout_thanks_to_the_pings(proxy_factory, ping_secs, survives):
    """nginx's only idle limit on a tunnel is proxy_read_timeout (lowered to 3 s here): an idle
    socket lives on when the proxy pings it more often than that, and is closed when it does not."""
    instance = proxy_factory(WEBSOCKET_PING_SECS=str(ping_secs))
    front = Nginx(instance.port, read_timeout=f"{READ_TIMEOUT_SECS}s")
    try:
        idle_between_turns(front.url, 3 * READ_TIMEOUT_SECS, survives)
        log = front.error_log()
        timed_out = "upstream timed out" in log and "while proxying upgraded connection" in log
        assert timed_out is not survives, log
    finally:
        front.stop()


# --------------------------------------------------------------------------- nginx's own answers

NGINX_REFUSES = {  # what nginx answers by itself, before any proxy sees the request: (request, status, code)
    "garbage-request-line": (b"GARBAGE\r\n\r\n", 400, "invalid_http_request"),
    "no-host": (b"GET /v1/models HTTP/1.1\r\n\r\n", 400, "invalid_http_request"),
    "content-length-and-chunked": (
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400, "invalid_http_request",
    ),
    "bad-chunk-size": (
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400,
        "invalid_http_request",
    ),
    "header-too-large": (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 400,
                         "request_header_too_large"),
    "uri-too-long": (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    "unknown-transfer-encoding": (
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented",
    ),
    "http-version": (b"GET /v1/models HTTP/2.5\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
    "trace": (b"TRACE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    "internal-error-uri": (b"GET /.responses-proxy-error/400 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404,
                           "not_found"),
    "oversize-body": (b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n", 413,
                      "request_too_large"),
    "proxy-unreachable": (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 502, "bad_gateway"),
}


@pytest.fixture(scope="module")
def lonely_nginx():
    """nginx with nothing listening at its upstream's address."""
    server = Nginx(free_port())
    yield server
    server.stop()


@pytest.mark.parametrize("data, status, code", NGINX_REFUSES.values(), ids=NGINX_REFUSES.keys())
def test_nginx_answers_its_own_errors_as_openai_json(lonely_nginx, data, status, code):
    with socket.create_connection(("127.0.0.1", lonely_nginx.port), timeout=30) as s:
        s.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 %d " % status), answer[:300]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    assert headers[b"content-type"] == b"application/json", answer[:300]
    doc = orjson.loads(body[: _length(answer)])
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    assert doc["error"]["code"] == code and doc["error"]["type"] == type_for_status(status), doc


def _length(answer: bytes) -> int:
    head = answer.partition(b"\r\n\r\n")[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30
