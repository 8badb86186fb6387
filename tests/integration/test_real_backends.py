"""Every recorded answer of a real Chat Completions server, replayed byte for byte by the mock
backend, through the real service (gunicorn, 2 Uvicorn workers), to the official openai SDK.

The fixtures and what each server meant are in ``tests/fixtures/backends`` (see its
``manifest.json``). Each recording is replayed for the client that would really receive it:

* an SSE recording answers a streaming client, and a JSON client of a service run with
  ``JSON_UPSTREAM=stream`` (which streams upstream for JSON clients too);
* a JSON body answers a JSON client (the default ``JSON_UPSTREAM=json`` asks for one), and a
  streaming client of a backend that ignores ``stream: true``.

Every time the client gets strictly valid output (the tap validates every event and body with
``tests/conformance.py``) that says what the server meant: text, reasoning, tool calls, usage
numbers, status; the failure message names each difference. Each streamed recording is also
cut short (the connection broken half-way): that must never read as completed. And what the
service cannot carry into the Response is logged once per request at debug level.
``tests/unit/test_real_backends_unit.py`` is the fast twin that feeds the same bytes through
the relay in-process.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from proxy.devtools import Service, start_proxy
from tests.conftest import API_KEY
from tests.fixtures.backends import Fixture, load_all, meaning, mismatches
from tests.mock_client import MockControl
from tests.tap import RecordingTap, check_exchanges

FIXTURES = load_all()
SSE = [fx for fx in FIXTURES if fx.format == "sse"]
JSON = [fx for fx in FIXTURES if fx.format == "json"]
STREAMED = [fx for fx in SSE if len(fx.pieces()) > 1]
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def _service(mock_backend: Service, log: Path, **env: str) -> Service:
    # The circuit breaker is off: several recordings are failures by design (a mid-stream
    # error, a stream cut short), and they must neither open a breaker shared with other
    # tests nor turn the next fixture's answer into a 503.
    return start_proxy(mock_backend.url + "/v1", log, CIRCUIT_BREAKER_ENABLED="false", **env)


@pytest.fixture(scope="module")
def proxy(mock_backend: Service, logs_dir: Path) -> Iterator[Service]:
    """The deployed service (default ``JSON_UPSTREAM=json``) in front of the session's mock.

    Overrides the session ``proxy`` (and so the ``openai_client`` built on it) for this module.
    """
    service = _service(mock_backend, logs_dir / "proxy-real-backends.log")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def stream_upstream(mock_backend: Service, logs_dir: Path) -> Iterator[Service]:
    """The same service with ``JSON_UPSTREAM=stream``: JSON clients' answers are streamed upstream."""
    service = _service(mock_backend, logs_dir / "proxy-real-backends-stream.log", JSON_UPSTREAM="stream")
    yield service
    service.stop()


