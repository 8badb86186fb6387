"""Limits and validation at the edge: sizes, encodings, shapes, names, headers."""
from __future__ import annotations

import contextlib
import socket
import time

import httpx
import orjson
import pytest

from tests.conformance import check_stream, parse_sse
from tests.conftest import API_KEY
from tests.faults.conftest import FORWARDED
from tests.faults.helpers import completed_lines, raw_request, stream
from tests.http import auth, error_of, post, wait_for

LIMIT = 10 * 1024 * 1024


def _body_of_size(size: int, model: str) -> bytes:
    head = orjson.dumps({"model": model, "input": ""})[:-2]  # ...,"input":"   → pad, then "}
    pad = size - len(head) - 2
    body = head + b"a" * pad + b'"}'
    assert len(body) == size
    return body


def test_body_over_limit_with_content_length_is_413(fproxy, mock):
    r = post(fproxy.url, _body_of_size(LIMIT + 1, "lim-big"), timeout=30)
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "request_too_large"
    assert mock.requests("lim-big") == []


def test_body_over_limit_chunked_without_length_is_413(fproxy, mock):
    piece = b"a" * (256 * 1024)
    sent = 0

    def body():
        nonlocal sent
        yield b'{"model": "lim-chunked", "input": "'
        for _ in range(48):  # 12 MB
            sent += len(piece)
            yield piece
        yield b'"}'

    t0 = time.monotonic()
    r = httpx.post(
        fproxy.url + "/v1/responses", content=body(), headers={**auth(), "Content-Type": "application/json"}, timeout=30
    )
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    print(f"\nchunked 12 MB body: {r.status_code} after {time.monotonic() - t0:.2f} s, {sent >> 20} MB offered")
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "request_too_large"
    assert mock.requests("lim-chunked") == []


def test_body_exactly_at_limit_is_accepted(fproxy, mock):
    mock.script("lim-exact", {"text": "fits"})
    r = post(fproxy.url, _body_of_size(LIMIT, "lim-exact"), timeout=30)
    assert r.status_code == 200, r.text[:500]
    assert len(mock.requests("lim-exact")) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "lim-utf8", "input": "\xff\xfe bad"}',
        b'{"model": "lim-utf8", "input": "\xed\xa0\x80"}',  # an encoded surrogate
        b'{"model": "lim-utf8", "input": "cut \xe2\x82"}',
    ],
    ids=["ff-fe", "surrogate", "truncated"],
)
def test_invalid_utf8_body_is_400(fproxy, mock, raw):
    r = post(fproxy.url, raw)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["type"] == "invalid_request_error"
    assert mock.requests("lim-utf8") == []


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null", b"true", b"", b"   ", b"{", b'{"a": 1} x'])
def test_body_that_is_not_a_json_object_is_400(fproxy, raw):
    r = post(fproxy.url, raw)
    assert r.status_code == 400, r.text
    assert error_of(r)["type"] == "invalid_request_error"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_wrong_content_type_is_415(fproxy, mock, ctype):
    r = post(fproxy.url, b'{"model": "lim-ctype", "input": "x"}', headers={"Content-Type": ctype})
    assert r.status_code == 415, r.text
    assert error_of(r)["code"] == "unsupported_media_type"
    assert mock.requests("lim-ctype") == []


@pytest.mark.parametrize(
    "model",
    ["", "m" * 300, "with space", "new\nline", "nul\x00char", "bell\x07", "del\x7f", "tab\tchar", 42, None, ["m"]],
    ids=["empty", "300-chars", "space", "newline", "nul", "bell", "del", "tab", "int", "null", "list"],
)
def test_bad_model_name_is_400_param_model(fproxy, mock, model):
    r = post(fproxy.url, {"model": model, "input": "x"})
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["param"] == "model" and err["type"] == "invalid_request_error", err
    assert len(mock.requests()) == 0


def test_oversize_upstream_event_fails_loudly(fproxy, mock):
    """The oversize event is the backend's first content: nothing was output yet, so a
    stream is refused with the same 502 a JSON request gets (never a silent cut)."""
    mock.script("lim-oversize", {"text": "after", "oversize_event_bytes": 1_200_000})
    res = stream(fproxy.url, {"model": "lim-oversize", "input": "x"})
    assert res.status == 502, res.raw[:300]
    assert "larger than" in orjson.loads(res.raw)["error"]["message"]
    r = post(fproxy.url, {"model": "lim-oversize", "input": "x"})
    assert r.status_code == 502, r.text
    assert "larger than" in error_of(r)["message"]


def test_oversize_upstream_event_after_output_fails_the_stream(fproxy, mock):
    mock.script("lim-oversize-late", {"raw": [
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"before"}}]}\n\n',
        'data: {"choices":[{"index":0,"delta":{"content":"' + "x" * 1_200_000 + '"}}]}\n\n',
    ]})
    res = stream(fproxy.url, {"model": "lim-oversize-late", "input": "x"})
    assert res.status == 200
    events = parse_sse(res.raw)
    final = check_stream(events)
    types = [e["type"] for e in events]
    assert types[-2:] == ["error", "response.failed"] and "response.completed" not in types, types
    assert final["status"] == "failed"
    assert "larger than" in final["error"]["message"], final["error"]


