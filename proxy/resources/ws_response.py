"""One ``response.create`` of a WebSocket connection, from frame to terminal event.

Each response is an ``Exchange`` — the same round trip, translator, failure
taxonomy and breaker as ``POST /v1/responses`` — whose events go out as one text
message each (``proxy.translate.ws_frames`` for the shapes). Three kinds:

- an ordinary request: streamed from the backend; if the backend refuses it
  before any output (4xx, 5xx, breaker open…), one protocol ``error`` event with
  the HTTP status a ``POST`` would have had, and no response events — as a stream
  refused before its first output gets a JSON error over HTTP;
- ``generate: false`` (Codex's warm-up): prepared without calling the backend;
- ending with a ``compaction_trigger``: compacted (``proxy.resources.compact``).

``previous_response_id`` is resolved by ``proxy.state.stand`` (a response the
connection keeps in memory, from any lane, costs no store read and works with
``store: false``; anything else comes from the store); the context a later request
will chain from, and the stored response when ``store`` is true, are recorded before
the terminal event is sent (the exchange's ``on_terminal`` hook), so the next
``response.create`` on the lane, or one forking from another lane, finds it. Every
frame of a response names its lane (``stream_id``) when its create did. Each response
writes one ``request_completed`` line.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from ..errors import ProxyError
from ..exchange import Exchange
from ..failures import Cause, Failure
from ..logs import mask_key, request_completed
from ..relay import KEEPALIVE, Batch, _Keepalive
from ..runtime import Runtime
from ..state import Standing, stand
from ..store import History
from ..translate import compaction as cmp
from ..translate import ws_frames as wf
from ..translate.context import ResponseContext
from ..translate.errors import InvalidRequest
from ..translate.request import translate_request
from ..translate.shapes import Response
from .auth import scrub
from .compact import Compaction
from .responses import FIRST_BATCH_GRACE_SECS, _has_output, _loggable_model
from .scope import new_request_id

log = logging.getLogger("proxy.websocket")

# Responses a later request may chain from (a failed one is not a context to stand on).
_CHAINABLE = frozenset({"completed", "incomplete"})


def protocol_error(refusal: ProxyError | InvalidRequest, stream_id: str | None = None) -> dict[str, Any]:
    """The ``error`` frame for a request refused before its response began: the HTTP status and
    the OpenAI-shaped error a ``POST`` gets (the core's ``InvalidRequest`` of its status, as in
    ``proxy.app``), with the refused ``response.create``'s ``stream_id``, if it had one."""
    if isinstance(refusal, InvalidRequest):
        refusal = ProxyError(refusal.status, refusal.message, param=refusal.param, code=refusal.code)
    return wf.error_event(refusal.status, refusal.body()["error"], refusal.headers, stream_id)


class Run:
    """One ``response.create``'s bookkeeping: its metrics line, its lane, its response's id once known."""

    __slots__ = ("request_id", "started", "model", "status", "http_status", "stream_id", "response_id")

    def __init__(self, model: object, stream_id: str | None = None) -> None:
        self.request_id = new_request_id()
        self.started = time.perf_counter()
        self.model = _loggable_model(model)
        self.status = "error"
        self.http_status = 200
        self.stream_id = stream_id
        self.response_id: str | None = None


class Link(Protocol):
    """What a response needs from its connection (``proxy.resources.ws_connection``)."""

    async def send(self, event: dict[str, Any]) -> bool: ...  # False once the client is gone
    def watch(self) -> asyncio.Future[None]: ...  # done when the client leaves
    def gone(self) -> bool: ...
    def kept(self, response_id: object) -> History | None: ...  # what chaining from a kept response stands on
    def keep(self, history: History, stream_id: str | None) -> None: ...  # a response to chain from, and its lane


