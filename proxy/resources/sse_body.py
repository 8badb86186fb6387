"""Writing an SSE answer: the batches of an ``Exchange`` as the bytes of a stream, and its end.

``proxy.resources.responses`` decides whether a request is answered as a stream; this module
writes it: the head events with the first batch in one write, then one write per upstream
read, ``[DONE]`` in the terminal batch's write (``sse_body``); an answer that was complete with
its first batch as one write (``Once``), its exchange closed before it. However a stream ends,
``end_stream`` closes what it holds and records the request's status for its metrics line.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

from ..exchange import Exchange
from ..failures import Cause
from ..relay import Batch, _Keepalive
from ..translate.sse import DONE, encode_events
from ..translate.sse import KEEPALIVE as SSE_KEEPALIVE
from ..translate.stream import StreamTranslator
from .scope import RequestScope

log = logging.getLogger("proxy.responses")  # the resource's own logger: its lines read the same


def log_warnings(meta: RequestScope, warnings: list[str]) -> None:
    """Warnings from translation: the request's (dropped built-in tools…) and the
    stream translator's (calls outside allowed_tools…)."""
    for warning in warnings:
        log.warning("request_id=%s model=%s: %s", meta.request_id, meta.model, warning)


def log_translator(meta: RequestScope, translator: StreamTranslator) -> None:
    """Once per request: the stream translator's warnings, and at debug level what the
    backend sent that no part of the Response carries (issue 12: nothing silently dropped)."""
    log_warnings(meta, translator.warnings)
    if translator.unmapped and log.isEnabledFor(logging.DEBUG):
        log.debug("request_id=%s model=%s: upstream fields not mapped: %s",
                  meta.request_id, meta.model, ", ".join(sorted(translator.unmapped)))


async def sse_body(
    meta: RequestScope,
    exchange: Exchange,
    batches: AsyncGenerator[Batch | _Keepalive, None],
    head: Batch,
    first: Batch | _Keepalive,
) -> AsyncGenerator[bytes, None]:
    """The SSE bytes: the head events with the first batch, then one write per batch, ``[DONE]``
    in the terminal batch's write (one write, one syscall, less per stream). ``first`` is never
    the terminal batch: an answer complete with it is written as ``Once`` instead."""
    translator = exchange.translator
    try:
        if isinstance(first, _Keepalive):  # the grace time passed: start, and keep it alive
            yield encode_events(head) + SSE_KEEPALIVE
        else:
            yield encode_events(head + first)
        async for batch in batches:
            if isinstance(batch, _Keepalive):
                yield SSE_KEEPALIVE
            else:
                yield encode_events(batch) + DONE if translator.done else encode_events(batch)
    finally:
        await end_stream(meta, exchange, batches)


async def end_stream(
    meta: RequestScope, exchange: Exchange, batches: AsyncGenerator[Batch | _Keepalive, None]
) -> None:
    """A stream's end, however it came: the batches and the exchange closed, the translator's
    warnings logged, the request's status for its metrics line."""
    await batches.aclose()
    await exchange.aclose()
    translator = exchange.translator
    log_translator(meta, translator)
    failure = exchange.failure
    if failure is not None and failure.cause is Cause.CLIENT_GONE:
        meta.status = "client_disconnected"
    else:
        meta.status = translator.response.get("status", "failed")


class Once:
    """A stream body of one write (Falcon sends what an async iterator yields)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> Once:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


class ClosingStream:
    """Falcon ends a response stream with ``close()``, which async generators lack
    (they have ``aclose()``): without this, a stream Falcon stops iterating would
    keep its generator suspended until garbage collection (the request scope
    still releases the exchange it holds)."""

    __slots__ = ("_gen",)

    def __init__(self, gen: AsyncGenerator[bytes, None]) -> None:
        self._gen = gen

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen

    async def close(self) -> None:
        await self._gen.aclose()
