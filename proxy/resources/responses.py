"""``POST /v1/responses``: request in → translate → upstream → translate back → out.

The order of checks is deliberate: cheap refusals (size, type, key) before any
parsing; translation (which validates) before the breaker, so bad input never
takes a probe slot; the breaker before the network. The round trip itself is an
``Exchange`` (``proxy.exchange``), owned by the request's scope; this module
only chooses the transport: one JSON object, or an SSE stream.

A stream whose backend fails before producing any output is answered like a
JSON request — with the HTTP status and error body of the failure — as OpenAI
does for an invalid request: to see that, the first upstream batch is awaited
(for at most ``FIRST_BATCH_GRACE_SECS``) before the SSE headers go out.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import falcon
import falcon.asgi
import orjson

from ..errors import ProxyError, invalid_request
from ..exchange import Exchange
from ..failures import Cause, Failure
from ..logs import mask_key
from ..relay import KEEPALIVE, Batch, _Keepalive
from ..runtime import Runtime
from ..settings import Settings
from ..stalled import BODY_STALLED
from ..state import Standing, stand
from ..translate import json_body
from ..translate.compaction import has_trigger
from ..translate.request import translate_request
from ..translate.sse import DONE, encode_events
from ..translate.validate import check_nesting
from .auth import client_key, is_header_safe, scrub, upstream_key
from .background import BackgroundMode
from .scope import RequestScope
from .sse_body import ClosingStream, Once, end_stream, log_translator, log_warnings, sse_body

log = logging.getLogger("proxy.responses")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# How long a stream waits for the backend's first answer before its headers go
# out: long enough to turn an immediate backend refusal into an HTTP status,
# short enough that a slow first token still shows `response.created` early.
FIRST_BATCH_GRACE_SECS = 1.0


class TriggerHandler(Protocol):
    """Answers a request ending with a ``compaction_trigger`` item (``proxy.resources.compact``)."""

    async def respond_http(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, meta: RequestScope, body: dict, key: str
    ) -> None: ...


class ResponsesResource:
    def __init__(
        self, runtime: Runtime, compaction: TriggerHandler | None = None, background: BackgroundMode | None = None
    ) -> None:
        self._rt = runtime
        self._compaction = compaction
        self._background = background  # None without a store: `background: true` is then refused

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        meta: RequestScope = req.context.meta
        settings = self._rt.settings
        body, key = await read_request(req, meta, settings)
        if self._compaction is not None and has_trigger(body):  # Codex's remote compaction v2
            await self._compaction.respond_http(req, resp, meta, body, key)
            return
        rt = self._rt
        standing = await stand(rt.store, key, body, request_id=meta.request_id)
        chat, ctx = translate_request(
            standing.body, rt.policy,
            previous_response_id=standing.previous_response_id, conversation_id=standing.conversation_id,
            background_mode=self._background is not None, stored_items=len(standing.context),
        )
        standing.prepare()
        meta.model = ctx.model
        log_warnings(meta, ctx.warnings)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request_started: request_id=%s model=%s stream=%s key=%s messages=%d tools=%d",
                meta.request_id, ctx.model, ctx.stream, meta.key,
                len(chat["messages"]), len(chat.get("tools") or ()),
            )
        secret = upstream_key(key, settings)
        headers = _upstream_headers(req, secret, meta.request_id, settings.forward_headers)
        if ctx.echo["background"] and self._background is not None:  # a job generates it (proxy.background)
            await self._background.respond(resp, meta, standing, chat, ctx, secret, headers)
            return
        exchange = self._rt.exchange(
            chat=chat,
            ctx=ctx,
            headers=headers,
            secret=secret,
            disconnected=meta.watch_disconnect(),
            emit_events=ctx.stream,
            on_terminal=standing.remember if standing.keeps else None,
        )
        meta.own(exchange)
        try:
            await exchange.open()
        except Failure as failure:
            _fail_request(meta, resp, failure, secret)
            return
        if ctx.stream:
            await self._stream(meta, resp, exchange, secret)
        else:
            await self._json(meta, resp, exchange, secret, standing)

    async def _json(
        self, meta: RequestScope, resp: falcon.asgi.Response, exchange: Exchange, secret: str, standing: Standing
    ) -> None:
        async with exchange:
            async for _ in exchange.batches():
                pass
        log_translator(meta, exchange.translator)
        failure = exchange.failure
        if failure is not None:
            _fail_request(meta, resp, failure, secret)
            return
        response = exchange.response
        meta.status = response["status"]
        resp.content_type = falcon.MEDIA_JSON
        # The same bytes the store keeps (GET /v1/responses/{id} answers them as they are).
        resp.data = standing.stored_body or orjson.dumps(response)

    async def _stream(self, meta: RequestScope, resp: falcon.asgi.Response, exchange: Exchange, secret: str) -> None:
        head = exchange.start()
        batches = exchange.batches(first_wait_secs=FIRST_BATCH_GRACE_SECS)
        first: Batch | _Keepalive
        try:
            first = await batches.__anext__()
        except StopAsyncIteration:  # the client left
            first = KEEPALIVE
        failure = exchange.failure
        if failure is not None and not isinstance(first, _Keepalive) and not _has_output(first):
            # Nothing but the refusal so far: answer it as a JSON client gets it.
            await batches.aclose()
            await exchange.aclose()
            log_translator(meta, exchange.translator)
            _fail_request(meta, resp, failure, secret)
            return
        resp.content_type = "text/event-stream"
        resp.set_headers(_SSE_HEADERS)
        if not isinstance(first, _Keepalive) and exchange.translator.done:
            # The whole answer came with the first batch (a fast backend, a short answer): one
            # write, and the exchange closed before it (its connection back in the pool sooner),
            # with no generator to run and close around that write.
            data = encode_events(head + first) + DONE
            await end_stream(meta, exchange, batches)
            resp.stream = Once(data)
            return
        meta.status = "in_progress"
        # Falcon types `stream` as an iterator or a readable; it calls close() on either.
        resp.stream = ClosingStream(sse_body(meta, exchange, batches, head, first))  # type: ignore[assignment]  # an async iterator Falcon closes


async def read_request(req: falcon.asgi.Request, meta: RequestScope, settings: Settings) -> tuple[dict, str]:
    """A POST's JSON body and the client's key, in the order of the checks (see the module
    docstring): content type, size, JSON, then the key; the scope learns the model and masked key."""
    _check_content_type(req)
    _check_content_encoding(req)
    raw = await _read_body(req, meta, settings.max_body_bytes, settings.body_read_timeout_secs)
    if raw is None:  # nobody is left to answer; nothing the request asked for may happen
        meta.status = "client_disconnected"
        raise ProxyError(499, "The client left before sending the whole body.", code="client_disconnected")
    body = _parse_body(raw)
    meta.model = _loggable_model(body.get("model"))
    key = client_key(req, settings)
    meta.key = mask_key(key)
    return body, key


def _fail_request(meta: RequestScope, resp: falcon.asgi.Response, failure: Failure, secret: str) -> None:
    """Answer a request that failed before any byte went out, per ``proxy.failures``."""
    if failure.cause is Cause.CLIENT_GONE:
        meta.status = "client_disconnected"
        resp.status = 499
        return
    meta.status = "failed" if failure.cause is not Cause.BREAKER_OPEN else "error"
    # A backend may echo the key it was given; it must not reach the client.
    failure.message = scrub(failure.message, secret)
    raise failure.http_error()


def _has_output(batch: Batch) -> bool:
    return any(ev["type"] == "response.output_item.added" for ev in batch)


def _upstream_headers(
    req: falcon.asgi.Request, key: str, request_id: str, forward: tuple[str, ...]
) -> dict[str, str]:
    """What the backend gets: the key, our content negotiation, the request id,
    and only the client headers the operator listed in ``FORWARD_HEADERS``."""
    headers = {
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "accept": "text/event-stream",
        "accept-encoding": "identity",
        "x-request-id": request_id,
    }
    for name in forward:
        value = req.get_header(name)
        if value is not None:
            if not is_header_safe(value):
                raise invalid_request(
                    f"Header {name!r} must be printable ASCII to be forwarded.", code="invalid_header"
                )
            headers[name] = value
    return headers


def _check_content_type(req: falcon.asgi.Request) -> None:
    content_type = req.content_type
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ProxyError(
            415,
            f"Unsupported Content-Type {media!r}: send the request body as application/json.",
            code="unsupported_media_type",
        )


def _check_content_encoding(req: falcon.asgi.Request) -> None:
    """Bodies are read as they come: a compressed one would only fail as "not valid JSON" (or,
    under a coding whose bytes happen to parse, be read wrong), so any coding is refused as
    RFC 9110 says, naming it. (The clients we serve send none to a custom base URL.)"""
    coding = req.get_header("Content-Encoding")
    if coding and coding.strip().lower() != "identity":
        raise ProxyError(
            415,
            f"Unsupported Content-Encoding {coding[:64]!r}: send the request body uncompressed.",
            code="unsupported_content_encoding",
        )


async def _read_body(req: falcon.asgi.Request, meta: RequestScope, limit: int, timeout_secs: float) -> bytes | None:
    """Read at most ``limit`` bytes; refuse larger bodies before reading them whole. ``None``: the
    client left before the whole body came (short of its ``Content-Length``, or a chunked body
    before its last chunk, even one cut right after a whole chunk): a cut body that happens to
    parse must not be taken for the request. The events are read here, not through Falcon's
    ``req.stream``, which ends a chunked body at a disconnect as it ends a whole one.

    A body that arrived with its headers (the first ASGI event, which Falcon read before routing,
    says no ``more_body``: nearly every request) is taken as it is: no timer, no await. Any other
    must arrive within ``timeout_secs`` of its headers: the worker flags a stalled one in its
    scope and wakes its ``receive()`` (``proxy.stalled``), here answered 408. uvicorn bounds no
    body read, and a slow upload would hold up to ``limit`` bytes for as long as its client likes."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    first = req._first_event  # (Falcon's own; tests/unit/test_read_body.py pins it)
    assert first is not None  # always, for an HTTP request Falcon routes
    body: bytes = first.get("body", b"")
    if length is None and len(body) > limit:
        raise _too_large(limit)
    if not first.get("more_body", False):
        return body if length is None or len(body) == length else None
    return await _read_rest(req.scope, meta.receive, body, limit, length, timeout_secs)


