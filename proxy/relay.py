"""Drive one upstream chat stream through the translator.

This is the only loop that touches both sides: it reads network chunks from the
backend, decodes SSE (``SSEDecoder``), feeds chunks to the ``StreamTranslator``,
and yields the events each read produced — one batch per read, so a transport
makes one write per upstream read. While it waits it watches two more things:
the client leaving (then it stops at once, and the owner closes the upstream
request: tokens cost money) and silence (then it yields ``KEEPALIVE`` so a
transport can keep intermediaries from timing the stream out).

How the stream ended is left in ``Outcome.failure`` (``None`` for a normal end),
named by ``proxy.failures`` so every transport reports it the same way: for an
end the translator decided, built from what it says (``translator.failure``);
for one decided here (timeout, broken connection, oversize event), directly. The
client's ``error`` event carries the failure's precise ``code`` and
``response.failed`` its ``response_code``, as a JSON client's error body does.

The end of the upstream answer: ``[DONE]`` and a whole JSON body are clean ends
(``finish(clean=True)``); the connection closing is one only right after a
usage-only chunk (the translator knows); a read that fails is never one.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Final

import httpx
import orjson

from .failures import Cause, Failure, client_gone, from_stream_error
from .interrupt import Interrupt, Interrupted
from .translate.completion import completion_to_chunks
from .translate.sse import EventTooLarge, SSEDecoder
from .translate.stream import StreamFailure, StreamTranslator
from .translate.stream.chunks import upstream_error
from .transport import READER, Body


class _Keepalive:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEPALIVE"


KEEPALIVE: Final = _Keepalive()
"""Yielded when the backend was silent for ``keepalive_secs``."""

Batch = list[dict[str, Any]]

_DONE_PAYLOAD = b"[DONE]"
_MAX_JSON_ANSWER_BYTES = 16 * 1024 * 1024


class Outcome:
    """How the relay ended; ``failure`` is None when the translator finished normally."""

    __slots__ = ("failure",)

    def __init__(self) -> None:
        self.failure: Failure | None = None


async def relay(
    response: httpx.Response,
    translator: StreamTranslator,
    outcome: Outcome,
    *,
    disconnected: asyncio.Future[None],
    keepalive_secs: float | None,
    first_keepalive_secs: float | None = None,
    deadline: float | None,
    max_event_bytes: int,
    idle_timeout_secs: float,
    redact: Callable[[bytes], bytes],
    interrupt: Interrupt | None = None,
) -> AsyncGenerator[Batch | _Keepalive, None]:
    """Yield event batches (and ``KEEPALIVE``) until the translator is done or the client left.

    ``deadline`` (a ``time.monotonic()`` instant) bounds a whole JSON call;
    streams are bounded only by the idle timeout between upstream chunks. That
    bound is enforced here as well as by the transport's read timeout, because
    a transport can hang without raising (aiohttp does, on broken chunked framing).
    ``first_keepalive_secs`` shortens the wait before the first ``KEEPALIVE``
    (a stream's transport decides on the first answer whether it can still
    reply with an HTTP status). ``interrupt``, when given, is the owner's (closed by it),
    watching the same ``disconnected``. ``redact`` masks the upstream key wherever the backend echoes it, e.g. in a
    mid-stream error message, before anything reaches the client.

    The caller owns ``response`` and closes it; this loop only reads it. Each read
    is awaited in the caller's task and interrupted when the client leaves or a
    wait falls due (``proxy.interrupt``): no task, future and timer per read. The
    transport's ``Body`` reads are safe to interrupt (``proxy.transport``); any other
    body (an encoded one, or a response a test built) is read through ``_Pump``.
    """
    content_type = response.headers.get("content-type", "")
    # One JSON body (asked for by a JSON client, or a backend that ignored
    # `stream: true`) or an SSE stream: both end up as chunks for the translator.
    body: bytearray | None = None
    decoder: SSEDecoder | None = None
    if "json" in content_type and "event-stream" not in content_type:
        body = bytearray()
        if deadline is not None:
            # A JSON body comes after the whole generation, in one piece: the
            # deadline bounds it, silence means nothing. (Streams: the reverse.)
            idle_timeout_secs = float("inf")
    else:
        decoder = SSEDecoder(max_event_bytes, None if redact is _identity else redact)
    body_reader = response.extensions.get(READER)
    pump: _Pump | None = None
    read: Callable[[], Awaitable[bytes]]
    if isinstance(body_reader, Body) and "content-encoding" not in response.headers:
        read = body_reader.read  # the transport's own reads: no decoding to do
    else:
        read = (pump := _Pump(response.aiter_bytes())).read
    own_interrupt = interrupt is None
    if interrupt is None:
        interrupt = Interrupt(disconnected)
    idle_until = time.monotonic() + idle_timeout_secs
    wait_secs = keepalive_secs
    if keepalive_secs is not None and first_keepalive_secs is not None:
        wait_secs = min(keepalive_secs, first_keepalive_secs)
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                yield _fail(translator, outcome, _timeout("The backend did not finish in time."))
                return
            if now >= idle_until:
                yield _fail(translator, outcome, _timeout(f"The backend sent nothing for {idle_timeout_secs:g} s."))
                return
            due = idle_until
            if wait_secs is not None and now + wait_secs < due:
                due = now + wait_secs
            if deadline is not None and deadline < due:
                due = deadline
            try:
                data: bytes | None = await interrupt.wait(read(), due) or None  # b"": the end
            except Interrupted:
                if disconnected.done():
                    outcome.failure = client_gone()
                    return
                if wait_secs is not None:
                    wait_secs = keepalive_secs
                    yield KEEPALIVE
                continue
            except httpx.HTTPError as exc:
                yield _fail(translator, outcome, _read_failure(exc, idle_timeout_secs))
                return
            wait_secs = keepalive_secs
            idle_until = time.monotonic() + idle_timeout_secs
            events: Batch
            if body is not None:
                if data is not None:
                    body += data
                    if len(body) > _MAX_JSON_ANSWER_BYTES:
                        yield _fail(translator, outcome, _malformed("The backend's JSON answer exceeds 16 MB."))
                        return
                    continue
                events = _feed_completion(translator, redact(bytes(body)), outcome)
            else:
                assert decoder is not None
                try:
                    payloads = decoder.feed(data) if data is not None else decoder.flush()
                except EventTooLarge:
                    yield _fail(
                        translator, outcome,
                        Failure(
                            Cause.BACKEND_FAILED, f"The backend sent an event larger than {max_event_bytes} bytes.",
                            "backend_error", kind="oversize_event",
                        ),
                    )
                    return
                events = _feed_payloads(translator, payloads, outcome)
            if data is None and not translator.done:
                events += _finish(translator, outcome, clean=False)  # EOF without [DONE]
            if events or translator.done:
                yield events  # the terminal batch always (empty in JSON mode): owners act on it
            if translator.done:
                return
    finally:
        if own_interrupt:
            interrupt.close()
        if pump is not None:
            pump.close()


class _Pump:
    """Reads of an async iterator that an interrupted wait does not lose: each read runs in a
    task that outlives the wait (a task per read, as the service's own bodies need none).
    ``b""`` is the end."""

    __slots__ = ("_chunks", "_pending")

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks.__aiter__()
        self._pending: asyncio.Future[bytes] | None = None

    async def read(self) -> bytes:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._next())
        data = await asyncio.shield(self._pending)
        self._pending = None
        return data

    async def _next(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()


def _timeout(message: str) -> Failure:
    return Failure(Cause.BACKEND_TIMEOUT, message, "backend_timeout", kind="timeout")


def _read_failure(exc: httpx.HTTPError, idle_timeout_secs: float) -> Failure:
    """An upstream read that failed mid-stream: silent too long, or the connection broke."""
    if isinstance(exc, httpx.TimeoutException):
        return _timeout(f"The backend sent nothing for {idle_timeout_secs:g} s.")
    return Failure(
        Cause.BACKEND_FAILED, f"The backend connection broke mid-stream ({type(exc).__name__}).",
        "backend_error", kind="disconnected",
    )


def redactor(secret: str | None, masked: str) -> Callable[[bytes], bytes]:
    """A function masking ``secret`` in upstream payloads (identity when there is none)."""
    if not secret:
        return _identity
    needle = secret.encode()
    replacement = masked.encode()

    def redact(payload: bytes) -> bytes:
        return payload.replace(needle, replacement) if needle in payload else payload

    return redact


def _identity(payload: bytes) -> bytes:
    return payload


def _finish(translator: StreamTranslator, outcome: Outcome, *, clean: bool) -> Batch:
    """Upstream ended: ``[DONE]`` or a whole JSON body (``clean``), or the connection closed."""
    return _noted(translator, outcome, translator.finish(clean=clean))


def _feed_completion(translator: StreamTranslator, raw: bytes, outcome: Outcome) -> Batch:
    """A whole ``chat.completion`` body, as the chunks a streaming backend would have sent."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _fail(translator, outcome, _malformed("The backend answered with invalid JSON."))
    if not isinstance(doc, dict):
        return _fail(translator, outcome, _malformed("The backend answered with JSON that is not an object."))
    chunks = completion_to_chunks(doc)
    if not chunks or not (chunks[0].get("choices") or chunks[0].get("error")):
        return _fail(translator, outcome, _malformed("The backend's JSON answer has no choice."))
    events: Batch = []
    for chunk in chunks:
        events += _feed_chunk(translator, chunk, outcome)
        if translator.done:
            return events
    return events + _finish(translator, outcome, clean=True)


def _feed_payloads(translator: StreamTranslator, payloads: list[bytes], outcome: Outcome) -> Batch:
    """The ``data`` payloads of one upstream read (the decoder masked the key in its lines), up
    to the translator's end: one loop, no call between it and ``translator.feed`` for the common
    chunk (it runs per token)."""
    events: Batch = []
    feed, loads = translator.feed, orjson.loads
    for payload in payloads:
        if payload == _DONE_PAYLOAD:
            events += translator.finish(clean=True)
            break  # the translator is done
        try:
            chunk = loads(payload)
        except orjson.JSONDecodeError:
            return events + _fail(translator, outcome, _malformed("The backend sent a chunk that is not valid JSON."))
        if type(chunk) is not dict:
            return events + _fail(translator, outcome,
                                  _malformed("The backend sent a chunk that is not a JSON object."))
        if chunk.get("error"):
            events += _feed_chunk(translator, chunk, outcome)
        else:
            feed(chunk, events)
        if translator.done:
            break
    # Once per read: a failure the translator found ended it, so it was the last chunk.
    return _noted(translator, outcome, events)


def _feed_chunk(translator: StreamTranslator, chunk: dict[str, Any], outcome: Outcome) -> Batch:
    err = chunk.get("error")
    if err:
        # The backend's own error (an {"error"} chunk, an event: error block, an error:
        # line): the taxonomy decides the codes the client sees, should it end the
        # response (after a finish reason it does not).
        failure = _failure_of(upstream_error(err))
        events = translator.feed_error(chunk, code=failure.code or "backend_error",
                                       response_code=failure.response_code)
    else:
        events = translator.feed(chunk)
    return _noted(translator, outcome, events)


def _noted(translator: StreamTranslator, outcome: Outcome, events: Batch) -> Batch:
    """Record the failure the translator ended the response with, if it did."""
    if translator.failure is not None and outcome.failure is None:
        outcome.failure = _failure_of(translator.failure)
    return events


def _failure_of(failure: StreamFailure) -> Failure:
    """The taxonomy's name for a failure the translator found."""
    if failure.kind == "upstream_error":
        # Errors that blame the request (context too long, rate limited) are the
        # backend answering, not failing: proxy.failures tells them apart.
        return from_stream_error(failure.error, failure.message)
    if failure.kind == "malformed":
        return _malformed(failure.message)
    kind = "truncated" if failure.kind == "truncated" else "mid_stream_error"
    return Failure(Cause.BACKEND_FAILED, failure.message, failure.code, kind=kind)


def _malformed(message: str) -> Failure:
    return Failure(Cause.BACKEND_FAILED, message, "invalid_chunk", kind="malformed")


def _fail(translator: StreamTranslator, outcome: Outcome, failure: Failure) -> Batch:
    outcome.failure = failure
    return translator.fail(failure.message, failure.code or "server_error", response_code=failure.response_code)
