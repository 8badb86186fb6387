"""Hostile or unusual HTTP input found in review, each defect pinned through the real service.

- A body nested deeper than orjson can write back (it reads 1024 levels, writes 254) was
  accepted, then failed where the proxy serialized what it derived from it: a 500, or a
  background stream of nothing but ``[DONE]``.
- ``Content-Encoding`` was ignored: a gzip body got "not valid JSON (UTF-8): surrogates not
  allowed", a compressed body under any other coding was parsed as if it were plain.
- Found by the live fuzz: an input item's ``status``, a message's ``phase`` and a replayed
  ``output_text`` part's ``annotations`` and ``logprobs`` were never checked, so any value was
  stored and listed back by ``input_items`` in a shape the openai SDK's types refuse.
"""
from __future__ import annotations

import gzip
import json
import socket
import time

import httpx
import pytest

from proxy.logs import mask_key
from proxy.translate.validate import MAX_NESTING
from tests.conformance_ws import check_ws_error, check_ws_stream
from tests.conftest import API_KEY
from tests.faults.helpers import completed_for
from tests.http import auth, error_of, post
from tests.wsclient import open_ws, read_response, recv, send


def _nested(levels: int) -> dict:
    """An object ``levels`` levels deep (itself the first)."""
    doc: dict = {"leaf": 1}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


def _tool(parameters: dict) -> list[dict]:
    return [{"type": "function", "name": "f", "parameters": parameters}]


def _schema(schema: dict) -> dict:
    return {"format": {"type": "json_schema", "name": "s", "schema": schema}}


# Each a body nested 300 levels deep: orjson reads it (up to 1024), but cannot write it back (254).
DEEP = 300
_TOO_DEEP = [
    ("/v1/responses", {"model": "hostile-deep", "input": "x", "tools": _tool(_nested(DEEP))}),
    ("/v1/responses", {"model": "hostile-deep", "input": "x", "stream": True, "tools": _tool(_nested(DEEP))}),
    ("/v1/responses", {"model": "hostile-deep", "input": "x", "stream": True, "background": True,
                       "text": _schema(_nested(DEEP))}),
    ("/v1/responses", {"model": "hostile-deep", "input": [{"role": "user", "content": "x", "extra": _nested(DEEP)}]}),
    ("/v1/responses/compact", {"model": "hostile-deep", "input": "x", "tools": _tool(_nested(DEEP))}),
    ("/v1/responses/input_tokens", {"model": "hostile-deep", "input": "x", "tools": _tool(_nested(DEEP))}),
    ("/v1/conversations", {"items": [{"role": "user", "content": "x", "extra": _nested(DEEP)}]}),
]


@pytest.mark.parametrize("path,body", _TOO_DEEP, ids=[f"{i}:{p}" for i, (p, _) in enumerate(_TOO_DEEP)])
def test_a_body_nested_too_deep_is_a_400_before_anything_happens(proxy, mock, path, body):
    r = post(proxy.url, json.dumps(body).encode(), path=path)  # (orjson cannot write it either)
    assert r.status_code == 400, r.text[:300]
    err = error_of(r)
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json", err
    assert f"more than {MAX_NESTING} levels" in err["message"], err
    assert mock.requests("hostile-deep") == []


def test_a_body_nested_to_the_limit_is_served_in_every_form(proxy, mock):
    """At MAX_NESTING, everything derived from the body (chat request, Response, events, stored
    records, the background event log) is still written."""
    mock.script("hostile-deep-ok", {"text": "fine"})
    deep = _nested(MAX_NESTING - 5)  # under tools[0].parameters: the body is MAX_NESTING deep
    for extra in ({}, {"stream": True}, {"stream": True, "background": True}):
        body = {"model": "hostile-deep-ok", "input": "x", "tools": _tool(deep), "text": _schema(deep), **extra}
        r = post(proxy.url, body)
        assert r.status_code == 200, r.text[:300]
        if extra.get("stream"):
            assert b"response.created" in r.content and r.content.endswith(b"data: [DONE]\n\n"), r.content[-300:]
    r = post(proxy.url, {"items": [{"role": "user", "content": "x", "extra": _nested(MAX_NESTING - 3)}]},
             path="/v1/conversations")
    assert r.status_code == 200, r.text[:300]


def test_a_websocket_create_nested_too_deep_is_a_400_event(proxy, mock):
    with open_ws(proxy.url) as ws:
        send(ws, {"type": "response.create", "model": "hostile-deep", "input": "x", "tools": _tool(_nested(DEEP))})
        error = check_ws_error(recv(ws), 400, "invalid_json")
        assert f"more than {MAX_NESTING} levels" in error["message"]
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "still here?", "store": False})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
    assert mock.requests("hostile-deep") == []