async def _read_rest(
    scope: dict, receive: Callable[[], Awaitable[dict]], first: bytes, limit: int, length: int | None,
    timeout_secs: float,
) -> bytes | None:
    chunks = [first]
    size = len(first)
    while True:
        if BODY_STALLED in scope:
            raise _too_slow(timeout_secs)
        event = await receive()
        if event["type"] != "http.request":  # http.disconnect: gone before the body's end
            return None
        chunk = event.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not event.get("more_body", False):
            break
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return data if length is None or size == length else None


def _too_slow(timeout_secs: float) -> ProxyError:
    return ProxyError(
        408, f"The request body did not arrive within {timeout_secs:g} s.", code="request_timeout",
        headers={"Connection": "close"},  # (the rest of it may still come: not on this connection)
    )


def _too_large(limit: int) -> ProxyError:
    mib = limit / (1024 * 1024)
    size = f"{mib:g} MB" if mib >= 1 else f"{limit} bytes"
    return ProxyError(413, f"The request body is larger than the {size} limit.", code="request_too_large")


def _parse_body(raw: bytes) -> dict:
    if not raw:
        raise invalid_request("The request body is empty: send a JSON object.", code="invalid_json")
    try:
        body = json_body.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(
            f"The request body is not valid JSON (UTF-8): {exc.msg} at position {exc.pos}.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise invalid_request(
            f"The request body must be a JSON object, got {type(body).__name__}.",
            code="invalid_json",
        )
    check_nesting(body, raw=raw)
    return body


def _loggable_model(model: object) -> str:
    if isinstance(model, str) and 0 < len(model) <= 256 and model.isprintable() and " " not in model:
        return model
    return "-"