def test_upstream_event_just_under_the_limit_passes(fproxy, mock):
    mock.script("lim-undersize", {"text": "after", "oversize_event_bytes": 1_000_000})
    res = stream(fproxy.url, {"model": "lim-undersize", "input": "x"})
    events = parse_sse(res.raw)
    assert events[-1]["type"] == "response.completed", [e["type"] for e in events][-3:]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text.endswith("after") and len(text) > 990_000


def test_identity_and_hop_by_hop_headers_are_not_forwarded(fproxy, mock):
    mock.script("lim-headers", {"text": "ok"})
    sent = {
        "Cookie": "session=s3cr3t",
        "X-Forwarded-For": "10.1.2.3",
        "X-Real-IP": "10.1.2.3",
        "Forwarded": "for=10.1.2.3",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Api-Key": "sk-other-key-should-not-pass-1234",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "hop",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Origin": "https://evil.example",
        "Referer": "https://evil.example/page",
        "X-Other": "not configured",
        "X-Custom-Trace": "trace-123",
        "X-Tenant": "tenant-9",
    }
    r = post(fproxy.url, {"model": "lim-headers", "input": "x"}, headers=sent)
    assert r.status_code == 200, r.text
    got = mock.requests("lim-headers")[-1]["headers"]
    assert got["authorization"] == f"Bearer {API_KEY}"
    for name in FORWARDED:
        assert got.get(name) == sent[{"x-custom-trace": "X-Custom-Trace", "x-tenant": "X-Tenant"}[name]], got
    leaked = {
        k: v for k, v in got.items()
        if k in {h.lower() for h in sent} - set(FORWARDED) - {"connection"}
        or v in {v for h, v in sent.items() if h.lower() not in FORWARDED and h != "Connection"}
    }
    assert not leaked, f"forwarded to the backend: {leaked}"
    assert got.get("connection", "keep-alive").lower() in ("keep-alive", "close")


@pytest.mark.parametrize(
    "head",
    [
        b"Authorization: Bearer sk-\xe9\xe9\xe9-0123456789abcdef\r\n",
        b"X-Api-Key: sk-\xff\xfe-0123456789abcdef\r\n",
        b"Authorization: Bearer " + API_KEY.encode() + b"\r\nX-Custom-Trace: caf\xe9\r\n",
        b"Authorization: Bearer " + API_KEY.encode() + b"\r\nX-Request-ID: r\xe9q\r\n",
        b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Type: application/json; charset=\xe9\r\n",
    ],
    ids=["non-ascii-bearer", "non-ascii-x-api-key", "non-ascii-forwarded-header", "non-ascii-request-id", "non-ascii-ctype"],
)
def test_non_ascii_header_bytes_never_500(fproxy, mock, head):
    """Header values arrive as bytes (latin-1 to the app); they must be refused or passed, never crash."""
    status, data = raw_request(fproxy.port, head, orjson.dumps({"model": "lim-hdr", "input": "x"}))
    assert status in (200, 400, 401, 415), data[:300]
    assert b"internal_error" not in data, data[:400]


