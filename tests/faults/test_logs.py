"""Logs: exactly one ``request_completed`` line per request, failed ones included;
request ids; JSON log format."""
from __future__ import annotations

import re
import socket
import time

import httpx
import orjson
import pytest

from tests.conftest import API_KEY
from tests.faults.helpers import completed_for, completed_lines
from tests.http import auth, post, wait_for

LIMIT = 10 * 1024 * 1024


def _leave_mid_stream(url: str, model: str, rid: str) -> None:
    with httpx.Client(timeout=10) as client:
        headers = {**auth(), "X-Request-ID": rid}
        body = {"model": model, "input": "x", "stream": True}
        with client.stream("POST", url + "/v1/responses", json=body, headers=headers) as r:
            for line in r.iter_lines():
                if line.startswith("event: response.output_text.delta"):
                    break


def _abandon_json(port: int, model: str, rid: str) -> None:
    payload = orjson.dumps({"model": model, "input": "x"})
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
            + b"\r\nX-Request-ID: " + rid.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        time.sleep(0.5)


@pytest.mark.slow
def test_every_request_ends_with_exactly_one_completed_line(proxy_factory, mock):
    svc = proxy_factory(
        CIRCUIT_BREAKER_THRESHOLD="2", CIRCUIT_BREAKER_RECOVERY_SECS="60", SSE_KEEPALIVE_SECS="0.5",
        JSON_UPSTREAM="stream",  # its faults are streaming faults, for JSON clients too
    )
    mock.script("log-ok", {"text": "fine"})
    mock.script("log-slow", {"chunks": [f"s{i} " for i in range(60)], "delay": 0.1})
    mock.script("log-401", {"status": 401})
    mock.script("log-500", {"status": 500})
    url = svc.url
    cases: list[tuple[str, int, str | None, object]] = [
        # (request id, expected http_status, expected model or None, action)
        ("lg-json", 200, "log-ok", lambda rid: post(url, {"model": "log-ok", "input": "x"}, headers={"X-Request-ID": rid})),
        ("lg-sse", 200, "log-ok", lambda rid: post(url, {"model": "log-ok", "input": "x", "stream": True}, headers={"X-Request-ID": rid})),
        ("lg-badjson", 400, None, lambda rid: post(url, b"{nope", headers={"X-Request-ID": rid})),
        ("lg-badmodel", 400, None, lambda rid: post(url, {"model": "a b", "input": "x"}, headers={"X-Request-ID": rid})),
        ("lg-nokey", 401, "log-ok", lambda rid: post(url, {"model": "log-ok", "input": "x"}, key=None, headers={"X-Request-ID": rid})),
        ("lg-backend401", 401, "log-401", lambda rid: post(url, {"model": "log-401", "input": "x"}, headers={"X-Request-ID": rid})),
        ("lg-413", 413, None, lambda rid: post(url, b" " * (LIMIT + 1), headers={"X-Request-ID": rid})),
        ("lg-415", 415, None, lambda rid: post(url, b"{}", headers={"X-Request-ID": rid, "Content-Type": "text/plain"})),
        ("lg-404", 404, None, lambda rid: post(url, {"model": "log-ok"}, headers={"X-Request-ID": rid}, path="/v1/nothing")),
        ("lg-405", 405, None, lambda rid: httpx.get(url + "/v1/responses", headers={"X-Request-ID": rid})),
        ("lg-leave-sse", 200, "log-slow", lambda rid: _leave_mid_stream(url, "log-slow", rid)),
        ("lg-leave-json", None, "log-slow", lambda rid: _abandon_json(svc.port, "log-slow", rid)),
        ("lg-502a", 502, "log-500", lambda rid: post(url, {"model": "log-500", "input": "x"}, headers={"X-Request-ID": rid})),
        ("lg-502b", 502, "log-500", lambda rid: post(url, {"model": "log-500", "input": "x"}, headers={"X-Request-ID": rid})),
        # Two 500s opened log-500's breaker (only that model's): it is refused without a backend call.
        ("lg-503", 503, "log-500", lambda rid: post(url, {"model": "log-500", "input": "x"}, headers={"X-Request-ID": rid})),
    ]
    problems = []
    for rid, http_status, model, action in cases:
        r = action(rid)
        if isinstance(r, httpx.Response):
            assert r.headers.get("x-request-id") == rid, (rid, r.status_code, dict(r.headers))
            assert http_status is None or r.status_code == http_status, (rid, r.status_code, r.text[:300])
        lines = completed_for(svc, rid, timeout=5, settle=0.2 if rid != "lg-leave-sse" else 0.8)
        if len(lines) != 1:
            problems.append(f"{rid}: {len(lines)} request_completed lines")
            continue
        line = lines[0]
        if http_status is not None and line.http_status != http_status:
            problems.append(f"{rid}: http_status={line.http_status}, expected {http_status}")
        if model is not None and line.model != model:
            problems.append(f"{rid}: model={line.model!r}, expected {model!r}")
        print(f"  {rid}: {line}")
    leave = {c.request_id: c for c in completed_lines(svc)}
    for rid in ("lg-leave-sse", "lg-leave-json"):
        if rid in leave and leave[rid].status != "client_disconnected":
            problems.append(f"{rid}: status={leave[rid].status}")
    assert not problems, "\n".join(problems)
    # Health checks are not requests of the API: no metrics line for them.
    httpx.get(url + "/health", headers={"X-Request-ID": "lg-health"})
    time.sleep(0.3)
    assert not [c for c in completed_lines(svc) if c.request_id == "lg-health"]


