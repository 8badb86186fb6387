"""One WebSocket-mode connection: every client message as it comes, one response at a time.

A reader takes each message the moment it arrives — so a second
``response.create``, a ``response.steer`` or the client leaving is seen while a
response streams — and starts at most one response at a time
(``proxy.resources.ws_response``). What each message gets:

- ``response.create``: a response; while one runs, an ``error`` event (409
  ``response_in_progress``), and the connection stays usable.
- ``response.steer``: ``response.steer.failed`` (``steering_not_supported``) with
  the input returned. It belongs to no response's stream, so its
  ``sequence_number`` counts this connection's own events.
- ``response.processed`` (Codex's acknowledgement): nothing. A binary message,
  one that is not JSON, of an unknown type, or over ``MAX_BODY_BYTES``: an
  ``error`` event (a message over the protocol's own cap, somewhat larger, closes
  the connection with 1009 before it is buffered: see ``proxy.worker``).

Chaining: the connection keeps its last completed (or incomplete) response's
context in memory, so ``previous_response_id`` naming it works with ``store:
false``; any other id goes to the store seam (``proxy.resources.chaining``), and
``store: true`` responses are handed to it.

The client leaving sets ``gone``, which every exchange watches: its upstream
request is cancelled at once (tokens cost money), as for HTTP. After
``WEBSOCKET_MAX_SECS`` the connection lets a running response finish, then sends
OpenAI's ``websocket_connection_limit_reached`` error and closes (1000). When the
worker stops (``stopping``, ``proxy.drain.STOPPING``) the connection closes with 1012
(service restart) at once if idle, else right after its running response's terminal
event; a ``response.create`` that arrives meanwhile gets a 503 ``error`` event (Codex
retries a 503) instead of a response the close would cut. Either way the client
reconnects, to a worker that is not stopping. Keep-alive pings are the protocol's
(``WEBSOCKET_PING_SECS``, in ``proxy.worker``).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import falcon.asgi
from falcon.errors import PayloadTypeError, WebSocketDisconnected

from ..errors import ProxyError, invalid_request, restarting
from ..runtime import Runtime
from ..store import History
from ..translate import ws_frames as wf
from ..translate.errors import InvalidRequest
from .compact import Compaction
from .responses import _too_large
from .ws_response import Responder, Run, protocol_error

log = logging.getLogger("proxy.websocket")

_CHAINABLE = frozenset({"completed", "incomplete"})


class Connection:
    """See the module docstring; implements ``ws_response.Link`` for its responses."""

    def __init__(
        self, runtime: Runtime, compaction: Compaction, ws: falcon.asgi.WebSocket, *,
        key: str, upstream_key: str, headers: dict[str, str], stopping: asyncio.Future[None] | None = None,
    ) -> None:
        self._settings = runtime.settings
        self._responder = Responder(runtime, compaction, key=key, upstream_key=upstream_key, headers=headers)
        self._ws = ws
        self._gone = asyncio.Event()
        self._busy: Run | None = None  # the response running, if any
        self._task: asyncio.Task[None] | None = None
        self._last: History | None = None  # what chaining from the last response stands on
        # Once the connection is ending (its age limit, its worker stopping): what a new
        # response.create gets instead of a response; the running one still finishes.
        self._ending: ProxyError | None = None
        self._stopping = stopping
        self._events = 0  # connection-level events sent (response.steer.failed)

    async def run(self) -> None:
        enders = [asyncio.create_task(self._limit())]
        if self._stopping is not None:
            enders.append(asyncio.create_task(self._restart(self._stopping)))
        try:
            await self._read()
        finally:
            self._gone.set()
            for ender in enders:
                ender.cancel()
            task = self._task
            if task is not None and not task.done():
                task.cancel()  # its exchange closes the upstream request on the way out
            await asyncio.gather(*enders, *(() if task is None else (task,)), return_exceptions=True)

    # ------------------------------------------------------------------ messages in

    async def _read(self) -> None:
        ws = self._ws
        limit = self._settings.max_body_bytes
        while True:
            try:
                text = await ws.receive_text()
            except WebSocketDisconnected:
                return
            except PayloadTypeError:
                await self.send(protocol_error(invalid_request(
                    "Binary messages are not supported: send each event as a JSON text message.",
                    code="invalid_frame",
                )))
                continue
            if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
                await self.send(protocol_error(_too_large(limit)))
                continue
            await self._on_message(text)

    async def _on_message(self, text: str) -> None:
        try:
            frame = wf.parse_frame(text)
        except InvalidRequest as refusal:
            await self.send(protocol_error(refusal))
            return
        if isinstance(frame, wf.Ignored):
            return
        if isinstance(frame, wf.Steer):
            self._events += 1
            await self.send(wf.steer_failed_event(frame, self._events - 1))
            return
        if self._ending is not None:
            await self.send(protocol_error(self._ending, frame.stream_id))
            return
        if self._busy is not None:
            await self.send(protocol_error(ProxyError(
                409,
                "A response is already in progress on this connection: wait for its terminal event "
                "(response.completed, response.incomplete or response.failed), or open another connection.",
                code="response_in_progress",
            ), frame.stream_id))
            return
        run = self._busy = Run(frame.body.get("model"))
        self._task = asyncio.create_task(self._respond(frame, run))

    async def _respond(self, frame: wf.Create, run: Run) -> None:
        try:
            await self._responder.respond(self, frame, run)
        finally:
            self.sent_terminal(run)

    # ------------------------------------------------------------------ Link

    async def send(self, event: dict[str, Any]) -> bool:
        try:
            await self._ws.send_text(wf.encode(event))
            return True
        except WebSocketDisconnected:
            self._gone.set()
            return False

    def sent_terminal(self, run: Run) -> None:
        if self._busy is run:
            self._busy = None

    def watch(self) -> asyncio.Future[None]:
        """A future done when the client leaves (one per exchange: the exchange cancels it when it closes)."""
        return asyncio.ensure_future(self._wait_gone())

    async def _wait_gone(self) -> None:
        await self._gone.wait()

    def gone(self) -> bool:
        return self._gone.is_set()

    def last(self) -> History | None:
        return self._last

    def keep(self, history: History) -> None:
        self._last = history

    # ------------------------------------------------------------------ lifetime

    async def _limit(self) -> None:
        await asyncio.sleep(self._settings.websocket_max_secs)
        reached = self._limit_reached()
        if await self._end(reached) and await self.send(protocol_error(reached)):
            await self._ws.close(1000, "websocket_connection_limit_reached")

    async def _restart(self, stopping: asyncio.Future[None]) -> None:
        await asyncio.wait((stopping,))  # (not awaited directly: a cancelled wait would cancel it)
        if await self._end(restarting(), takes_over=True):
            await self._ws.close(1012, "service restart")

    async def _end(self, refusal: ProxyError, *, takes_over: bool = False) -> bool:
        """Refuse new responses with ``refusal`` and wait for the running one to finish. False when
        the other ending took over meanwhile (a restart over the age limit): it closes the socket."""
        if self._ending is None or takes_over:
            self._ending = refusal
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait((task,))
        return self._ending is refusal

    def _limit_reached(self) -> ProxyError:
        secs = self._settings.websocket_max_secs
        span = f"{secs / 60:g} minutes" if secs >= 60 else f"{secs:g} seconds"
        return ProxyError(
            400,
            f"Responses websocket connection limit reached ({span}). Create a new websocket connection to continue.",
            code="websocket_connection_limit_reached",
        )
