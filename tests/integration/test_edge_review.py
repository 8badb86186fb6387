"""The service's I/O boundary under review: defects found there, and the edges that
were checked and found right, each pinned by a test.

Defects these tests reproduced (all fixed): /health kept a host out of rotation
for good once its breaker opened; broken chunked framing hung a stream (no idle
watchdog of our own); malformed HTTP from the backend became our 500; a full
upstream pool looked like a backend outage to the breaker; a mid-stream error
code differed between JSON and SSE; a valid RUST_LOG stopped the service;
`/v1/responses/` was read as an empty response id.

Backends that misbehave below HTTP (garbage status lines, broken chunked
framing) cannot be scripted in the mock, which is a well-behaved uvicorn app;
``_RawBackend`` is a bare loopback socket that answers every request with
fixed bytes.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from proxy import settings as settings_mod
from proxy import upstream
from proxy.devtools import Service, start_proxy
from proxy.failures import Failure, Verdict
from tests.conftest import API_KEY
from tests.http import error_of

AUTH = {"Authorization": f"Bearer {API_KEY}"}
TERMINAL = (b"response.completed", b"response.incomplete", b"response.failed")


# --------------------------------------------------------------------------- helpers


class _RawBackend:
    """A loopback TCP server that reads one request head and answers ``pieces``
    verbatim (``gap`` seconds apart), then closes the connection."""

    def __init__(self, *pieces: bytes, gap: float = 0.3) -> None:
        self._pieces = pieces
        self._gap = gap
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                for i, piece in enumerate(self._pieces):
                    if i:
                        time.sleep(self._gap)
                    conn.sendall(piece)
            except OSError:
                pass

    def close(self) -> None:
        self._sock.close()


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
_FIRST_EVENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"partial"},"finish_reason":null}]}\n\n'
)


def _stream_until_terminal(url: str, body: dict, limit: float) -> tuple[int, bytes, float]:
    """POST a stream and read until a terminal event, EOF, or ``limit`` seconds
    of wall time (keep-alive comments keep a read timeout from ever firing)."""
    start = time.monotonic()
    raw = b""
    with httpx.stream("POST", url + "/v1/responses", json={**body, "stream": True}, headers=AUTH, timeout=limit) as r:
        for data in r.iter_bytes():
            raw += data
            if any(t in raw for t in TERMINAL) and raw.endswith(b"data: [DONE]\n\n"):
                break
            if time.monotonic() - start > limit:
                break
        return r.status_code, raw, time.monotonic() - start


@pytest.fixture(scope="module")
def eproxy(mock_backend: Service, logs_dir: Path) -> Iterator[Service]:
    """A proxy of this module's own, with a breaker that injected failures never open;
    its JSON clients are served from a streamed upstream, as the faults here are streaming ones."""
    service = start_proxy(
        mock_backend.url + "/v1", logs_dir / "edge-review-proxy.log", CIRCUIT_BREAKER_THRESHOLD="100000",
        JSON_UPSTREAM="stream",
    )
    yield service
    service.stop()


@pytest.fixture
def raw_backend() -> Iterator[type[_RawBackend]]:
    started: list[_RawBackend] = []

    def make(*pieces: bytes, gap: float = 0.3) -> _RawBackend:
        backend = _RawBackend(*pieces, gap=gap)
        started.append(backend)
        return backend

    yield make  # type: ignore[misc]
    for backend in started:
        backend.close()


# --------------------------------------------------------------------------- defects


def test_health_allows_traffic_back_once_recovery_time_has_passed(proxy_factory):
    """The host breaker (a backend that refuses connections opens it) must let /health say
    "recovering" once its recovery time is over. (One model's failures open only that model's.)"""
    from proxy.devtools import free_port

    svc = proxy_factory(
        backend_url=f"http://127.0.0.1:{free_port()}/v1", CIRCUIT_BREAKER_THRESHOLD="1", CIRCUIT_BREAKER_RECOVERY_SECS="1"
    )
    r = httpx.post(svc.url + "/v1/responses", json={"model": "edge-cb", "input": "x"}, headers=AUTH, timeout=10)
    assert r.status_code == 502 and error_of(r)["code"] == "backend_unreachable"
    assert httpx.get(svc.url + "/health").status_code == 503  # open: out of rotation, rightly
    time.sleep(1.5)  # recovery_secs passed; no client traffic (HAProxy sends none to a DOWN server)
    r = httpx.get(svc.url + "/health")
    assert r.status_code == 200, (
        f"/health is still {r.status_code} {r.text} after the recovery period: a load balancer keeps "
        "the host out of rotation, no request ever becomes the probe, and the breaker stays open forever"
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: xyz\r\n\r\n",
    ],
    ids=["not-http", "bad-status", "bad-content-length"],
)
def test_malformed_backend_response_is_502_and_counted(proxy_factory, raw_backend, reply, stream):
    backend = raw_backend(reply)
    svc = proxy_factory(backend_url=backend.url, CIRCUIT_BREAKER_THRESHOLD="100", WEB_CONCURRENCY="1")
    r = httpx.post(svc.url + "/v1/responses", json={"model": "m", "input": "x", "stream": stream}, headers=AUTH, timeout=15)
    err = error_of(r)
    assert (r.status_code, err["code"]) != (500, "internal_error"), "a backend's bytes became our 500"
    assert r.status_code == 502 and err["type"] == "server_error", (r.status_code, err)
    assert httpx.get(svc.url + "/health").json()["circuit_breaker"]["consecutive_failures"] == 1


@pytest.fixture(scope="module")
def framing_proxy(mock_backend: Service, logs_dir: Path) -> Iterator[tuple[Service, _RawBackend]]:
    backend = _RawBackend(_SSE_HEAD + _chunk(_FIRST_EVENT), b"zz\r\nnot a chunk\r\n")
    service = start_proxy(
        backend.url,
        logs_dir / "edge-review-framing.log",
        BACKEND_IDLE_TIMEOUT_SECS="2",
        BACKEND_TIMEOUT_SECS="60",
        SSE_KEEPALIVE_SECS="0.5",
        CIRCUIT_BREAKER_THRESHOLD="100000",
    )
    yield service, backend
    service.stop()
    backend.close()


def test_broken_framing_mid_stream_ends_the_stream(framing_proxy):
    svc, _ = framing_proxy
    status, raw, took = _stream_until_terminal(svc.url, {"model": "m", "input": "x"}, limit=12)
    assert status == 200
    assert b"response.failed" in raw and raw.endswith(b"data: [DONE]\n\n"), (
        f"no terminal event after {took:.1f} s (idle timeout is 2 s); "
        f"{raw.count(b': keep-alive')} keep-alives instead: {raw[-300:]!r}"
    )


def test_broken_framing_mid_body_json_is_a_prompt_504(framing_proxy):
    """The transport hangs without raising; the relay's own idle watchdog ends the
    request after BACKEND_IDLE_TIMEOUT_SECS (2 s) — silence is what it observes,
    so it is the backend timing out (504), as a stream reports it."""
    svc, _ = framing_proxy
    try:
        r = httpx.post(svc.url + "/v1/responses", json={"model": "m", "input": "x"}, headers=AUTH, timeout=12)
    except httpx.ReadTimeout:
        pytest.fail("no answer within 12 s (idle timeout 2 s): the proxy waits for BACKEND_TIMEOUT_SECS (60 s)")
    assert r.status_code == 504, (r.status_code, r.text)
    assert error_of(r)["code"] == "backend_timeout"


def test_pool_exhaustion_is_a_retryable_503_that_the_breaker_ignores(mock):
    """A worker with every upstream slot busy refuses at once with a retryable 503
    that is not the backend's failure; a closed response gives its slot back."""
    url = mock.url + "/v1/chat/completions"
    body = orjson.dumps({"model": "mock-slow-500", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}

    async def scenario() -> tuple[Failure, int]:
        pool = upstream.Upstream(upstream.create_client(settings_mod.Settings()), url, limit=1)
        try:
            holding = await pool.open(body, headers)  # takes the only slot
            with pytest.raises(Failure) as exc:
                await pool.open(body, headers)
            await holding.aclose()
            again = await pool.open(body, headers)  # the slot came back
            await again.aclose()
            return exc.value, pool.in_flight
        finally:
            await pool.aclose()

    err, in_flight = asyncio.run(scenario())
    assert (err.http_status, err.code, err.verdict) == (503, "upstream_pool_exhausted", Verdict.NONE), (
        err.http_status, err.code, err.message, err.verdict,
    )
    assert err.headers.get("Retry-After")
    assert in_flight == 0


def test_mid_stream_backend_error_code_is_the_same_in_json_and_stream(eproxy, mock):
    """An error the request caused (context too long), arriving after output began:
    the stream's `error` event and the JSON body carry the backend's own code, and
    the JSON client gets the 400 the backend meant (not a 502: the backend is fine)."""
    mock.script("edge-midstream", {"text": "some text here", "error_mid_stream": {
        "message": "prompt too long", "type": "invalid_request_error", "code": "context_length_exceeded", "after": 2,
    }})
    _, raw, _ = _stream_until_terminal(eproxy.url, {"model": "edge-midstream", "input": "x"}, limit=10)
    error_events = [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {") and b'"type":"error"' in line]
    assert [e["code"] for e in error_events] == ["context_length_exceeded"]  # the stream keeps it
    r = httpx.post(eproxy.url + "/v1/responses", json={"model": "edge-midstream", "input": "x"}, headers=AUTH, timeout=10)
    assert r.status_code == 400
    assert error_of(r)["code"] == "context_length_exceeded"


@pytest.mark.parametrize("value", ["responses_proxy", "responses_proxy,hyper=warn"])
def test_rust_log_with_a_bare_target_does_not_stop_the_service(value):
    assert settings_mod.log_level({"RUST_LOG": value}) in ("DEBUG", "INFO")


def test_trailing_slash_is_not_an_empty_response_id(eproxy, mock):
    r = httpx.post(eproxy.url + "/v1/responses/", json={"model": "mock-echo", "input": "hi"}, headers=AUTH, timeout=10)
    assert r.status_code == 200 or "id ''" not in error_of(r)["message"], r.text


# --------------------------------------------------------------------------- behaviour worth keeping


def test_method_not_allowed_is_openai_shaped_with_allow_and_request_id(eproxy):
    r = httpx.request("GET", eproxy.url + "/v1/responses", headers={"X-Request-ID": "edge-405"})
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "edge-405"
    assert "POST" in r.headers["allow"]
    assert error_of(r) == {
        "message": "Method GET is not allowed on /v1/responses.",
        "type": "invalid_request_error",
        "param": None,
        "code": "method_not_allowed",
    }


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/chat/completions"),  # no route (Falcon's 404)
    ("GET", "/v1/responses/resp_abc/bogus"),  # a stored response's route, an unknown action
    ("GET", "/v1/nothing/here"),
])
def test_unknown_paths_answer_one_openai_shaped_404(eproxy, method, path):
    r = httpx.request(method, eproxy.url + path, headers=AUTH, timeout=10)
    assert r.status_code == 404
    assert error_of(r) == {
        "message": f"Unknown path: {method} {path}.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }


def test_head_health_has_headers_and_no_body(eproxy):
    r = httpx.head(eproxy.url + "/health")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(httpx.get(eproxy.url + "/health").content)


def test_backend_closing_before_answering_is_502_and_counted(proxy_factory, raw_backend):
    """aiohttp's ServerDisconnectedError (which the transport maps to httpx.ReadError, not to a timeout)
    is named for what it is: the backend closed the connection before answering."""
    backend = raw_backend(b"")
    svc = proxy_factory(backend_url=backend.url, CIRCUIT_BREAKER_THRESHOLD="100", WEB_CONCURRENCY="1")
    r = httpx.post(svc.url + "/v1/responses", json={"model": "m", "input": "x"}, headers=AUTH, timeout=15)
    assert r.status_code == 502 and error_of(r)["code"] == "backend_error"
    assert "closed the connection" in error_of(r)["message"]
    assert httpx.get(svc.url + "/health").json()["circuit_breaker"]["consecutive_failures"] == 1


def test_body_cut_mid_chunk_fails_both_modes_as_backend_errors(proxy_factory, raw_backend):
    """A chunked body that ends mid-chunk (connection closed) after some output is a
    ReadError: 502 in JSON, response.failed in a stream, and both count for the breaker.
    (The cut comes 0.3 s after the first event, so the stream has begun by then.)"""
    backend = raw_backend(_SSE_HEAD + _chunk(_FIRST_EVENT), b"40\r\ndata: {")
    svc = proxy_factory(backend_url=backend.url, CIRCUIT_BREAKER_THRESHOLD="100", WEB_CONCURRENCY="1")
    r = httpx.post(svc.url + "/v1/responses", json={"model": "m", "input": "x"}, headers=AUTH, timeout=15)
    assert r.status_code == 502 and error_of(r)["code"] == "backend_error"
    status, raw, _ = _stream_until_terminal(svc.url, {"model": "m", "input": "x"}, limit=10)
    assert status == 200 and b"response.failed" in raw and raw.endswith(b"data: [DONE]\n\n")
    assert httpx.get(svc.url + "/health").json()["circuit_breaker"]["consecutive_failures"] == 2


@pytest.mark.parametrize(
    "env, level",
    [
        ({"RUST_LOG": "info"}, "INFO"),
        ({"RUST_LOG": "responses_proxy=debug"}, "DEBUG"),
        ({"RUST_LOG": "warn,responses_proxy=info"}, "WARNING"),
        ({"LOG_LEVEL": "error", "RUST_LOG": "debug"}, "ERROR"),
        ({"RUST_LOG": " "}, "INFO"),
    ],
)
def test_rust_log_forms_that_work(env, level):
    assert settings_mod.log_level(env) == level


def test_port_wins_over_host_port():
    s = settings_mod.load({"PORT": "9001", "HOST_PORT": "9002"})
    assert s.bind_port == 9001
    assert settings_mod.load({"PORT": "", "HOST_PORT": "9002"}).bind_port == 9002
    with pytest.raises(settings_mod.SettingsError, match="PORT"):
        settings_mod.load({"PORT": "http"})
