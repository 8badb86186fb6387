"""``POST /v1/responses``: request in → translate → upstream → translate back → out.

The order of checks is deliberate: cheap refusals (size, type, key) before any
parsing; translation (which validates) before the breaker, so bad input never
takes a probe slot; the breaker before the network.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import falcon
import falcon.asgi
import httpx
import orjson

from ..breaker import BreakerOpen, Permit
from ..errors import ProxyError, invalid_request
from ..logs import mask_key
from ..relay import Outcome, relay
from ..runtime import Runtime
from ..translate.context import ResponseContext
from ..translate.request import translate_request
from ..translate.sse import DONE, encode_events
from ..translate.stream import StreamTranslator
from ..upstream import UpstreamError
from .auth import client_key
from .auth import is_header_safe as _is_header_safe
from .auth import scrub as _scrub
from .request_meta import RequestMeta, watch_disconnect

log = logging.getLogger("proxy.responses")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ResponsesResource:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        meta: RequestMeta = req.context.meta
        settings = self._rt.settings
        _check_content_type(req)
        raw = await _read_body(req, settings.max_body_bytes)
        body = _parse_body(raw)
        meta.model = _loggable_model(body.get("model"))
        key = self._client_key(req)
        meta.key = mask_key(key)
        chat, ctx = translate_request(body, self._rt.policy)
        meta.model = ctx.model
        _log_warnings(meta, ctx, 0)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request_started: request_id=%s model=%s stream=%s key=%s messages=%d tools=%d",
                meta.request_id, ctx.model, ctx.stream, meta.key,
                len(chat["messages"]), len(chat.get("tools") or ()),
            )

        upstream_key = settings.backend_api_key or key
        headers = _upstream_headers(req, upstream_key, meta.request_id, settings.forward_headers)

        try:
            permit = self._rt.breaker.acquire()
        except BreakerOpen as exc:
            raise ProxyError(
                503,
                "The backend is failing and the circuit breaker is open; retry later.",
                type="server_error",
                code="circuit_open",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None

        disconnected = watch_disconnect(req)
        deadline = None if ctx.stream else time.monotonic() + settings.backend_timeout_secs
        try:
            upstream = await self._open(chat, headers, disconnected, deadline)
        except UpstreamError as exc:
            disconnected.cancel()
            if exc.backend_failure:
                self._rt.breaker.record_failure(permit)
            else:
                self._rt.breaker.release(permit)
            # A backend may echo the key it was given; it must not reach the client.
            exc.message = _scrub(exc.message, upstream_key)
            raise
        except BaseException:
            disconnected.cancel()
            self._rt.breaker.release(permit)
            raise
        if upstream is None:  # the client left while we waited for the backend
            self._rt.breaker.release(permit)
            meta.status = "client_disconnected"
            resp.status = 499
            return

        outcome = Outcome()
        if ctx.stream:
            resp.content_type = "text/event-stream"
            resp.set_headers(_SSE_HEADERS)
            resp.stream = _ClosingStream(
                self._stream(meta, ctx, outcome, upstream, disconnected, permit, upstream_key)
            )
            meta.deferred = True
            return

        translator: StreamTranslator | None = None
        warned = len(ctx.warnings)
        try:
            translator = StreamTranslator(ctx, emit_events=False)
            translator.start()
            async for _ in relay(
                upstream, translator, outcome,
                disconnected=disconnected,
                keepalive_secs=None,
                deadline=deadline,
                max_event_bytes=settings.max_event_bytes,
                idle_timeout_secs=settings.backend_idle_timeout_secs,
                secret=upstream_key,
            ):
                pass
        finally:
            disconnected.cancel()
            await upstream.aclose()  # idempotent; relay closes it on every path it runs
            self._verdict(permit, outcome, translator)
            _log_warnings(meta, ctx, warned)
        response = translator.response
        if outcome.client_gone:
            meta.status = "client_disconnected"
            resp.status = 499
            return
        meta.status = response["status"]
        if response["status"] == "failed":
            error = response.get("error") or {}
            raise ProxyError(
                504 if outcome.timed_out else 502,
                error.get("message") or "The backend failed.",
                type="server_error",
                code=outcome.failure_code or error.get("code"),
            )
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(response)

    async def _stream(
        self,
        meta: RequestMeta,
        ctx: ResponseContext,
        outcome: Outcome,
        upstream: httpx.Response,
        disconnected: asyncio.Future[None],
        permit: Permit,
        secret: str,
    ) -> AsyncIterator[bytes]:
        settings = self._rt.settings
        warned = len(ctx.warnings)
        translator: StreamTranslator | None = None
        try:
            translator = StreamTranslator(ctx)
            yield encode_events(translator.start())
            async for data in relay(
                upstream, translator, outcome,
                disconnected=disconnected,
                keepalive_secs=settings.keepalive_secs,
                deadline=None,
                max_event_bytes=settings.max_event_bytes,
                idle_timeout_secs=settings.backend_idle_timeout_secs,
                secret=secret,
            ):
                yield data
        except Exception:
            # A bug of ours must still end the client's stream with a terminal event,
            # and says nothing about the backend's health.
            log.exception("request_id=%s: stream translation failed", meta.request_id)
            outcome.internal_error = True
            if translator is not None and not translator.done:
                yield encode_events(translator.fail("Internal proxy error.", "server_error")) + DONE
        finally:
            disconnected.cancel()
            await upstream.aclose()
            self._verdict(permit, outcome, translator)
            _log_warnings(meta, ctx, warned)
            if outcome.client_gone:
                meta.status = "client_disconnected"
            elif translator is None:
                meta.status = "error"
            else:
                meta.status = translator.response.get("status", "failed")
            meta.log_completed()

    async def _open(
        self,
        chat: dict,
        headers: dict[str, str],
        disconnected: asyncio.Future[None],
        deadline: float | None,
    ) -> httpx.Response | None:
        """Open the upstream stream, racing the client leaving and (JSON mode) the deadline.

        Returns None when the client went away first; the pending request is
        cancelled then, so the backend sees the connection close.
        """
        upstream = self._rt.upstream
        assert upstream is not None, "lifespan startup did not run"
        opening = asyncio.ensure_future(upstream.open(orjson.dumps(chat), headers))
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait((opening, disconnected), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this request was cancelled (e.g. worker shutdown)
            await _abandon(opening)
            raise
        if opening.done():
            return opening.result()
        await _abandon(opening)
        if disconnected.done():
            return None
        raise UpstreamError(
            504, "The backend did not answer in time.",
            type="server_error", code="backend_timeout", backend_failure=True,
        )

    def _verdict(self, permit: Permit, outcome: Outcome, translator: StreamTranslator | None) -> None:
        """Tell the breaker how the backend did: failed, answered, or no verdict
        (the client left, or a bug of ours ended the request)."""
        breaker = self._rt.breaker
        if outcome.backend_failure:
            breaker.record_failure(permit)
        elif translator is not None and translator.done and not (outcome.internal_error or outcome.client_gone):
            breaker.record_success(permit)
        else:
            breaker.release(permit)

    def _client_key(self, req: falcon.asgi.Request) -> str:
        return client_key(req, self._rt.settings)


class _ClosingStream:
    """Falcon ends a response stream with ``close()``, which async generators lack
    (they have ``aclose()``): without this, a stream Falcon stops iterating would
    keep its upstream request, breaker permit and metrics line until garbage collection."""

    __slots__ = ("_gen",)

    def __init__(self, gen: AsyncIterator[bytes]) -> None:
        self._gen = gen

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen

    async def close(self) -> None:
        await self._gen.aclose()  # type: ignore[attr-defined]


async def _abandon(opening: asyncio.Future) -> None:
    """Cancel a pending upstream open; close its response if it had arrived."""
    if opening.done():
        if not opening.cancelled() and opening.exception() is None:
            await opening.result().aclose()
        return
    opening.cancel()
    try:
        await opening
    except BaseException:
        pass


def _log_warnings(meta: RequestMeta, ctx: ResponseContext, start: int) -> None:
    """Warnings from translation (dropped built-in tools, calls outside allowed_tools…)."""
    for warning in ctx.warnings[start:]:
        log.warning("request_id=%s model=%s: %s", meta.request_id, ctx.model, warning)


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
            if not _is_header_safe(value):
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


async def _read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; refuse larger bodies before reading them whole."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in req.stream:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> ProxyError:
    return ProxyError(
        413, f"The request body is larger than the {limit // (1024 * 1024)} MB limit.", code="request_too_large"
    )


def _parse_body(raw: bytes) -> dict:
    if not raw:
        raise invalid_request("The request body is empty: send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
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
    return body


def _loggable_model(model: object) -> str:
    if isinstance(model, str) and 0 < len(model) <= 256 and model.isprintable() and " " not in model:
        return model
    return "-"
