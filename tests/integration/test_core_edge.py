"""Where the translation core meets the HTTP edge, through the real service.

- Every refusal the core makes (``InvalidRequest``) reaches the client as the
  same OpenAI-shaped 400 it always did, byte for byte (the recorded corpus in
  ``tests/fixtures/request_errors.py``).
- The stream translator's warnings (calls it kept from the client) are logged,
  as the request's own are.
- ``REASONING_IN_HISTORY=false`` keeps replayed reasoning away from the backend.
"""
from __future__ import annotations

import dataclasses

import httpx
import orjson

from proxy.translate.request import TranslationPolicy
from tests.conftest import API_KEY
from tests.fixtures.request_errors import load
from tests.http import auth, post, wait_for

DEFAULT_POLICY = dataclasses.asdict(TranslationPolicy())


def test_core_refusals_reach_the_client_byte_for_byte(proxy):
    cases = [e for e in load() if isinstance(e["body"], dict) and e["policy"] == DEFAULT_POLICY]
    assert len(cases) > 100
    with httpx.Client(base_url=proxy.url, headers=auth(), timeout=30) as client:
        for case in cases:
            r = client.post("/v1/responses", content=orjson.dumps(case["body"]),
                            headers={"Content-Type": "application/json"})
            err = case["error"]
            want = {"error": {"message": err["message"], "type": err["type"], "param": err["param"],
                              "code": err["code"]}}
            assert (r.status_code, r.content) == (err["status"], orjson.dumps(want)), case["body"]


def test_stream_side_warnings_are_logged(proxy, mock):
    mock.script("edge-allowed", {"tool_calls": [{"id": "call_1", "name": "forbidden", "arguments": "{}"},
                                                {"id": "call_2", "name": "ok", "arguments": "{}"}]})
    tools = [{"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}}
             for n in ("ok", "forbidden")]
    body = {"model": "edge-allowed", "input": "go", "tools": tools,
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "ok"}]}}
    for stream in (False, True):
        rid = f"edge-warn-{int(stream)}"
        r = post(proxy.url, {**body, "stream": stream}, headers={"X-Request-ID": rid})
        assert r.status_code == 200
        assert b"forbidden" not in r.content.replace(b'"name":"forbidden"', b"")  # only the echoed tool
        line = wait_for(lambda: [ln for ln in proxy.log_text().splitlines() if f"request_id={rid} " in ln
                                 and "dropped upstream tool call 'forbidden': not in allowed_tools" in ln],
                        what="the drop warning in the log")
        assert "WARNING" in line[0] and API_KEY not in proxy.log_text()
