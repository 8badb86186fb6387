"""Each row of the failure taxonomy (``proxy.failures``) end to end, JSON and SSE, through the real service.

For every way an answer can fail after the backend accepted the request — a stream cut short, a
chunk we cannot read, a backend error that blames the request, a backend error of its own, a
``finish_reason`` of ``abort``, and a bug of ours — the openai SDK (through the conformance tap)
must see the same precise code in every mode:

* a JSON client: the HTTP status and the error body's ``code``, with the backend answering one
  JSON body (``JSON_UPSTREAM=json``, where the failure has a JSON form) and streaming
  (``JSON_UPSTREAM=stream``);
* a streaming client: the ``error`` event's ``code`` and ``response.failed``'s ``error.code``
  (one of the SDK's ``ResponseError`` values: ``invalid_prompt`` for a request the backend
  refused), once output has begun; before any output, the JSON client's status and body.

And the circuit breaker hears what the taxonomy says: a backend failure counts, a refusal of the
request is the backend working (the count resets), our own bug says nothing about the backend.

"Our own bug" is a real fault in our code: the service runs with a ``sitecustomize`` that makes
the message builder raise on one marker text, a content string the shape check admits, so the
exception comes from inside the translator exactly as a bug would.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from proxy.devtools import ROOT, Service, start_proxy
from tests.integration.test_real_backends import tapped_client
from tests.mock_client import MockControl

MARKER = "\u2063inject-fault\u2063"
SITECUSTOMIZE = f'''
"""Test-only fault injection (tests/integration/test_taxonomy.py): text {MARKER!r} makes our
message builder raise, as a bug in our translator would."""
from proxy.translate.stream import message as _message

_text = _message.MessageBuilder.text


def _faulty_text(self, text, lp):
    if {MARKER!r} in text:
        raise RuntimeError("injected fault")
    return _text(self, text, lp)


_message.MessageBuilder.text = _faulty_text
'''


def _event(obj: object) -> str:
    return "data: " + orjson.dumps(obj).decode() + "\n\n"


def _content(text: str) -> str:
    return _event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})


ROLE = _event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
DONE = "data: [DONE]\n\n"
CONTEXT_ERROR = {"message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
                 "code": "context_length_exceeded", "param": "messages"}
OWN_ERROR = {"message": "CUDA out of memory.", "type": "server_error", "code": 500}  # vLLM: an HTTP-like code


@dataclass(frozen=True)
class Row:
    name: str
    sse: list[str]  # the streamed answer (the first piece is output, then the failure)
    json_body: str | None  # the same failure as one JSON answer, where it has one
    status: int  # a JSON client's HTTP status
    code: str  # the precise code: JSON body, SSE error event
    response_code: str  # response.failed's error.code
    breaker: str  # "failure": counted; "success": the count resets; "none": not told


ROWS = [
    Row("truncated", [ROLE + _content("Hel"), _content("lo")], None,
        502, "truncated", "server_error", "failure"),
    Row("invalid_chunk", [ROLE + _content("Hel"), "data: {\"choices\": [{\"delta\n\n", DONE], "{\"choices\": [",
        502, "invalid_chunk", "server_error", "failure"),
    Row("backend_refused_the_request", [ROLE + _content("Hel"), _event({"error": CONTEXT_ERROR}), DONE],
        orjson.dumps({"error": CONTEXT_ERROR}).decode(),
        400, "context_length_exceeded", "invalid_prompt", "success"),
    Row("backend_error_of_its_own", [ROLE + _content("Hel"), _event({"error": OWN_ERROR}), DONE],
        orjson.dumps({"error": OWN_ERROR}).decode(),
        502, "backend_error", "server_error", "failure"),
    Row("finish_reason_abort", [ROLE + _content("Hel"), _event({"choices": [{"index": 0, "delta": {},
                                                                             "finish_reason": "abort"}]}), DONE],
        orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hel"},
                                   "finish_reason": "abort"}]}).decode(),
        502, "backend_error", "server_error", "failure"),
    Row("our_own_bug", [ROLE + _content("Hel"), _content(MARKER), DONE],
        orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": MARKER},
                                   "finish_reason": "stop"}]}).decode(),
        500, "internal_error", "server_error", "none"),
]
IDS = [row.name for row in ROWS]


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inject-fault")
    (path / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    return path


def _service(mock_backend: Service, log: Path, fault_dir: Path, **env: str) -> Service:
    # The proxy's own root must be importable when sitecustomize runs (before gunicorn adds it).
    pythonpath = os.pathsep.join(p for p in (str(fault_dir), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return start_proxy(mock_backend.url + "/v1", log, PYTHONPATH=pythonpath, CIRCUIT_BREAKER_THRESHOLD="1000", **env)


@pytest.fixture(scope="module")
def json_upstream(mock_backend: Service, logs_dir: Path, fault_dir: Path) -> Iterator[Service]:
    service = _service(mock_backend, logs_dir / "proxy-taxonomy.log", fault_dir)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def stream_upstream(mock_backend: Service, logs_dir: Path, fault_dir: Path) -> Iterator[Service]:
    service = _service(mock_backend, logs_dir / "proxy-taxonomy-stream.log", fault_dir, JSON_UPSTREAM="stream")
    yield service
    service.stop()


def _failures(service: Service) -> int:
    return int(httpx.get(service.url + "/health", timeout=10).json()["circuit_breaker"]["consecutive_failures"])


class _Breaker:
    """Primes the count with one backend failure, so all three verdicts are told apart."""

    def __init__(self, service: Service, mock: MockControl) -> None:
        mock.script("prime-failure", {"status": 500}, replace=True)
        r = httpx.post(service.url + "/v1/responses", json={"model": "prime-failure", "input": "x"},
                       headers={"Authorization": "Bearer sk-taxonomy"}, timeout=30)
        assert r.status_code == 502, r.text
        self.service = service
        self.before = _failures(service)
        assert self.before >= 1

    def check(self, verdict: str) -> None:
        want = {"failure": self.before + 1, "success": 0, "none": self.before}[verdict]
        assert _failures(self.service) == want, verdict


def _sse_script(row: Row) -> dict[str, object]:
    # The writes go out apart, so the answer has begun (the client has output) when the failure comes.
    return {"raw": row.sse, "content_type": "text/event-stream", "delay": 0.3}


def _json_fails(client: openai.OpenAI, model: str, row: Row) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model=model, input="Hello")
    assert (info.value.status_code, info.value.code) == (row.status, row.code), info.value.body


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_streaming_client(row: Row, json_upstream: Service, mock: MockControl) -> None:
    model = "tax-sse-" + row.name
    mock.script(model, _sse_script(row), replace=True)
    breaker = _Breaker(json_upstream, mock)
    with tapped_client(json_upstream) as client:
        events = list(client.responses.create(model=model, input="Hello", stream=True))
    assert [e.type for e in events][-2:] == ["error", "response.failed"], [e.type for e in events]
    error, failed = events[-2], events[-1]
    assert error.code == row.code
    assert failed.response.error is not None and failed.response.error.code == row.response_code
    assert any(e.type == "response.output_text.delta" for e in events)  # the answer had begun
    breaker.check(row.breaker)


@pytest.mark.parametrize("row", [r for r in ROWS if r.json_body is not None], ids=lambda r: r.name)
def test_json_client(row: Row, json_upstream: Service, mock: MockControl) -> None:
    model = "tax-json-" + row.name
    assert row.json_body is not None
    mock.script(model, {"raw": [row.json_body], "content_type": "application/json"}, replace=True)
    breaker = _Breaker(json_upstream, mock)
    with tapped_client(json_upstream) as client:
        _json_fails(client, model, row)
    assert mock.requests(model)[0]["body"]["stream"] is False
    breaker.check(row.breaker)
    if row.name == "our_own_bug":
        # Logged as ours, with its traceback; never as the backend's fault.
        log = json_upstream.log_text()
        assert "internal error while relaying the answer" in log and "RuntimeError: injected fault" in log


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_json_client_with_stream_upstream(row: Row, stream_upstream: Service, mock: MockControl) -> None:
    model = "tax-json-stream-" + row.name
    mock.script(model, {"raw": row.sse, "content_type": "text/event-stream"}, replace=True)
    breaker = _Breaker(stream_upstream, mock)
    with tapped_client(stream_upstream) as client:
        _json_fails(client, model, row)
    assert mock.requests(model)[0]["body"]["stream"] is True
    breaker.check(row.breaker)


@pytest.mark.parametrize("row", [r for r in ROWS if r.name != "truncated"], ids=lambda r: r.name)
def test_streaming_client_before_any_output_gets_the_json_clients_answer(
    row: Row, json_upstream: Service, mock: MockControl
) -> None:
    """The failure comes before any output: the stream is answered as a JSON request is, with
    the same status and code (as OpenAI answers an invalid request)."""
    model = "tax-sse-early-" + row.name
    first, *rest = row.sse
    mock.script(model, {"raw": [ROLE, *rest], "content_type": "text/event-stream"}, replace=True)
    with tapped_client(json_upstream) as client:
        with pytest.raises(openai.APIStatusError) as info:
            list(client.responses.create(model=model, input="Hello", stream=True))
    assert (info.value.status_code, info.value.code) == (row.status, row.code), info.value.body

