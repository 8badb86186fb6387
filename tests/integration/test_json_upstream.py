"""JSON clients over a JSON upstream (``JSON_UPSTREAM=json``, the default).

A client that did not ask for a stream gets its answer from one non-streamed
chat call, translated by the same translator as streams. These tests pin what
that mode must keep: the same output as a stream would give, the total deadline
(a JSON backend is silent until it is done, so the idle timeout cannot apply),
the client leaving, and every backend fault, each ending as proxy.failures says.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from proxy.devtools import Service, start_proxy
from tests.conformance import check_response
from tests.conftest import API_KEY
from tests.http import error_of, post, wait_for


@pytest.fixture(scope="module")
def jproxy(mock_backend: Service, logs_dir: Path) -> Iterator[Service]:
    service = start_proxy(
        mock_backend.url + "/v1", logs_dir / "json-upstream-proxy.log",
        CIRCUIT_BREAKER_THRESHOLD="100000", BACKEND_TIMEOUT_SECS="3", BACKEND_IDLE_TIMEOUT_SECS="1",
    )
    yield service
    service.stop()


def _completion_body(**message: object) -> str:
    return orjson.dumps({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }).decode()


def test_answer_is_the_same_as_a_streamed_upstream_gives(jproxy, proxy_factory, mock):
    """Reasoning, text, a tool call and usage: one JSON body and a streamed upstream
    give the same Response (ids and times apart)."""
    script = {
        "reasoning": "Let me think.", "text": "Calling the tool.",
        "tool_calls": [{"id": "call_1", "name": "lookup", "arguments": {"q": "x"}}], "finish_reason": "tool_calls",
        "usage": {"prompt_tokens": 20, "completion_tokens": 8},
    }
    mock.script("ju-same", script)
    request = {"model": "ju-same", "input": "hi", "tools": [{"type": "function", "name": "lookup", "parameters": {}}]}
    from_json = check_response(post(jproxy.url, request).json())
    streamed_upstream = proxy_factory(JSON_UPSTREAM="stream")
    from_stream = check_response(post(streamed_upstream.url, request).json())
    assert [r["body"]["stream"] for r in mock.requests("ju-same")] == [False, True]

    def shape(doc: dict) -> list:
        return [{k: v for k, v in item.items() if k not in ("id", "call_id")} for item in doc["output"]]

    assert shape(from_json) == shape(from_stream) and len(from_json["output"]) == 3
    assert from_json["usage"] == from_stream["usage"] and from_json["usage"]["total_tokens"] == 28
    assert from_json["status"] == from_stream["status"] == "completed"


def test_slow_answer_waits_past_the_idle_timeout_until_the_deadline(jproxy, mock):
    """The idle timeout is 1 s and the deadline 3 s: a JSON backend silent for 2 s is
    not idle, it is working; one silent past the deadline is a 504."""
    mock.script("ju-slow", {"text": "worth the wait", "first_byte_delay": 2})
    r = post(jproxy.url, {"model": "ju-slow", "input": "x"})
    assert r.status_code == 200, r.text
    assert r.json()["output"][0]["content"][0]["text"] == "worth the wait"
    mock.script("ju-too-slow", {"text": "too late", "first_byte_delay": 6})
    t0 = time.monotonic()
    r = post(jproxy.url, {"model": "ju-too-slow", "input": "x"})
    assert r.status_code == 504 and error_of(r)["code"] == "backend_timeout", r.text
    assert time.monotonic() - t0 < 5.5
    rec = wait_for(lambda: [x for x in mock.requests("ju-too-slow") if x["ended_at"]], what="upstream closed")[0]
    assert rec["disconnected"] is True, "the upstream request was not closed at the deadline"


def test_client_leaving_closes_the_upstream_call(jproxy, mock):
    mock.script("ju-leave", {"text": "nobody reads this", "first_byte_delay": 5})
    payload = orjson.dumps({"model": "ju-leave", "input": "x"})
    with socket.create_connection(("127.0.0.1", jproxy.port)) as s:
        s.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(payload)).encode()
            + b"\r\n\r\n" + payload
        )
        wait_for(lambda: mock.requests("ju-leave"), what="the upstream call")
    left = time.time()
    rec = wait_for(lambda: [x for x in mock.requests("ju-leave") if x["ended_at"]], timeout=10, what="upstream end")[0]
    assert rec["disconnected"] is True and rec["completed"] is False, rec
    assert rec["ended_at"] - left < 1.0


@pytest.mark.parametrize(
    "script, status, code",
    [
        ({"status": 500, "error": {"message": "boom"}}, 502, "backend_error"),
        ({"raw": ["{not json"]}, 502, "invalid_chunk"),
        ({"raw": ["[1, 2]"]}, 502, "invalid_chunk"),
        ({"text": "half a body", "drop_after": 1}, 502, "backend_error"),
        ({"raw": ['{"error": {"message": "model overloaded", "code": "overloaded"}}']}, 502, "overloaded"),
        ({"raw": ['{"error": {"message": "too long", "code": "context_length_exceeded"}}']}, 400,
         "context_length_exceeded"),
    ],
    ids=["http-500", "invalid-json", "not-an-object", "body-cut", "error-object", "error-blames-request"],
)
def test_backend_faults(jproxy, mock, script, status, code):
    model = f"ju-fault-{status}-{code}"
    mock.script(model, script)
    r = post(jproxy.url, {"model": model, "input": "x"})
    assert r.status_code == status, r.text
    assert error_of(r)["code"] == code


def test_a_backend_that_streams_anyway_is_read_as_a_stream(jproxy, mock):
    """stream: false ignored, SSE sent: the answer is translated all the same."""
    chunk = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "streamed anyway"}}]}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    mock.script("ju-sse", {"content_type": "text/event-stream", "raw": [
        f"data: {orjson.dumps(chunk).decode()}\n\n", f"data: {orjson.dumps(end).decode()}\n\n", "data: [DONE]\n\n",
    ]})
    doc = check_response(post(jproxy.url, {"model": "ju-sse", "input": "x"}).json())
    assert doc["status"] == "completed" and doc["output"][0]["content"][0]["text"] == "streamed anyway"


def test_key_echoed_in_the_body_is_masked(jproxy, mock):
    mock.script("ju-echo", {"raw": [_completion_body(content=f"your key is {API_KEY}")]})
    r = post(jproxy.url, {"model": "ju-echo", "input": "x"})
    assert r.status_code == 200 and API_KEY not in r.text
    assert "your key is sk-tes" in r.text


def test_json_upstream_setting_is_validated():
    from proxy import settings

    with pytest.raises(settings.SettingsError, match="JSON_UPSTREAM"):
        settings.load({"JSON_UPSTREAM": "sometimes"})
    assert settings.load({}).json_upstream == "json"
