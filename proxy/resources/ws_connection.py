"""One WebSocket-mode connection: frames in, each response's events out, one response at a time.

A reader task takes every client message as it comes (so a second
``response.create``, a ``response.steer`` or the client leaving is seen while a
response streams) and starts at most one response at a time; each response is
an ``Exchange`` — the same round trip, translator, failure taxonomy and breaker
as ``POST`` — whose events go out as text messages (``proxy.translate.ws_frames``
for the frame shapes). What each frame gets:

- ``response.create``: a response (``generate: false``: prepared without calling
  the backend; ending with a ``compaction_trigger``: compacted,
  ``proxy.resources.compact``); while one runs, an ``error`` event (409) and the
  connection stays usable. A request refused before its response began (bad
  input, unknown ``previous_response_id``, backend 4xx/5xx before any output,
  breaker open) gets one protocol ``error`` event with the HTTP status a ``POST``
  would have had, and no response events — as a stream refused before its first
  output gets a JSON error over HTTP.
- ``response.steer``: ``response.steer.failed`` (``steering_not_supported``) with
  the input returned. It belongs to no response's stream, so its
  ``sequence_number`` counts this connection's own events.
- ``response.processed`` (Codex): nothing. Anything else: an ``error`` event.

Chaining: the connection keeps its last completed (or incomplete) response's
context in memory, so ``previous_response_id`` naming it works with ``store:
false``; any other id goes to the store seam (``proxy.resources.chaining``), and
``store: true`` responses are handed to it. The context is recorded in the
exchange's ``on_terminal`` hook, before the terminal event is sent, and the
connection is free for the next ``response.create`` the moment that event is
out: a client that chains at once always finds it.

The client leaving sets ``gone``, which every exchange watches: its upstream
request is cancelled at once (tokens cost money), as for HTTP. After
``WEBSOCKET_MAX_SECS`` the connection lets a running response finish, then
sends OpenAI's ``websocket_connection_limit_reached`` error and closes (1000).
Each response writes one ``request_completed`` line.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import falcon.asgi
from falcon.errors import PayloadTypeError, WebSocketDisconnected

from ..errors import ProxyError, invalid_request
from ..exchange import Exchange
from ..failures import Cause, Failure
from ..logs import mask_key, request_completed
from ..relay import KEEPALIVE, Batch, _Keepalive
from ..runtime import Runtime
from ..translate import compaction as cmp
from ..translate import validate as v
from ..translate import ws_frames as wf
from ..translate.history import input_items, next_context, with_context
from ..translate.request import translate_request
from .chaining import Item, not_found, owner_of
from .compact import Compaction
from .responses import FIRST_BATCH_GRACE_SECS, _has_output, _loggable_model, _scrub, _too_large
from .scope import _new_request_id

log = logging.getLogger("proxy.websocket")

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_CHAINABLE = frozenset({"completed", "incomplete"})


class _Run:
    """The bookkeeping of one ``response.create``: its metrics line, and the busy token."""

    __slots__ = ("request_id", "started", "model", "status", "http_status")

    def __init__(self, model: object) -> None:
        self.request_id = _new_request_id()
        self.started = time.perf_counter()
        self.model = _loggable_model(model)
        self.status = "error"
        self.http_status = 200


class Connection:
    """See the module docstring."""

    def __init__(
        self, runtime: Runtime, compaction: Compaction, ws: falcon.asgi.WebSocket, *,
        key: str, upstream_key: str, headers: dict[str, str],
    ) -> None:
        self._rt = runtime
        self._compaction = compaction
        self._ws = ws
        self._masked_key = mask_key(key)
        self._owner = owner_of(key)
        self._upstream_key = upstream_key
        self._headers = headers
        self._gone = asyncio.Event()
        self._busy: _Run | None = None  # the response running, if any
        self._task: asyncio.Task[None] | None = None
        self._last: tuple[str, list[Item]] | None = None  # (response id, the context chaining from it)
        self._expired = False
        self._events = 0  # connection-level events sent (response.steer.failed)

    async def run(self) -> None:
        limit = asyncio.create_task(self._limit())
        try:
            await self._read()
        finally:
            self._gone.set()
            limit.cancel()
            task = self._task
            if task is not None and not task.done():
                task.cancel()  # its exchange closes the upstream request on the way out
            await asyncio.gather(limit, *(() if task is None else (task,)), return_exceptions=True)

    # ------------------------------------------------------------------ frames in

    async def _read(self) -> None:
        ws = self._ws
        limit = self._rt.settings.max_body_bytes
        while True:
            try:
                text = await ws.receive_text()
            except WebSocketDisconnected:
                return
            except PayloadTypeError:
                await self._send(wf.error_event(invalid_request(
                    "Binary messages are not supported: send each event as a JSON text message.",
                    code="invalid_frame",
                )))
                continue
            if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
                await self._send(wf.error_event(_too_large(limit)))
                continue
            await self._on_message(text)

    async def _on_message(self, text: str) -> None:
        try:
            frame = wf.parse_frame(text)
        except ProxyError as refusal:
            await self._send(wf.error_event(refusal))
            return
        if isinstance(frame, wf.Ignored):
            return
        if isinstance(frame, wf.Steer):
            self._events += 1
            await self._send(wf.steer_failed_event(frame, self._events - 1))
            return
        if self._expired:
            await self._send(wf.error_event(self._limit_reached()))
            return
        if self._busy is not None:
            await self._send(wf.error_event(ProxyError(
                409,
                "A response is already in progress on this connection: wait for its terminal event "
                "(response.completed, response.incomplete or response.failed), or open another connection.",
                code="response_in_progress",
            )))
            return
        run = self._busy = _Run(frame.body.get("model"))
        self._task = asyncio.create_task(self._respond(frame, run))

    # --------------------------------------------------------------- responses

    async def _respond(self, frame: wf.Create, run: _Run) -> None:
        try:
            await self._create(frame, run)
        except ProxyError as refusal:
            run.http_status = refusal.status
            await self._send(wf.error_event(refusal))
        except Failure as failure:
            if failure.cause is Cause.CLIENT_GONE:
                run.status, run.http_status = "client_disconnected", 499
            else:
                run.status = "failed" if failure.cause is not Cause.BREAKER_OPEN else "error"
                # A backend may echo the key it was given; it must not reach the client.
                failure.message = _scrub(failure.message, self._upstream_key)
                error = failure.http_error()
                run.http_status = error.status
                await self._send(wf.error_event(error))
        except asyncio.CancelledError:
            run.status, run.http_status = "client_disconnected", 499
            raise
        except Exception:  # a bug of ours: this response fails, the connection and the worker live on
            log.exception("request_id=%s: unhandled error in a WebSocket response", run.request_id)
            run.http_status = 500
            await self._send(wf.error_event(ProxyError(
                500, "Internal proxy error.", type="server_error", code="internal_error"
            )))
        finally:
            if self._busy is run:
                self._busy = None
            request_completed(
                model=run.model, duration_ms=(time.perf_counter() - run.started) * 1000.0, status=run.status,
                http_status=run.http_status, key=self._masked_key, request_id=run.request_id,
            )

    async def _create(self, frame: wf.Create, run: _Run) -> None:
        body = frame.body
        previous = body.get("previous_response_id")
        context: list[Item] = []
        if previous is not None:
            if not isinstance(previous, str):
                raise v.fail("previous_response_id", "a string", previous)
            context = await self._context_of(previous)
            body = with_context(body, context)
        own = input_items(frame.body) if frame.body.get("input") is not None else []
        if cmp.has_trigger(body):
            await self._compact(body, previous, frame, run)
            return
        chat, ctx = translate_request(body, self._rt.policy)
        ctx.echo["previous_response_id"] = previous
        run.model = ctx.model

        async def remember(response: dict[str, Any]) -> None:
            await self._remember(response, next_context(context, own, response))

        if not frame.generate:  # Codex's warm-up: state prepared, nothing generated, no backend call
            events = wf.prepared_events(ctx)
            await remember(events[-1]["response"])
            run.status = "completed"
            await self._send_events(events, frame, run)
            return
        rt = self._rt
        assert rt.upstream is not None, "lifespan startup did not run"
        exchange = Exchange(
            chat=chat, ctx=ctx, headers={**self._headers, "x-request-id": run.request_id}, breaker=rt.breaker,
            upstream=rt.upstream, settings=rt.settings, secret=self._upstream_key,
            masked_secret=mask_key(self._upstream_key), disconnected=self._watch(), emit_events=True,
            on_terminal=remember,
        )
        await exchange.open()
        async with exchange:
            await self._stream(exchange, frame, run)

    async def _stream(self, exchange: Exchange, frame: wf.Create, run: _Run) -> None:
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
            if await self._send_events(events, frame, run, exchange) and not exchange.translator.done:
                async for batch in batches:
                    if isinstance(batch, _Keepalive):
                        continue  # the protocol's own pings keep the connection alive
                    if not await self._send_events(batch, frame, run, exchange):
                        break
        finally:
            await batches.aclose()
        failure = exchange.failure
        if (failure is not None and failure.cause is Cause.CLIENT_GONE) or self._gone.is_set():
            run.status, run.http_status = "client_disconnected", 499
        else:
            run.status = exchange.response.get("status", "failed")

    async def _compact(self, body: dict[str, Any], previous: str | None, frame: wf.Create, run: _Run) -> None:
        """A ``response.create`` ending with a ``compaction_trigger`` (Codex's remote compaction v2)."""
        ctx, final = await self._compaction.answer_trigger(
            body, key=self._upstream_key, headers={**self._headers, "x-request-id": run.request_id},
            watch=self._watch, previous_response_id=previous,
        )
        run.model = ctx.model
        items = input_items(body)[:-1]
        # What the conversation stands on from here: its user messages, then the summary.
        await self._remember(final, [*cmp.user_messages(items), final["output"][0]])
        run.status = "completed"
        await self._send_events(cmp.trigger_stream(ctx, final), frame, run)

    async def _context_of(self, previous: str) -> list[Item]:
        last = self._last
        if last is not None and last[0] == previous:
            return last[1]
        context = await self._compaction.store.load(previous, owner=self._owner)
        if context is None:
            raise not_found(previous)
        return context

    async def _remember(self, response: dict[str, Any], context: list[Item]) -> None:
        if response.get("status") not in _CHAINABLE:
            return
        self._last = (response["id"], context)
        if response.get("store"):
            try:
                await self._compaction.store.save(response, context, owner=self._owner)
            except Failure as failure:  # the response still chains within this connection
                log.warning("response %s not stored: %s", response["id"], failure.message)

    # --------------------------------------------------------------- frames out

    async def _send_events(
        self, events: Batch, frame: wf.Create, run: _Run, exchange: Exchange | None = None
    ) -> bool:
        """Send each event as one message; False once the client is gone. The connection is free
        for the next ``response.create`` as soon as the terminal event is out."""
        stream_id = frame.stream_id
        for event in events:
            kind = event["type"]
            if kind == "error":
                failure = exchange.failure if exchange is not None else None
                error_type = (failure.error_type or failure.row.error_type) if failure is not None else "server_error"
                event = wf.stream_error_event(event, error_type)
            if stream_id is not None:
                event = {**event, "stream_id": stream_id}
            if not await self._send(event):
                return False
            if kind in _TERMINAL and self._busy is run:
                self._busy = None
        return True

    async def _send(self, event: dict[str, Any]) -> bool:
        try:
            await self._ws.send_text(wf.encode(event))
            return True
        except WebSocketDisconnected:
            self._gone.set()
            return False

    def _watch(self) -> asyncio.Future[None]:
        """A future done when the client leaves (one per exchange: the exchange cancels it when it closes)."""
        return asyncio.ensure_future(self._wait_gone())

    async def _wait_gone(self) -> None:
        await self._gone.wait()

    # ---------------------------------------------------------------- lifetime

    async def _limit(self) -> None:
        await asyncio.sleep(self._rt.settings.websocket_max_secs)
        self._expired = True
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait((task,))  # a running response finishes first
        if await self._send(wf.error_event(self._limit_reached())):
            await self._ws.close(1000, "websocket_connection_limit_reached")

    def _limit_reached(self) -> ProxyError:
        secs = self._rt.settings.websocket_max_secs
        span = f"{secs / 60:g} minutes" if secs >= 60 else f"{secs:g} seconds"
        return ProxyError(
            400,
            f"Responses websocket connection limit reached ({span}). Create a new websocket connection to continue.",
            code="websocket_connection_limit_reached",
        )