@contextlib.contextmanager
def tapped_client(service: Service) -> Iterator[openai.OpenAI]:
    """The openai SDK on ``service`` through the conformance tap (every answer validated on exit)."""
    with RecordingTap(service.url) as tap:
        with openai.OpenAI(base_url=tap.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
            yield client
        check_exchanges(tap)


@pytest.fixture
def stream_upstream_client(stream_upstream: Service) -> Iterator[openai.OpenAI]:
    with tapped_client(stream_upstream) as client:
        yield client


def _explain(fx: Fixture, problems: list[str]) -> str:
    return f"{fx.id} ({fx.server}; quirks: {'; '.join(fx.quirks)}):\n  " + "\n  ".join(problems)


def _upstream_stream_flag(mock: MockControl, fx: Fixture) -> bool:
    """What the service asked the backend for (the recorded bytes were its answer); one request only."""
    requests = mock.requests(fx.model)
    assert len(requests) == 1, len(requests)
    return requests[0]["body"].get("stream") is True


def _check_streamed(fx: Fixture, client: openai.OpenAI) -> None:
    events = list(client.responses.create(**fx.request_body(stream=True)))
    assert events and events[-1].type in TERMINAL, [e.type for e in events][-5:]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    problems = mismatches(meaning(events[-1].response.model_dump(mode="json")), fx)
    assert not problems, _explain(fx, problems)


def _check_json(fx: Fixture, client: openai.OpenAI) -> None:
    body = fx.request_body(stream=False)
    if fx.expect["status"] == "failed":
        # A failed answer reaches a JSON client as an OpenAI-shaped error (the tap checks
        # the shape) that carries what the server said. Which status (502, or 4xx for an
        # error the request caused, like Groq's tool_use_failed) is the taxonomy's
        # (tests/integration/test_taxonomy.py pins it).
        with pytest.raises(openai.APIStatusError) as info:
            client.responses.create(**body)
        assert info.value.status_code >= 400, info.value.status_code
        needle = fx.expect.get("error_message_contains")
        assert needle is None or needle in info.value.message, _explain(
            fx, [f"error: got {info.value.message!r}, it should carry {needle!r}"]
        )
        return
    try:
        response = client.responses.create(**body)
    except openai.APIStatusError as exc:
        pytest.fail(_explain(fx, [f"the proxy answered {exc.status_code} {exc.message!r}, the server meant {fx.expect['status']}"]))
    problems = mismatches(meaning(response.model_dump(mode="json")), fx)
    assert not problems, _explain(fx, problems)


def _replay(fx: Fixture, client: openai.OpenAI, mock: MockControl, *, stream: bool, upstream_streams: bool) -> None:
    """The recording answers a streaming or a JSON request; the service asked the backend for a stream or not."""
    mock.script(fx.model, fx.mock_script(), replace=True)
    (_check_streamed if stream else _check_json)(fx, client)
    assert _upstream_stream_flag(mock, fx) is upstream_streams


@pytest.mark.parametrize("fx", SSE, ids=lambda fx: fx.id)
def test_sse_to_streaming_client(fx: Fixture, openai_client: openai.OpenAI, mock: MockControl) -> None:
    _replay(fx, openai_client, mock, stream=True, upstream_streams=True)


@pytest.mark.parametrize("fx", SSE, ids=lambda fx: fx.id)
def test_sse_to_json_client_with_stream_upstream(
    fx: Fixture, stream_upstream_client: openai.OpenAI, mock: MockControl
) -> None:
    _replay(fx, stream_upstream_client, mock, stream=False, upstream_streams=True)


@pytest.mark.parametrize("fx", JSON, ids=lambda fx: fx.id)
def test_json_body_to_json_client(fx: Fixture, openai_client: openai.OpenAI, mock: MockControl) -> None:
    _replay(fx, openai_client, mock, stream=False, upstream_streams=False)


@pytest.mark.parametrize("fx", JSON, ids=lambda fx: fx.id)
def test_json_body_to_streaming_client(fx: Fixture, openai_client: openai.OpenAI, mock: MockControl) -> None:
    """A backend that ignores ``stream: true`` and answers with one JSON body."""
    _replay(fx, openai_client, mock, stream=True, upstream_streams=True)


@pytest.mark.parametrize("fx", STREAMED, ids=lambda fx: fx.id)
def test_cut_short_is_never_completed(fx: Fixture, openai_client: openai.OpenAI, mock: MockControl) -> None:
    """The same recording with the connection broken half-way: whatever rule makes a clean end
    without a finish reason count as completed, a stream cut short must end as failed.

    The recorded writes go out a few ms apart (a server's pace, not one coalesced write), so the
    answer has begun when the connection breaks and the client sees ``response.failed``. Should
    the break reach the service before any output (a busy machine can merge the reads), the
    client gets the HTTP error a JSON client would get instead: still never completed.
    """
    model = fx.model + "-cut"
    mock.script(model, fx.mock_script(drop_after=len(fx.pieces()) // 2, delay=0.005), replace=True)
    try:
        events = list(openai_client.responses.create(**{**fx.request_body(stream=True), "model": model}))
    except openai.APIStatusError as exc:
        assert exc.status_code == 502 and exc.code == "backend_error", (exc.status_code, exc.code)
        return
    assert events[-1].type == "response.failed", (fx.id, [e.type for e in events][-3:])
    assert events[-1].response.status == "failed"


# Recordings with fields the Response cannot carry, and without; answered, failed mid-stream.
LOGGED = ["openrouter/annotations-in-delta.sse", "groq/compound-reasoning-executed-tools-x-groq-usage.sse",
          "groq/event-error-tool-use-failed.sse", "azure/content-filter-results.json", "xai/reasoning.json",
          "mistral/thinking-content-parts.sse", "llamacpp/error-field-line-then-done.sse"]


def test_what_cannot_be_mapped_is_logged_once_per_request_at_debug(
    proxy_factory: Callable[..., Service], mock: MockControl
) -> None:
    """With LOG_LEVEL=debug, each request whose answer carried fields the Response cannot hold
    logs them in one line (the manifest's ``unmapped`` list), and a request without any logs none."""
    service = proxy_factory(LOG_LEVEL="debug", CIRCUIT_BREAKER_ENABLED="false")
    by_id = {fx.id: fx for fx in FIXTURES}
    sent: list[tuple[str, Fixture]] = []
    with openai.OpenAI(base_url=service.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        for n, fx in enumerate(by_id[i] for i in LOGGED):
            mock.script(fx.model, fx.mock_script(), replace=True)
            request_id = f"req-unmapped-{n}"
            body = fx.request_body(stream=fx.format == "sse")
            try:
                result = client.responses.create(**body, extra_headers={"X-Request-ID": request_id})
                if body["stream"]:
                    list(result)  # type: ignore[arg-type]  # a Stream when stream=True
            except openai.APIStatusError:
                assert fx.expect["status"] == "failed", fx.id
            sent.append((request_id, fx))
    deadline = time.monotonic() + 30
    while True:  # each request's lines are all written once its request_completed line is
        log = service.log_text()
        if all(f"request_id={rid}\n" in log for rid, _ in sent) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert any(fx.unmapped for _, fx in sent) and any(not fx.unmapped for _, fx in sent)
    for request_id, fx in sent:
        assert f"request_id={request_id}\n" in log, f"no request_completed line for {fx.id}"
        lines = [line for line in log.splitlines()
                 if f"request_id={request_id} " in line and "upstream fields not mapped" in line]
        if not fx.unmapped:
            assert lines == [], fx.id
            continue
        assert len(lines) == 1, (fx.id, lines)
        assert " DEBUG " in lines[0] and lines[0].endswith("upstream fields not mapped: " + ", ".join(fx.unmapped))
