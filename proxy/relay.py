"""Drive one upstream chat stream through the translator, for one client.

This is the only loop that touches both sides: it reads network chunks from the
backend, decodes SSE (``SSEDecoder``), feeds chunks to the ``StreamTranslator``,
and yields the encoded events. While it waits it watches two more things: the
client leaving (then it closes the upstream request at once: tokens cost money)
and silence (then it sends an SSE comment so intermediaries keep the stream).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import httpx
import orjson

from .logs import mask_key
from .translate.completion import completion_as_sse
from .translate.sse import DONE, KEEPALIVE, EventTooLarge, SSEDecoder, encode_events
from .translate.stream import StreamTranslator

_DONE_PAYLOAD = b"[DONE]"
_MAX_JSON_ANSWER_BYTES = 16 * 1024 * 1024


class Outcome:
    """How the relay ended, for the breaker and the metrics line."""

    __slots__ = ("backend_failure", "client_gone", "failure_code", "internal_error", "timed_out")

    def __init__(self) -> None:
        self.backend_failure = False
        self.client_gone = False
        self.internal_error = False
        self.timed_out = False
        self.failure_code: str | None = None


async def relay(
    response: httpx.Response,
    translator: StreamTranslator,
    outcome: Outcome,
    *,
    disconnected: asyncio.Future[None],
    keepalive_secs: float | None,
    deadline: float | None,
    max_event_bytes: int,
    idle_timeout_secs: float,
    secret: str | None = None,
) -> AsyncIterator[bytes]:
    """Yield the client's bytes (nothing useful in JSON mode) until a terminal event.

    ``deadline`` (a ``time.monotonic()`` instant) bounds a whole JSON call;
    streams are bounded only by the idle timeout between upstream chunks. That
    bound is enforced here as well as by the transport's read timeout, because
    a transport can hang without raising (aiohttp does, on broken chunked framing).
    ``secret`` (the upstream key) is masked wherever the backend echoes it,
    e.g. in a mid-stream error message, before anything reaches the client.
    """
    redact = _redactor(secret)
    decoder = SSEDecoder(max_event_bytes)
    feed = translator.feed
    content_type = response.headers.get("content-type", "")
    if "json" in content_type and "event-stream" not in content_type:
        reader = _json_as_sse(response)  # a backend that ignored stream: true
    else:
        reader = response.aiter_bytes().__aiter__()
    pending: asyncio.Future[bytes] | None = None
    idle_until = time.monotonic() + idle_timeout_secs
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(reader.__anext__())
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                outcome.timed_out = outcome.backend_failure = True
                yield _fail(translator, outcome, "The backend did not finish in time.", "backend_timeout")
                return
            if now >= idle_until:
                outcome.timed_out = outcome.backend_failure = True
                yield _fail(
                    translator, outcome, f"The backend sent nothing for {idle_timeout_secs:g} s.", "backend_timeout"
                )
                return
            timeout = idle_until - now
            if keepalive_secs is not None and keepalive_secs < timeout:
                timeout = keepalive_secs
            if deadline is not None and deadline - now < timeout:
                timeout = deadline - now
            done, _ = await asyncio.wait(
                (pending, disconnected), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if disconnected.done():
                outcome.client_gone = True
                return
            if not done:
                if keepalive_secs is not None:
                    yield KEEPALIVE
                continue
            read, pending = pending, None
            idle_until = time.monotonic() + idle_timeout_secs
            try:
                data: bytes | None = read.result()
            except StopAsyncIteration:
                data = None  # EOF
            except (httpx.HTTPError, aiohttp.ClientError) as exc:
                message, code = _read_failure(exc, idle_timeout_secs, outcome)
                yield _fail(translator, outcome, message, code)
                return
            try:
                payloads = decoder.feed(data) if data is not None else decoder.flush()
            except EventTooLarge:
                outcome.backend_failure = True
                yield _fail(
                    translator, outcome,
                    f"The backend sent an event larger than {max_event_bytes} bytes.", "backend_error",
                )
                return
            events: list[dict] = []
            for payload in payloads:
                events += _feed_payload(translator, feed, redact(payload), outcome)
                if translator.done:
                    break
            if data is None and not translator.done:
                events += _finish(translator, outcome)  # EOF without [DONE]
            if translator.done:
                yield (encode_events(events) if events else b"") + DONE
                return
            if events:
                yield encode_events(events)
    finally:
        if pending is not None:
            pending.cancel()
        await response.aclose()


def _read_failure(exc: Exception, idle_timeout_secs: float, outcome: Outcome) -> tuple[str, str]:
    """Message and code for an upstream read that failed mid-stream."""
    outcome.backend_failure = True
    # Mid-stream there is no connecting: the aiohttp transport names a dropped
    # connection (aiohttp.ClientConnectionError) ConnectTimeout.
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        outcome.timed_out = True
        return f"The backend sent nothing for {idle_timeout_secs:g} s.", "backend_timeout"
    return f"The backend connection broke mid-stream ({type(exc).__name__}).", "backend_error"


def _redactor(secret: str | None):
    if not secret:
        return lambda payload: payload
    needle = secret.encode()
    masked = mask_key(secret).encode()

    def redact(payload: bytes) -> bytes:
        return payload.replace(needle, masked) if needle in payload else payload

    return redact


async def _json_as_sse(response: httpx.Response) -> AsyncIterator[bytes]:
    body = bytearray()
    async for data in response.aiter_bytes():
        body += data
        if len(body) > _MAX_JSON_ANSWER_BYTES:
            raise httpx.DecodingError("the backend's JSON answer exceeds 16 MB")
    yield completion_as_sse(bytes(body))


def _finish(translator: StreamTranslator, outcome: Outcome) -> list[dict]:
    """Upstream ended ([DONE] or EOF); without a finish_reason that is a truncation."""
    events = translator.finish()
    if translator.response.get("status") == "failed":
        outcome.backend_failure = True
        outcome.failure_code = "truncated"
    return events


def _feed_payload(translator: StreamTranslator, feed, payload: bytes, outcome: Outcome) -> list[dict]:
    if payload == _DONE_PAYLOAD:
        return _finish(translator, outcome)
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        outcome.backend_failure = True
        outcome.failure_code = "invalid_chunk"
        return translator.fail("The backend sent a chunk that is not valid JSON.", "backend_error")
    if not isinstance(chunk, dict):
        outcome.backend_failure = True
        outcome.failure_code = "invalid_chunk"
        return translator.fail("The backend sent a chunk that is not a JSON object.", "backend_error")
    events = feed(chunk)
    if translator.done and translator.response.get("status") == "failed":
        # An {"error": …} chunk mid-stream (or finish_reason "error"/"abort"). The
        # backend's own code reaches JSON clients as it reaches SSE clients; an
        # error the request caused (context too long, 4xx) is not the backend failing.
        err = chunk.get("error")
        code = err.get("code") if isinstance(err, dict) else None
        outcome.failure_code = code if isinstance(code, str) and code else "backend_error"
        outcome.backend_failure = not _caused_by_request(err)
    return events


_REQUEST_ERROR_CODES = frozenset(
    {
        "context_length_exceeded", "invalid_request_error", "invalid_prompt", "content_filter",
        "content_policy_violation", "rate_limit_exceeded", "string_above_max_length",
    }
)
_REQUEST_ERROR_TYPES = frozenset(
    {"invalid_request_error", "BadRequestError", "rate_limit_error", "RateLimitError", "NotFoundError"}
)


def _caused_by_request(err: object) -> bool:
    """Whether a mid-stream error object blames the request (vLLM sends HTTP-like int codes)."""
    if not isinstance(err, dict):
        return False
    code = err.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return 400 <= code < 500
    kind = err.get("type")
    return (isinstance(code, str) and code in _REQUEST_ERROR_CODES) or (
        isinstance(kind, str) and kind in _REQUEST_ERROR_TYPES
    )


def _fail(translator: StreamTranslator, outcome: Outcome, message: str, code: str) -> bytes:
    outcome.failure_code = code
    return encode_events(translator.fail(message, code)) + DONE