@pytest.mark.parametrize("coding,compress", [
    ("gzip", gzip.compress), ("br", lambda b: b), ("x-unknown", lambda b: b), ("gzip, identity", gzip.compress),
], ids=["gzip", "br-header-plain-body", "unknown", "two-codings"])
@pytest.mark.parametrize("path", ["/v1/responses", "/v1/conversations"])
def test_a_content_encoded_body_is_a_415_naming_the_coding(proxy, mock, coding, compress, path):
    body = json.dumps({"model": "hostile-coding", "input": "x", "store": False}).encode()
    r = post(proxy.url, compress(body), headers={"Content-Encoding": coding}, path=path)
    assert r.status_code == 415, r.text[:300]
    err = error_of(r)
    assert err["code"] == "unsupported_content_encoding" and repr(coding) in err["message"], err
    assert mock.requests("hostile-coding") == []


def test_identity_content_encoding_is_a_plain_body(proxy, mock):
    mock.script("hostile-identity", {"text": "plain"})
    body = json.dumps({"model": "hostile-identity", "input": "x", "store": False}).encode()
    for coding in ("identity", "Identity", ""):
        r = post(proxy.url, body, headers={"Content-Encoding": coding})
        assert r.status_code == 200, (coding, r.text[:300])


def _send_then_leave(port: int, path: str, body: bytes, rid: str) -> None:
    """A request whose Content-Length promises 10 bytes more than it sends; the client then leaves."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nX-Request-ID: {rid}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + 10}\r\n\r\n".encode() + body
        )
        time.sleep(0.5)  # the proxy has read what came and waits for the rest


def test_a_body_cut_short_by_the_client_leaving_is_not_acted_on(proxy, mock):
    mock.script("hostile-cut", {"text": "billed anyway"})
    _send_then_leave(proxy.port, "/v1/responses",
                     json.dumps({"model": "hostile-cut", "input": "x", "background": True}).encode(), "hostile-cut-bg")
    conversation = httpx.post(proxy.url + "/v1/conversations", json={}, headers=auth(), timeout=10).json()["id"]
    items = json.dumps({"items": [{"role": "user", "content": "never sent whole"}]}).encode()
    _send_then_leave(proxy.port, f"/v1/conversations/{conversation}/items", items, "hostile-cut-items")
    for rid in ("hostile-cut-bg", "hostile-cut-items"):
        (line,) = completed_for(proxy, rid)
        assert (line.status, line.http_status) == ("client_disconnected", 499), line
    time.sleep(1.0)  # (a background job would have called the backend by now)
    assert mock.requests("hostile-cut") == []
    listed = httpx.get(proxy.url + f"/v1/conversations/{conversation}/items", headers=auth(), timeout=10).json()
    assert listed["data"] == [], listed


@pytest.mark.parametrize("headers", [
    [("Authorization", f"Bearer {API_KEY}"), ("Authorization", "Bearer sk-second-0123456789abcdef")],
    [("X-Api-Key", API_KEY), ("X-Api-Key", "sk-second-0123456789abcdef")],
    [("Authorization", f"Bearer {API_KEY} sk-second-0123456789abcdef")],
], ids=["two-authorization", "two-x-api-key", "two-tokens"])
def test_more_than_one_key_is_a_401_and_neither_goes_upstream(proxy, mock, headers):
    body = {"model": "hostile-keys", "input": "x", "store": False}
    r = httpx.post(proxy.url + "/v1/responses", json=body, headers=headers, timeout=10)
    assert r.status_code == 401, r.text[:300]
    err = error_of(r)
    assert err["code"] == "invalid_api_key" and "one API key" in err["message"], err
    assert API_KEY not in r.text and "sk-second" not in r.text
    assert mock.requests("hostile-keys") == []


def test_debug_logging_masks_the_keys_of_a_websocket_handshake(proxy_factory, mock):
    svc = proxy_factory(LOG_LEVEL="debug", WEB_CONCURRENCY="1")
    bearer, header = "sk-hostile-debug-0123456789-BEARER", "sk-hostile-debug-0123456789-XAPIKEY"
    with open_ws(svc.url, key=bearer) as ws:
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "x", "store": False})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
    with open_ws(svc.url, key="", headers={"X-Api-Key": header}) as ws:
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "x", "store": False})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
    svc.stop()
    log = svc.log_path.read_text("utf-8", "replace")
    assert "< upgrade: websocket" in log  # the handshake's debug lines are there…
    for key in (bearer, header):
        leaked = [line for line in log.splitlines() if key in line or key[9:] in line]
        assert not leaked, leaked[:3]
    # …with the keys masked.
    assert f"< authorization: {mask_key('Bearer ' + bearer)}" in log
    assert f"< x-api-key: {mask_key(header)}" in log


@pytest.mark.parametrize("method,action,allowed", [
    ("POST", "input_items", "GET"), ("DELETE", "input_items", "GET"), ("GET", "cancel", "POST"), ("PUT", "cancel", "POST"),
])
def test_a_stored_responses_action_answers_405_with_its_own_allow(proxy, method, action, allowed):
    path = f"/v1/responses/resp_hostile/{action}"
    r = httpx.request(method, proxy.url + path, headers=auth(), timeout=10)
    assert r.status_code == 405, r.text[:300]
    assert error_of(r)["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["allow"].split(",")} == {allowed, "OPTIONS"}, r.headers["allow"]


def test_an_input_item_status_the_sdk_has_not_is_a_400_and_a_valid_one_is_listed_conformant(proxy, mock):
    from tests.tap import check_stored_object

    mock.script("hostile-status", {"text": "ok"}, {"text": "ok"})
    for status in ("bogus", 7):
        r = post(proxy.url, {"model": "hostile-status", "input": [{"role": "user", "content": "x", "status": status}]})
        assert r.status_code == 400, r.text[:300]
        err = error_of(r)
        assert err["param"] == "input[0].status" and err["type"] == "invalid_request_error", err
    assert mock.requests("hostile-status") == []
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "status": "incomplete"}
    r = post(proxy.url, {"model": "hostile-status", "input": [
        {"role": "user", "content": "x", "status": "in_progress"}, call,
        {"type": "function_call_output", "call_id": "c1", "output": "o", "status": None}]})
    assert r.status_code == 200, r.text[:300]
    path = f"/v1/responses/{r.json()['id']}/input_items"
    listing = httpx.get(proxy.url + path, headers=auth(), timeout=10)
    assert listing.status_code == 200 and check_stored_object(path, listing.json())
    assert [item.get("status") for item in listing.json()["data"]] == ["completed", "incomplete", "in_progress"]


def test_a_message_phase_the_sdk_has_not_is_a_400_and_a_valid_one_is_listed_conformant(proxy, mock):
    from tests.tap import check_stored_object

    mock.script("hostile-phase", {"text": "ok"})
    said = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]}
    r = post(proxy.url, {"model": "hostile-phase", "input": [{**said, "phase": {"x": 1}}, {"role": "user", "content": "x"}]})
    assert r.status_code == 400 and error_of(r)["param"] == "input[0].phase", r.text[:300]
    assert mock.requests("hostile-phase") == []
    r = post(proxy.url, {"model": "hostile-phase", "input": [{**said, "phase": "commentary"}, {"role": "user", "content": "x"}]})
    assert r.status_code == 200, r.text[:300]
    path = f"/v1/responses/{r.json()['id']}/input_items"
    listing = httpx.get(proxy.url + path, headers=auth(), timeout=10)
    assert listing.status_code == 200 and check_stored_object(path, listing.json())
    assert listing.json()["data"][1]["phase"] == "commentary"


def test_a_replayed_output_text_part_is_checked_and_listed_conformant(proxy, mock):
    from tests.tap import check_stored_object

    mock.script("hostile-notes", {"text": "ok"})
    cite = {"type": "url_citation", "start_index": 0, "end_index": 1, "url": "https://x", "title": "t"}
    logprob = {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}

    def said(**part: object) -> dict:
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a", **part}]}

    for bad, param in ((said(annotations=[{**cite, "start_index": [31]}]), "annotations[0].start_index"),
                       (said(annotations=None), "annotations"), (said(logprobs=[{"token": "a"}]), "logprobs[0].logprob")):
        r = post(proxy.url, {"model": "hostile-notes", "input": [bad, {"role": "user", "content": "x"}]})
        assert r.status_code == 400 and error_of(r)["param"] == "input[0].content[0]." + param, r.text[:300]
    assert mock.requests("hostile-notes") == []
    r = post(proxy.url, {"model": "hostile-notes", "input": [said(annotations=[cite], logprobs=[logprob]),
                                                           {"role": "user", "content": "x"}]})
    assert r.status_code == 200, r.text[:300]
    path = f"/v1/responses/{r.json()['id']}/input_items"
    listing = httpx.get(proxy.url + path, headers=auth(), timeout=10)
    assert listing.status_code == 200 and check_stored_object(path, listing.json())
    assert listing.json()["data"][1]["content"][0]["annotations"] == [cite]