class Responder:
    """Answers the ``response.create`` frames of one connection (see the module docstring)."""

    def __init__(
        self, runtime: Runtime, compaction: Compaction, *, key: str, upstream_key: str, headers: dict[str, str]
    ) -> None:
        self._rt = runtime
        self._compaction = compaction
        self._key = key
        self._masked_key = mask_key(key)
        self._upstream_key = upstream_key
        self._headers = headers

    async def respond(self, link: Link, frame: wf.Create, run: Run) -> None:
        try:
            await self._create(link, frame, run)
        except (ProxyError, InvalidRequest) as refusal:
            frame_out = protocol_error(refusal, frame.stream_id)
            run.http_status = frame_out["status"]
            await link.send(frame_out)
        except Failure as failure:
            if failure.cause is Cause.CLIENT_GONE:
                run.status, run.http_status = "client_disconnected", 499
            else:
                run.status = "failed" if failure.cause is not Cause.BREAKER_OPEN else "error"
                # A backend may echo the key it was given; it must not reach the client.
                failure.message = scrub(failure.message, self._upstream_key)
                error = failure.http_error()
                run.http_status = error.status
                await link.send(protocol_error(error, frame.stream_id))
        except asyncio.CancelledError:
            run.status, run.http_status = "client_disconnected", 499
            raise
        except Exception:  # a bug of ours: this response fails, the connection and the worker live on
            log.exception("request_id=%s: unhandled error in a WebSocket response", run.request_id)
            run.http_status = 500
            await link.send(protocol_error(ProxyError(
                500, "Internal proxy error.", type="server_error", code="internal_error"
            ), frame.stream_id))
        finally:
            request_completed(
                model=run.model, duration_ms=(time.perf_counter() - run.started) * 1000.0, status=run.status,
                http_status=run.http_status, key=self._masked_key, request_id=run.request_id,
            )

    async def _create(self, link: Link, frame: wf.Create, run: Run) -> None:
        rt = self._rt
        standing = await stand(rt.store, self._key, frame.body, request_id=run.request_id,
                               known=link.kept(frame.body.get("previous_response_id")), chaining=True)
        if cmp.has_trigger(standing.body):
            await self._compact(link, standing, frame, run)
            return
        chat, ctx = translate_request(
            standing.body, rt.policy,
            previous_response_id=standing.previous_response_id, conversation_id=standing.conversation_id,
            stored_items=len(standing.context),
        )
        standing.prepare()
        run.model, run.response_id = ctx.model, ctx.response_id
        try:
            await self._answer(link, frame, run, chat, ctx, standing)
        finally:  # dropped built-in tools, calls outside allowed_tools…, as the HTTP path logs them
            for warning in ctx.warnings:
                log.warning("request_id=%s model=%s: %s", run.request_id, run.model, warning)

    async def _answer(
        self, link: Link, frame: wf.Create, run: Run, chat: dict[str, Any], ctx: ResponseContext, standing: Standing
    ) -> None:
        async def remember(response: Response) -> None:
            await standing.remember(response)
            if response["status"] in _CHAINABLE:
                link.keep(standing.next_history(response), frame.stream_id)

        if not frame.generate:  # state prepared, nothing generated, no backend call
            events = wf.prepared_events(ctx)
            await remember(events[-1]["response"])
            run.status = "completed"
            await self._send_events(link, events, frame)
            return
        exchange = self._rt.exchange(
            chat=chat, ctx=ctx, headers={**self._headers, "x-request-id": run.request_id},
            secret=self._upstream_key, disconnected=link.watch(), emit_events=True, on_terminal=remember,
        )
        await exchange.open()
        async with exchange:
            await self._stream(link, exchange, frame, run)

    async def _stream(self, link: Link, exchange: Exchange, frame: wf.Create, run: Run) -> None:
        head = exchange.start()
        batches = exchange.batches(first_wait_secs=FIRST_BATCH_GRACE_SECS)
        try:
            first: Batch | _Keepalive = await batches.__anext__()
        except StopAsyncIteration:  # the client left
            first = KEEPALIVE
        try:
            failure = exchange.failure
            if failure is not None and not isinstance(first, _Keepalive) and not _has_output(first):
                raise failure  # nothing but the refusal so far: a protocol error, as over HTTP
            events = head if isinstance(first, _Keepalive) else head + first
            if await self._send_events(link, events, frame, exchange) and not exchange.translator.done:
                async for batch in batches:
                    if isinstance(batch, _Keepalive):
                        continue  # the protocol's own pings keep the connection alive
                    if not await self._send_events(link, batch, frame, exchange):
                        break
        finally:
            await batches.aclose()
        failure = exchange.failure
        if (failure is not None and failure.cause is Cause.CLIENT_GONE) or link.gone():
            run.status, run.http_status = "client_disconnected", 499
        else:
            run.status = exchange.response.get("status", "failed")

    async def _compact(self, link: Link, standing: Standing, frame: wf.Create, run: Run) -> None:
        ctx, final, window = await self._compaction.answer_trigger(
            standing, key=self._upstream_key, headers={**self._headers, "x-request-id": run.request_id},
            watch=link.watch,
        )
        run.model, run.response_id = ctx.model, final["id"]
        # What the conversation stands on from here: its user messages, then the summary.
        link.keep(window, frame.stream_id)
        run.status = "completed"
        await self._send_events(link, cmp.trigger_stream(ctx, final), frame)

    async def _send_events(
        self, link: Link, events: Batch, frame: wf.Create, exchange: Exchange | None = None
    ) -> bool:
        """Send each event as one message; False once the client is gone."""
        stream_id = frame.stream_id
        for event in events:
            kind = event["type"]
            if kind == "error":
                failure = exchange.failure if exchange is not None else None
                error_type = (failure.error_type or failure.row.error_type) if failure is not None else "server_error"
                event = wf.stream_error_event(event, error_type)
            if stream_id is not None:
                event = {**event, "stream_id": stream_id}
            if not await link.send(event):
                return False
        return True