def test_size_limits_are_settings(proxy_factory, mock):
    """MAX_BODY_BYTES and MAX_UPSTREAM_EVENT_BYTES reach the edge: a 4 KiB body limit
    refuses a 5 KB request with 413 naming the limit, and a 2 KiB event limit fails a
    response whose backend sends a 3 KB event (while a 1 KB one passes)."""
    svc = proxy_factory(
        MAX_BODY_BYTES="4096", MAX_UPSTREAM_EVENT_BYTES="2048", WEB_CONCURRENCY="1", JSON_UPSTREAM="stream"
    )
    r = post(svc.url, _body_of_size(5000, "lim-settings"))
    assert r.status_code == 413 and "4096 bytes" in error_of(r)["message"], r.text
    assert post(svc.url, _body_of_size(4000, "lim-settings")).status_code == 200
    mock.script("lim-event", {"text": "x", "oversize_event_bytes": 3000}, {"text": "x", "oversize_event_bytes": 1000})
    r = post(svc.url, {"model": "lim-event", "input": "x"})
    assert r.status_code == 502 and "larger than 2048 bytes" in error_of(r)["message"], r.text
    assert post(svc.url, {"model": "lim-event", "input": "x"}).status_code == 200


def _stalled_upload(port: int, declared: int, sent: bytes, *, chunked: bool = False) -> tuple[float, bytes]:
    """Headers and the start of a body, then nothing: (seconds until the proxy answered and closed, its answer)."""
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: " + str(declared).encode() + b"\r\n"
    payload = (b"%x\r\n" % len(sent) + sent + b"\r\n") if chunked and sent else sent  # (no chunk at all)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer "
            + API_KEY.encode() + b"\r\n" + framing + b"\r\n" + payload
        )
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(65536):  # until the proxy closes the connection
            data += chunk
        return time.monotonic() - t0, data


