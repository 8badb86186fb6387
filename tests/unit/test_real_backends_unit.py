"""Recorded answers of real servers, fed straight through the translator (the fast twin of
``tests/integration/test_real_backends.py``).

Each fixture's bytes go through ``SSEDecoder`` → ``StreamTranslator`` the way
``proxy/relay.py`` drives them — including its payload handling (``[DONE]``, chunks that
are not JSON, ``{"error": …}``) and its JSON-body fallback (``completion_as_sse``) — both
streaming (every event checked by ``tests/conformance.py``) and in JSON mode. The output
must be what the server meant (``tests/fixtures/backends/manifest.json``). Many of these fail
until the translator learns the shapes the survey found; the failure message names each
difference.
"""
from __future__ import annotations

from typing import Any

import pytest

from proxy.relay import Outcome, _feed_payload, _finish  # the relay's own payload rules, not a copy
from proxy.translate.completion import completion_as_sse
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.sse import SSEDecoder
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_response, check_stream
from tests.fixtures.backends import Fixture, load_all, meaning, mismatches

FIXTURES = load_all()


def _network_reads(fx: Fixture, split: int | None) -> list[bytes]:
    """What the relay would read: a JSON body recast as SSE (as ``relay._json_as_sse`` does),
    else the recorded bytes, one read per event or in ``split``-byte reads."""
    ctype = fx.content_type
    if "json" in ctype and "event-stream" not in ctype:
        return [completion_as_sse(fx.body)]
    if split is None:
        return fx.pieces()
    body = fx.body
    return [body[i : i + split] for i in range(0, len(body), split)]


def replay(fx: Fixture, *, stream: bool, split: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Events and final Response for this fixture, decoded and translated as ``relay`` does."""
    _, ctx = translate_request(fx.request_body(stream=stream), TranslationPolicy())
    translator = StreamTranslator(ctx, emit_events=stream)
    outcome = Outcome()
    decoder = SSEDecoder()
    events = translator.start()
    for data in [*_network_reads(fx, split), None]:  # None: the connection closed
        payloads = decoder.feed(data) if data is not None else decoder.flush()
        for payload in payloads:
            events += _feed_payload(translator, translator.feed, payload, outcome)
            if translator.done:
                break
        if data is None and not translator.done:
            events += _finish(translator, outcome)
        if translator.done:
            break
    assert translator.done, "the translator never ended the response"
    return events, translator.response


def _explain(fx: Fixture, problems: list[str]) -> str:
    return f"{fx.id} ({fx.server}; quirks: {'; '.join(fx.quirks)}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_streamed_events_are_valid_and_mean_what_the_server_meant(fx: Fixture) -> None:
    events, response = replay(fx, stream=True)
    final = check_stream(events)
    assert final == response
    problems = mismatches(meaning(final), fx)
    assert not problems, _explain(fx, problems)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_json_response_is_valid_and_means_what_the_server_meant(fx: Fixture) -> None:
    _, response = replay(fx, stream=False)
    check_response(response)
    problems = mismatches(meaning(response), fx)
    assert not problems, _explain(fx, problems)


@pytest.mark.parametrize("fx", [f for f in FIXTURES if f.format == "sse"], ids=lambda fx: fx.id)
def test_network_read_boundaries_change_nothing(fx: Fixture) -> None:
    """7-byte reads split lines, multi-byte characters and ``data:`` prefixes: same answer as event-sized reads."""
    _, by_event = replay(fx, stream=False)
    _, by_7_bytes = replay(fx, stream=False, split=7)
    assert meaning(by_7_bytes) == meaning(by_event)


def test_fixture_pieces_are_the_recorded_bytes() -> None:
    """Splitting for the mock never changes a byte, and every SSE piece but a final partial one is one whole event."""
    for fx in FIXTURES:
        pieces = fx.pieces()
        assert b"".join(pieces) == fx.body, fx.id
        if fx.format == "sse":
            assert all(p.endswith(b"\n\n") for p in pieces[:-1]), fx.id
