"""One WebSocket-mode connection: every client message as it comes, its responses on their lanes.

A reader takes each message the moment it arrives — so another ``response.create``,
a ``response.steer`` or the client leaving is seen while responses stream — and
hands each accepted create to its lane (``proxy.resources.ws_lanes``: FIFO within a
``stream_id``, lanes concurrently, the default lane too), which runs it
(``proxy.resources.ws_response``). What each message gets:

- ``response.create``: a response, once those before it on its lane have ended; over
  a bound (lanes, creates waiting), an ``error`` event naming its lane, and the
  connection stays usable.
- ``response.steer``: ``response.steer.failed`` (``steering_not_supported``) with
  the input returned, on the lane of the response it targets when that is on this
  connection, else its own ``stream_id`` if it named one. It belongs to no
  response's stream, so its ``sequence_number`` counts this connection's own events.
- ``response.processed`` (Codex's acknowledgement): nothing. A binary message,
  one that is not JSON, of an unknown type, or over ``MAX_BODY_BYTES``: an
  ``error`` event (with the frame's ``stream_id`` once it parsed and named one, an
  oversized one's too: ``_lane_of_refused``; a message over the protocol's own cap,
  somewhat larger, closes the connection with 1009 before it is buffered: see
  ``proxy.worker``).

Every frame out goes through one lock, held for one whole message: one writer at a
time, in the order the writers came, so concurrent lanes interleave between frames
and each response's frames keep their order.

Chaining: the connection keeps its recent completed (or incomplete) responses' contexts
in memory (``ws_lanes.Kept``), so ``previous_response_id`` naming one works with ``store:
false``, from any lane; any other id goes to the store seam (``proxy.state``), and
``store: true`` responses are handed to it.

The client leaving sets ``gone``, which every exchange watches: each running
response's upstream request is cancelled at once (tokens cost money), as for HTTP,
and the creates waiting are dropped. After ``WEBSOCKET_MAX_SECS`` the connection lets
its running responses finish, then sends OpenAI's ``websocket_connection_limit_reached``
error and closes (1000). When the worker stops (``stopping``, ``proxy.drain.STOPPING``)
the connection closes with 1012 (service restart) at once if idle, else right after its
running responses' terminal events; a ``response.create`` that arrives meanwhile, or was
waiting on a lane, gets a 503 ``error`` event (Codex retries a 503) instead of a response
the close would cut. Either way the client reconnects, to a worker that is not stopping.
Keep-alive pings are the protocol's (``WEBSOCKET_PING_SECS``, in ``proxy.worker``).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import falcon.asgi
import orjson
from falcon.errors import PayloadTypeError, WebSocketDisconnected

from ..errors import ProxyError, invalid_request, restarting
from ..runtime import Runtime
from ..store import History
from ..translate import ws_frames as wf
from .compact import Compaction
from .responses import _too_large
from .ws_lanes import Kept, Lanes
from .ws_response import Responder, Run, protocol_error

log = logging.getLogger("proxy.websocket")


class Connection:
    """See the module docstring; implements ``ws_response.Link`` for its responses."""

    def __init__(
        self, runtime: Runtime, compaction: Compaction, ws: falcon.asgi.WebSocket, *,
        key: str, upstream_key: str, headers: dict[str, str], stopping: asyncio.Future[None] | None = None,
    ) -> None:
        settings = self._settings = runtime.settings
        self._responder = Responder(runtime, compaction, key=key, upstream_key=upstream_key, headers=headers)
        self._ws = ws
        self._writing = asyncio.Lock()  # one frame at a time on the socket
        self._gone = asyncio.Event()
        self._lanes = Lanes(
            self._respond, max_lanes=settings.websocket_max_lanes, max_active=settings.websocket_max_active,
            max_queued=settings.websocket_max_queued, max_queued_bytes=settings.max_body_bytes,
        )
        self._running: set[Run] = set()
        self._kept = Kept(max(2, settings.websocket_max_active))  # what chaining in memory stands on
        # Once the connection is ending (its age limit, its worker stopping): what a new
        # response.create gets instead of a response; the running ones still finish.
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
            self._lanes.close()  # the creates waiting are dropped
            running = self._lanes.cancel()  # each exchange closes its upstream request on the way out
            await asyncio.gather(*enders, *running, return_exceptions=True)

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
                await self.send(protocol_error(_too_large(limit), _lane_of_refused(text)))
                continue
            await self._on_message(text)

    async def _on_message(self, text: str) -> None:
        try:
            frame = wf.parse_frame(text)
        except wf.FrameError as bad:
            await self.send(protocol_error(bad, bad.stream_id))
            return
        if isinstance(frame, wf.Ignored):
            return
        if isinstance(frame, wf.Steer):
            self._events += 1
            await self.send(wf.steer_failed_event(frame, self._events - 1, self._steer_lane(frame)))
            return
        refusal = self._ending if self._ending is not None else self._lanes.admit(frame, len(text))
        if refusal is not None:
            await self.send(protocol_error(refusal, frame.stream_id))

    async def _respond(self, frame: wf.Create) -> None:
        run = Run(frame.body.get("model"), frame.stream_id)
        self._running.add(run)
        try:
            await self._responder.respond(self, frame, run)
        finally:
            self._running.discard(run)

    def _steer_lane(self, steer: wf.Steer) -> str | None:
        """The lane a ``response.steer.failed`` goes on: its target's, when the target is on this
        connection (``ResponseSteerFailedEvent.stream_id``), else the steer's own ``stream_id``."""
        target = steer.previous_response_id
        for run in self._running:
            if run.response_id == target:
                return run.stream_id
        kept, stream_id = self._kept.lane_of(target)
        return stream_id if kept else steer.stream_id

    # ------------------------------------------------------------------ Link

    async def send(self, event: dict[str, Any]) -> bool:
        text = wf.encode(event)
        async with self._writing:
            if self._gone.is_set():
                return False
            try:
                await self._ws.send_text(text)
                return True
            except WebSocketDisconnected:
                self._gone.set()
                return False

    def watch(self) -> asyncio.Future[None]:
        """A future done when the client leaves (one per exchange: the exchange cancels it when it closes)."""
        return asyncio.ensure_future(self._wait_gone())

    async def _wait_gone(self) -> None:
        await self._gone.wait()

    def gone(self) -> bool:
        return self._gone.is_set()

    def kept(self, response_id: object) -> History | None:
        return self._kept.get(response_id)

    def keep(self, history: History, stream_id: str | None) -> None:
        self._kept.put(history, stream_id)

    # ------------------------------------------------------------------ lifetime

    async def _limit(self) -> None:
        await asyncio.sleep(self._settings.websocket_max_secs)
        reached = self._limit_reached()
        if await self._end(reached) and await self.send(protocol_error(reached)):
            await self._close(1000, "websocket_connection_limit_reached")

    async def _restart(self, stopping: asyncio.Future[None]) -> None:
        await asyncio.wait((stopping,))  # (not awaited directly: a cancelled wait would cancel it)
        if await self._end(restarting(), takes_over=True):
            await self._close(1012, "service restart")

    async def _end(self, refusal: ProxyError, *, takes_over: bool = False) -> bool:
        """Refuse new responses with ``refusal`` (the creates waiting on a lane too) and wait for the
        running ones to finish. False when the other ending took over meanwhile (a restart over the
        age limit): it closes the socket."""
        if self._ending is None or takes_over:
            self._ending = refusal
        for frame in self._lanes.close():
            await self.send(protocol_error(refusal, frame.stream_id))
        await self._lanes.settle()
        return self._ending is refusal

    async def _close(self, code: int, reason: str) -> None:
        async with self._writing:  # after the frame being written
            await self._ws.close(code, reason)

    def _limit_reached(self) -> ProxyError:
        secs = self._settings.websocket_max_secs
        span = f"{secs / 60:g} minutes" if secs >= 60 else f"{secs:g} seconds"
        return ProxyError(
            400,
            f"Responses websocket connection limit reached ({span}). Create a new websocket connection to continue.",
            code="websocket_connection_limit_reached",
        )


def _lane_of_refused(text: str) -> str | None:
    """The ``stream_id`` of a message refused for its size, read as ``wf.parse_frame`` reads one, so
    that its ``error`` names the lane as every other refusal does: the openai SDK's lane session
    routes an ``error`` by its ``stream_id``, and one without it would reach the default lane
    while the refused lane waited on. Reading it means parsing the message: the protocol's cap
    (``proxy.worker``) bounds that to a little over the largest message accepted, which is parsed
    anyway; a message in which ``"stream_id"`` does not appear (a default-lane one) is not parsed
    at all. (So a key spelled with a JSON escape, ``"stream\\u005fid"``, is not seen here.)"""
    if '"stream_id"' not in text:
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    try:
        return wf.stream_id_of(doc)
    except wf.FrameError:
        return None