def test_request_id_honoured_or_generated(fproxy, mock):
    mock.script("log-rid", {"text": "ok"})
    r = post(fproxy.url, {"model": "log-rid", "input": "x"}, headers={"X-Request-ID": "client-id-42"})
    assert r.headers["x-request-id"] == "client-id-42"
    assert mock.requests("log-rid")[-1]["headers"]["x-request-id"] == "client-id-42"
    generated = set()
    for bad in (None, "has space", "x" * 200, "ünï", "tab\tid"):
        headers = {"X-Request-ID": bad} if bad is not None else {}
        try:
            r = post(fproxy.url, {"model": "log-rid", "input": "x"}, headers=headers)
        except (UnicodeEncodeError, httpx.LocalProtocolError):
            continue  # httpx refuses to send it: nothing to test
        rid = r.headers["x-request-id"]
        assert rid != bad and re.fullmatch(r"req_[0-9a-f]{24}", rid), rid
        assert len(completed_for(fproxy, rid)) == 1
        generated.add(rid)
    assert len(generated) >= 4, generated
    # Also on refusals made before any parsing.
    r = post(fproxy.url, b"[]", headers={"X-Request-ID": "client-id-43"})
    assert r.status_code == 400 and r.headers["x-request-id"] == "client-id-43"


def test_routes_without_a_response_log_completed_when_they_succeed(fproxy, mock):
    """The stored-object, conversation and models routes set no status of their own: a 200 there
    is ``completed`` (as ``/input_tokens``), a refusal stays ``error``."""
    mock.script("log-store", {"text": "kept"})
    stored = post(fproxy.url, {"model": "log-store", "input": "x"}).json()["id"]
    headers = {**auth(), "Content-Type": "application/json"}
    conv = httpx.post(fproxy.url + "/v1/conversations", content=b"{}", headers=headers, timeout=10).json()["id"]
    cases = [
        ("lr-get", "GET", f"/v1/responses/{stored}", 200, "completed"),
        ("lr-items", "GET", f"/v1/responses/{stored}/input_items", 200, "completed"),
        ("lr-conv", "GET", f"/v1/conversations/{conv}", 200, "completed"),
        ("lr-conv-items", "GET", f"/v1/conversations/{conv}/items", 200, "completed"),
        ("lr-delete", "DELETE", f"/v1/responses/{stored}", 200, "completed"),
        ("lr-gone", "GET", f"/v1/responses/{stored}", 404, "error"),
        ("lr-bad-limit", "GET", f"/v1/conversations/{conv}/items?limit=0", 400, "error"),
    ]
    problems = []
    for rid, method, path, http_status, status in cases:
        r = httpx.request(method, fproxy.url + path, headers={**headers, "X-Request-ID": rid}, timeout=10)
        assert r.status_code == http_status, (rid, r.status_code, r.text[:300])
        lines = completed_for(fproxy, rid, timeout=5)
        if len(lines) != 1 or (lines[0].status, lines[0].http_status) != (status, http_status):
            problems.append(f"{rid}: {lines}, expected status={status} http_status={http_status}")
    assert not problems, "\n".join(problems)


def test_json_log_format(proxy_factory, mock):
    svc = proxy_factory(LOG_FORMAT="json")
    mock.script("log-json", {"text": "ok"})
    assert post(svc.url, {"model": "log-json", "input": "x"}, headers={"X-Request-ID": "js-1"}).status_code == 200
    assert post(svc.url, b"{", headers={"X-Request-ID": "js-2"}).status_code == 400
    assert post(svc.url, {"model": "log-json", "input": "x", "stream": True}, headers={"X-Request-ID": "js-3"}).status_code == 200

    def docs() -> list[dict]:
        out = []
        for line in svc.log_text().splitlines():
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict) and doc.get("event") == "request_completed":
                out.append(doc)
        return out

    found = wait_for(lambda: (lambda d: d if len(d) >= 3 else None)(docs()), 5, what="3 JSON metrics lines")
    by_id = {d["request_id"]: d for d in found}
    assert set(by_id) >= {"js-1", "js-2", "js-3"}
    for rid, status in (("js-1", 200), ("js-2", 400), ("js-3", 200)):
        d = by_id[rid]
        assert d["http_status"] == status and isinstance(d["duration_ms"], (int, float)) and d["duration_ms"] >= 0
        assert {"model", "status", "level", "ts", "message"} <= set(d), d
        assert d["message"].startswith("request_completed: model=")
    assert by_id["js-1"]["model"] == "log-json" and by_id["js-1"]["status"] == "completed"


def test_json_log_format_every_line_is_json(proxy_factory, mock):
    """A log shipper reading LOG_FORMAT=json gets nothing but JSON objects (gunicorn's and uvicorn's lines too)."""
    svc = proxy_factory(LOG_FORMAT="json")
    mock.script("log-json", {"text": "ok"})
    assert post(svc.url, {"model": "log-json", "input": "x"}).status_code == 200
    svc.stop()
    bad = []
    for line in svc.log_path.read_text("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            ok = isinstance(orjson.loads(line), dict)
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            bad.append(line)
    assert not bad, f"{len(bad)} non-JSON log lines, e.g.:\n" + "\n".join(bad[:6])