def test_a_large_body_that_stalls_is_a_408_and_the_connection_closed(proxy_factory, mock):
    """uvicorn bounds no body read: without BODY_READ_TIMEOUT_SECS a client that stops sending
    holds the connection, and what it sent, for as long as it likes."""
    svc = proxy_factory(BODY_READ_TIMEOUT_SECS="1")
    mock.script("lim-slow", {"text": "never"})
    head = b'{"model": "lim-slow", "input": "' + b"a" * 100_000
    for chunked in (False, True):
        waited, answer = _stalled_upload(svc.port, len(head) + 1000, head, chunked=chunked)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
        doc = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert doc["error"]["code"] == "request_timeout" and doc["error"]["type"] == "invalid_request_error", doc
        assert b"connection: close" in answer.lower().split(b"\r\n\r\n", 1)[0]
        assert 0.9 <= waited < 20, waited
    assert mock.requests("lim-slow") == []
    # A body that keeps coming within the bound, and small bodies, are untouched; the workers serve on.
    mock.script("lim-steady", {"text": "fine"})

    def steady():
        yield b'{"model": "lim-steady", "input": "'
        for _ in range(5):
            time.sleep(0.1)
            yield b"b" * 30_000
        yield b'"}'

    r = httpx.post(svc.url + "/v1/responses", content=steady(), headers={**auth(), "Content-Type": "application/json"},
                   timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert post(svc.url, {"model": "lim-steady", "input": "small"}).status_code == 200


STALLS = {  # (Content-Length, or 0 and chunked; what is sent of the body)
    "small-body-cut": (200, b'{"model": "lim-stall", ', False),
    "small-body-none-of-it": (200, b"", False),
    "large-body-none-of-it": (500_000, b"", False),
    "chunked-no-chunk": (0, b"", True),
    "chunked-small-chunk": (0, b'{"model": "lim-stall", ', True),
}


@pytest.mark.parametrize("declared, sent, chunked", STALLS.values(), ids=STALLS.keys())
def test_a_small_or_empty_body_that_stalls_is_a_408_too(proxy_factory, mock, declared, sent, chunked):
    """Every body is bounded, not only those past the first body event: a client that sends its
    headers and a few bytes of a small body, or no byte of any body (Falcon waits for the first
    body event before routing), is answered 408 within the bound, and nothing goes upstream."""
    svc = proxy_factory(BODY_READ_TIMEOUT_SECS="1", WEB_CONCURRENCY="1")
    mock.script("lim-stall", {"text": "never"})
    waited, answer = _stalled_upload(svc.port, declared, sent, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower(), head
    assert orjson.loads(body)["error"]["code"] == "request_timeout"
    assert 0.9 <= waited < 5, waited  # the bound, plus at most two sweeps (a quarter of it each)
    assert mock.requests("lim-stall") == []
    assert post(svc.url, {"model": "lim-stall", "input": "small"}).status_code == 200  # the worker serves on


def _drip(port: int, head: bytes, pause: float) -> tuple[float, bytes]:
    """A request head sent a byte at a time, ``pause`` seconds apart, until the proxy answers or
    closes: (seconds from the first byte until it closed, its answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        t0 = time.monotonic()
        data = b""
        s.setblocking(False)
        for byte in head:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break  # closed by the proxy
            time.sleep(pause)
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                break
            data += chunk
            if not chunk:
                return time.monotonic() - t0, data
        s.setblocking(True)
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                data += chunk
        return time.monotonic() - t0, data


SLOW_HEAD = (
    b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: rid-slow-head\r\nAuthorization: Bearer "
    + API_KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


def test_a_request_head_that_drips_is_a_408_and_the_connection_closed(proxy_factory, mock):
    """uvicorn has no header timeout: a client sending its head a byte at a time (each byte
    cancelling uvicorn's keep-alive timer) held the connection for as long as it liked. Now the
    head, too, must come within BODY_READ_TIMEOUT_SECS: a JSON 408, the connection closed, and the
    metrics line an operator greps for (with the key and request id the head had brought so far)."""
    svc = proxy_factory(BODY_READ_TIMEOUT_SECS="1", WEB_CONCURRENCY="1")
    waited, answer = _drip(svc.port, SLOW_HEAD, 0.05)  # ~10 s for the whole head
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower(), head
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error", error
    assert set(error) == {"message", "type", "param", "code"} and "headers" in error["message"], error
    assert 0.9 <= waited < 4, waited  # the bound plus at most two sweeps, not the ~10 s of the drip
    line = wait_for(lambda: [c for c in completed_lines(svc) if c.http_status == 408], 5, what="a 408 metrics line")
    assert len(line) == 1 and line[0].status == "error" and line[0].model == "-", line
    assert httpx.get(svc.url + "/health", timeout=10).status_code == 200  # the worker serves on


@pytest.mark.parametrize("target, ctype, status", [
    (b"/v1/responses", b"text/plain", b"415"), (b"/v1/nowhere", b"application/json", b"404"),
], ids=["415", "404"])
def test_a_body_that_drips_after_an_early_answer_has_the_connection_closed(proxy_factory, target, ctype, status):
    """A request answered before its body came (a 415 for its Content-Type, a 404 for its path)
    leaves a kept-alive connection whose body is still due: uvicorn discards it, and each byte
    cancels its keep-alive timer, so a client dripping the declared body held the connection as long
    as it liked, past every bound (neither the body's nor the head's: the answer had begun, no new
    head had). Now it is closed within BODY_READ_TIMEOUT_SECS of the answer, plus two sweeps."""
    svc = proxy_factory(BODY_READ_TIMEOUT_SECS="1", WEB_CONCURRENCY="1")
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
        s.sendall(b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype
                  + b"\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 100000\r\n\r\n")
        answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
        assert b"connection: close" not in answer.lower()  # kept alive: the case at hand
        t0 = time.monotonic()
        s.setblocking(False)
        closed = None
        while closed is None and time.monotonic() - t0 < 8:
            try:
                s.sendall(b"a")
                time.sleep(0.25)  # well within uvicorn's keep-alive timeout: each byte restarts it
                closed = s.recv(65536) == b"" or None
            except BlockingIOError:
                continue
            except OSError:
                closed = True
        assert closed, "the connection was still open 8 s after the answer, its body still dripping"
        assert time.monotonic() - t0 < 4  # the bound plus at most two sweeps


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(proxy_factory):
    """A connection with no byte of a request (a preconnect, a probe) is closed at the bound, as
    HAProxy and nginx close it: no 408 nobody asked for, no metrics line for a request never made."""
    svc = proxy_factory(BODY_READ_TIMEOUT_SECS="1", WEB_CONCURRENCY="1")
    with socket.create_connection(("127.0.0.1", svc.port), timeout=30) as s:
        t0 = time.monotonic()
        assert s.recv(65536) == b""
        waited = time.monotonic() - t0
    assert 0.9 <= waited < 4, waited
    time.sleep(0.3)
    assert completed_lines(svc) == []


def _whole_answer(s: socket.socket) -> bytes:
    """One HTTP/1.1 answer read to the end of its Content-Length: a single ``recv`` may return its
    head alone (the body is a write of its own, so a segment of its own)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed mid-answer: {data[:300]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed mid-body: {data[:300]!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_slow_head_within_the_bound_and_an_idle_keep_alive_connection_are_served(proxy_factory, mock):
    """The bound is on a head's arrival, not on keep-alive: a head that comes in pieces within it is
    served, and a connection idle between requests for longer than it (uvicorn's keep-alive timer
    bounds that, 75 s) still takes its next request."""
    svc = proxy_factory(BODY_READ_TIMEOUT_SECS="2", WEB_CONCURRENCY="1")
    mock.script("lim-head", {"text": "one"}, {"text": "two"})
    body = b'{"model": "lim-head", "input": "x"}'
    request = (
        b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer "
        + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    with socket.create_connection(("127.0.0.1", svc.port), timeout=30) as s:
        for piece in (request[:20], request[20:60], request[60:]):
            s.sendall(piece)
            time.sleep(0.4)
        first = _whole_answer(s)
        assert first.startswith(b"HTTP/1.1 200 ") and b"one" in first, first[:300]
        time.sleep(3.5)  # idle past the bound, twice over a sweep
        s.sendall(request)
        second = _whole_answer(s)
        assert second.startswith(b"HTTP/1.1 200 ") and b"two" in second, second[:300]


def _cut_after_a_whole_chunk(port: int, path: str, body: bytes) -> None:
    """A chunked request whose one chunk holds a whole JSON body, then the client closes before the
    terminating ``0`` chunk (after the proxy has had time to read that chunk)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
            + b"Authorization: Bearer " + API_KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(body) + body + b"\r\n"
        )
        time.sleep(0.5)


def test_a_chunked_body_cut_at_a_chunk_boundary_is_never_acted_upon(proxy_factory, mock):
    """The body is a valid request up to its last whole chunk, but the client left before the
    terminator: the request is incomplete (499, client gone), so nothing goes upstream and
    nothing is stored, as for a body cut short of its Content-Length."""
    svc = proxy_factory(WEB_CONCURRENCY="1")
    mock.script("lim-cut", {"text": "never"})
    _cut_after_a_whole_chunk(svc.port, "/v1/responses", orjson.dumps({"model": "lim-cut", "input": "x"}))
    created = httpx.post(svc.url + "/v1/conversations", json={"metadata": {"v": "1"}}, headers=auth(), timeout=10)
    assert created.status_code == 200, created.text
    conversation = created.json()["id"]
    _cut_after_a_whole_chunk(svc.port, f"/v1/conversations/{conversation}", orjson.dumps({"metadata": {"v": "2"}}))
    time.sleep(0.5)
    assert mock.requests("lim-cut") == []
    got = httpx.get(f"{svc.url}/v1/conversations/{conversation}", headers=auth(), timeout=10)
    assert got.status_code == 200 and got.json()["metadata"] == {"v": "1"}, got.text
    cut = [c for c in completed_lines(svc) if c.http_status == 499]
    assert len(cut) == 2 and {c.status for c in cut} == {"client_disconnected"}, completed_lines(svc)
