"""Recorded answers of real servers, fed through the relay's own loop in-process (the fast twin
of ``tests/integration/test_real_backends.py``).

Each fixture's bytes are the body of an ``httpx.Response`` (the recorded content type, one
network read per recorded write, or reads of a few bytes) handed to ``proxy.relay.relay`` —
the very loop the service runs: content-type sniffing, SSE decoding, ``[DONE]``, chunks that
are not JSON, error payloads, a whole JSON body through ``completion_to_chunks``, the end of
the stream — and the events it yields are checked by ``tests/conformance.py``. Each fixture
is replayed for the request modes that would really receive it: an SSE recording answers a
streaming client, and a JSON client under ``JSON_UPSTREAM=stream``; a JSON body answers a
JSON client, and a streaming client of a backend that ignores ``stream: true``. The output
must be what the server meant (``tests/fixtures/backends/manifest.json``); a failure names
each difference.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from proxy.relay import KEEPALIVE, Outcome, relay
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_response, check_stream
from tests.fixtures.backends import Fixture, load_all, meaning, mismatches

FIXTURES = load_all()


class _Body(httpx.AsyncByteStream):
    """The recorded bytes as the network reads a transport would hand the relay."""

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for data in self._reads:
            yield data


def _reads(fx: Fixture, split: int | None) -> list[bytes]:
    if split is None:
        return fx.pieces()
    body = fx.body
    return [body[i : i + split] for i in range(0, len(body), split)]


async def _relay(fx: Fixture, translator: StreamTranslator, outcome: Outcome, split: int | None) -> list[dict[str, Any]]:
    response = httpx.Response(200, headers={"content-type": fx.content_type}, stream=_Body(_reads(fx, split)))
    disconnected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    events: list[dict[str, Any]] = []
    async for batch in relay(
        response, translator, outcome,
        disconnected=disconnected, keepalive_secs=None, deadline=None,
        max_event_bytes=1 << 20, idle_timeout_secs=60.0, redact=lambda payload: payload,
    ):
        assert batch is not KEEPALIVE
        events += batch
    return events


def replay(fx: Fixture, *, stream: bool, split: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], Outcome]:
    """Events, final Response and outcome for this fixture, as the service's relay makes them.

    What the translator names as unmapped must be the manifest's list for the body: nothing
    it drops goes unnamed, and nothing it maps is named.
    """
    _, ctx = translate_request(fx.request_body(stream=stream), TranslationPolicy())
    translator = StreamTranslator(ctx, emit_events=stream)
    outcome = Outcome()
    events = translator.start() + asyncio.run(_relay(fx, translator, outcome, split))
    assert translator.done, "the relay ended without a terminal event"
    assert sorted(translator.unmapped) == fx.unmapped, fx.id
    return events, translator.response, outcome


def _explain(fx: Fixture, problems: list[str]) -> str:
    return f"{fx.id} ({fx.server}; quirks: {'; '.join(fx.quirks)}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "json"])
@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_valid_and_means_what_the_server_meant(fx: Fixture, stream: bool) -> None:
    """Streamed: every event is checked and ends in the Response; JSON mode: no events, a valid Response."""
    events, response, outcome = replay(fx, stream=stream)
    if stream:
        assert check_stream(events) == response
    else:
        assert events == []
        check_response(response)
    assert (outcome.failure is not None) == (response["status"] == "failed")
    problems = mismatches(meaning(response), fx)
    assert not problems, _explain(fx, problems)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_network_read_boundaries_change_nothing(fx: Fixture) -> None:
    """7-byte reads split lines, multi-byte characters and ``data:`` prefixes: same answer as recorded-write reads."""
    _, by_write, _ = replay(fx, stream=False)
    _, by_7_bytes, _ = replay(fx, stream=False, split=7)
    assert meaning(by_7_bytes) == meaning(by_write)


def test_fixture_pieces_are_the_recorded_bytes() -> None:
    """Splitting for the mock never changes a byte, and every SSE piece but a final partial one is one whole event."""
    for fx in FIXTURES:
        pieces = fx.pieces()
        assert b"".join(pieces) == fx.body, fx.id
        if fx.format == "sse":
            assert all(p.endswith(b"\n\n") for p in pieces[:-1]), fx.id
