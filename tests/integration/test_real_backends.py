"""Every recorded answer of a real Chat Completions server, replayed byte for byte by the mock
backend, through the real service (gunicorn, 2 Uvicorn workers), to the official openai SDK.

The fixtures and what each server meant are in ``tests/fixtures/backends`` (see its
``manifest.json``). For every fixture the client gets, streamed and as JSON, strictly valid
output (the ``openai_client`` tap validates every event and body with ``tests/conformance.py``)
that says what the server meant: text, reasoning, tool calls, usage numbers, status. Many of
these fail until the translator learns the shapes the survey found (issue 12, phase B); the
failure message names each difference. ``tests/unit/test_real_backends_unit.py`` is the fast
twin that feeds the same bytes straight through the translator.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from proxy.devtools import Service, start_proxy
from tests.fixtures.backends import Fixture, load_all, meaning, mismatches
from tests.mock_client import MockControl

FIXTURES = load_all()
STREAMED = [fx for fx in FIXTURES if fx.format == "sse" and len(fx.pieces()) > 1]
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@pytest.fixture(scope="module")
def proxy(mock_backend: Service, logs_dir: Path) -> Iterator[Service]:
    """The deployed service in front of the session's mock, with the circuit breaker off.

    Overrides the session ``proxy`` (and so the ``openai_client`` built on it) for this module:
    several recordings are failures by design (a mid-stream error, a stream cut short), and
    they must not open a breaker shared with every other test, nor must an open breaker turn
    the next fixture's answer into a 503.
    """
    service = start_proxy(
        mock_backend.url + "/v1", logs_dir / "proxy-real-backends.log", CIRCUIT_BREAKER_ENABLED="false"
    )
    yield service
    service.stop()


def _explain(fx: Fixture, problems: list[str]) -> str:
    return f"{fx.id} ({fx.server}; quirks: {'; '.join(fx.quirks)}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_streamed(fx: Fixture, openai_client: openai.OpenAI, mock: MockControl) -> None:
    mock.script(fx.model, fx.mock_script(), replace=True)
    events = list(openai_client.responses.create(**fx.request_body(stream=True)))
    assert events and events[-1].type in TERMINAL, [e.type for e in events][-5:]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    problems = mismatches(meaning(events[-1].response.model_dump(mode="json")), fx)
    assert not problems, _explain(fx, problems)
    # the backend got exactly one request, and the recorded bytes were what it answered
    assert len(mock.requests(fx.model)) == 1


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_json(fx: Fixture, openai_client: openai.OpenAI, mock: MockControl) -> None:
    mock.script(fx.model, fx.mock_script(), replace=True)
    body = fx.request_body(stream=False)
    if fx.expect["status"] == "failed":
        # A failed answer reaches a JSON client as an OpenAI-shaped error (the tap checks
        # the shape) that carries what the server said. Which status (502, or 4xx for an
        # error the request caused, like Groq's tool_use_failed) is the proxy's choice.
        with pytest.raises(openai.APIStatusError) as info:
            openai_client.responses.create(**body)
        assert info.value.status_code >= 400, info.value.status_code
        needle = fx.expect.get("error_message_contains")
        assert needle is None or needle in info.value.message, _explain(
            fx, [f"error: got {info.value.message!r}, it should carry {needle!r}"]
        )
        return
    try:
        response = openai_client.responses.create(**body)
    except openai.APIStatusError as exc:
        pytest.fail(_explain(fx, [f"the proxy answered {exc.status_code} {exc.message!r}, the server meant {fx.expect['status']}"]))
    problems = mismatches(meaning(response.model_dump(mode="json")), fx)
    assert not problems, _explain(fx, problems)


@pytest.mark.parametrize("fx", STREAMED, ids=lambda fx: fx.id)
def test_cut_short_is_never_completed(fx: Fixture, openai_client: openai.OpenAI, mock: MockControl) -> None:
    """The same recording with the connection broken half-way: whatever rule makes a clean end
    without a finish reason count as completed, a stream cut short must end as failed."""
    model = fx.model + "-cut"
    mock.script(model, fx.mock_script(drop_after=len(fx.pieces()) // 2), replace=True)
    events = list(openai_client.responses.create(**{**fx.request_body(stream=True), "model": model}))
    assert events[-1].type == "response.failed", (fx.id, [e.type for e in events][-3:])
    assert events[-1].response.status == "failed"
