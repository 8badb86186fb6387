"""The lanes of one WebSocket connection: when each ``response.create`` runs, and what may be chained from.

OpenAI's WebSocket mode multiplexes a connection by ``stream_id`` (the openai SDK's
``ResponseCreate.stream_id``; its ``lib/responses_websocket`` README; OpenAI's
WebSocket-mode guide): creates naming the same lane run FIFO and never overlap,
creates on different lanes run concurrently, and a create without ``stream_id`` is
on the implicit default lane, which the guide says follows the named lanes' ordering
and concurrency rules — so a second create there waits its turn too, where this
server once refused it (409 ``response_in_progress``). ``Lanes`` is that scheduler; the
connection (``proxy.resources.ws_connection``) hands it each accepted create and it
starts one task per response.

Bounds, per connection (each refusal is an ``error`` frame with the create's
``stream_id``, if it named one; the connection goes on):

- ``WEBSOCKET_MAX_LANES`` distinct named lanes over the connection's life (the default
  lane does not count; OpenAI's 32): 400 ``websocket_stream_limit_reached``, OpenAI's code;
- ``WEBSOCKET_MAX_ACTIVE`` responses running at once across lanes (OpenAI's 16): more
  wait in their lanes, the earliest-sent first;
- ``WEBSOCKET_MAX_QUEUED`` creates waiting to start, their frames' text ``max_queued_bytes``
  (``MAX_BODY_BYTES``) long together at most, so waiting work holds one body's worth:
  429 ``websocket_queue_limit_reached``. A create that can start at once never counts.

``Kept`` is what the connection's store-less chaining stands on: the responses a later
create may name in ``previous_response_id`` with ``store: false``, from any lane (a new
lane may fork from another's response). It keeps the most recently used
``WEBSOCKET_MAX_ACTIVE`` (at least 2): as many as may run at once, so what a connection
holds at rest is bounded by what it may hold while running — enough for every running
lane's latest response and the parents of forks. Histories along one chain share their
items, so keeping several of a conversation costs little more than one. An id it no
longer keeps comes from the response store if there is one (``store: true``), else it is
OpenAI's ``previous_response_not_found``, after which clients resend the conversation.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import ProxyError
from ..store import History
from ..translate import ws_frames as wf


@dataclass(slots=True)
class _Waiting:
    frame: wf.Create
    size: int  # the frame's text length
    order: int  # arrival order across lanes


class _Lane:
    __slots__ = ("waiting", "task")

    def __init__(self) -> None:
        self.waiting: deque[_Waiting] = deque()
        self.task: asyncio.Task[None] | None = None  # its running response

    @property
    def idle(self) -> bool:
        return self.task is None and not self.waiting


class Lanes:
    """Runs each accepted create on its lane (module docstring); ``run(frame)`` answers one."""

    def __init__(
        self, run: Callable[[wf.Create], Coroutine[Any, Any, None]], *,
        max_lanes: int, max_active: int, max_queued: int, max_queued_bytes: int,
    ) -> None:
        self._run = run
        self._max_lanes, self._max_active = max_lanes, max_active
        self._max_queued, self._max_queued_bytes = max_queued, max_queued_bytes
        self._lanes: dict[str | None, _Lane] = {}
        self._named = 0
        self._running: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._waiting_bytes = 0
        self._order = 0
        self._closed = False

    def admit(self, frame: wf.Create, size: int) -> ProxyError | None:
        """Queue ``frame`` on its lane and start what may start; the refusal if over a bound."""
        lane = self._lanes.get(frame.stream_id)
        if lane is None and frame.stream_id is not None and self._named >= self._max_lanes:
            return ProxyError(
                400, f"This WebSocket connection has reached its maximum number of distinct stream IDs "
                f"({self._max_lanes}). Reuse an existing stream_id or open a new WebSocket connection.",
                param="stream_id", code="websocket_stream_limit_reached",
            )
        starts_now = (lane is None or lane.idle) and len(self._running) < self._max_active
        if not starts_now and (
            self._waiting >= self._max_queued or self._waiting_bytes + size > self._max_queued_bytes
        ):
            return ProxyError(
                429, f"This WebSocket connection already has {self._waiting} response.create waiting to start "
                f"({self._waiting_bytes} bytes; at most {self._max_queued}, {self._max_queued_bytes} bytes): wait "
                "for a response to finish, or open another connection.",
                code="websocket_queue_limit_reached",
            )
        if lane is None:
            lane = self._lanes[frame.stream_id] = _Lane()
            self._named += frame.stream_id is not None
        lane.waiting.append(_Waiting(frame, size, self._order))
        self._order += 1
        self._waiting += 1
        self._waiting_bytes += size
        self._pump()
        return None

    def _pump(self) -> None:
        """Start the earliest-sent waiting create of each free lane, while a slot is free."""
        while not self._closed and len(self._running) < self._max_active:
            ready = [lane for lane in self._lanes.values() if lane.task is None and lane.waiting]
            if not ready:
                return
            lane = min(ready, key=lambda each: each.waiting[0].order)
            head = lane.waiting.popleft()
            self._waiting -= 1
            self._waiting_bytes -= head.size
            task = lane.task = asyncio.create_task(self._run(head.frame))
            self._running.add(task)
            task.add_done_callback(partial(self._finished, lane))

    def _finished(self, lane: _Lane, task: asyncio.Task[None]) -> None:
        lane.task = None
        self._running.discard(task)
        self._pump()

    def close(self) -> list[wf.Create]:
        """Start nothing more; the creates that were waiting, earliest first (they never run)."""
        self._closed = True
        dropped = sorted((w for lane in self._lanes.values() for w in lane.waiting), key=lambda w: w.order)
        for lane in self._lanes.values():
            lane.waiting.clear()
        self._waiting = self._waiting_bytes = 0
        return [w.frame for w in dropped]

    async def settle(self) -> None:
        """Wait until no response runs (after ``close``, none starts)."""
        while self._running:
            await asyncio.wait(set(self._running))

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel every running response (each exchange closes its upstream request); their tasks."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        return tasks


class Kept:
    """The connection's chainable responses, the most recently used ``cap`` (module docstring)."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._items: OrderedDict[str, tuple[History, str | None]] = OrderedDict()

    def get(self, response_id: object) -> History | None:
        if not isinstance(response_id, str) or (kept := self._items.get(response_id)) is None:
            return None
        self._items.move_to_end(response_id)
        return kept[0]

    def put(self, history: History, stream_id: str | None) -> None:
        self._items[history.response_id] = (history, stream_id)
        self._items.move_to_end(history.response_id)
        while len(self._items) > self._cap:
            self._items.popitem(last=False)

    def lane_of(self, response_id: str) -> tuple[bool, str | None]:
        """(whether the response is kept, the lane it was created on)."""
        kept = self._items.get(response_id)
        return (False, None) if kept is None else (True, kept[1])
