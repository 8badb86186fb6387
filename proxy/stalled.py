"""Requests that stop arriving: ``BODY_READ_TIMEOUT_SECS`` bounds every body and every head, at no cost per request.

uvicorn bounds no body read, and a timer in the app cannot bound them all: Falcon awaits the
first body event before routing, so a client that sends its headers and then no body byte
would never reach the app's timer, and ``asyncio.timeout`` costs ~9 µs a request (more than a
small request's whole read). A slowloris would hold a connection, its task and the part of
the body it sent for as long as it liked.

So the worker sweeps its own connections instead (``RequestWatch``, started by
``proxy.worker.Worker``): every quarter of the timeout (at most a second, at least a tenth),
an HTTP request whose body is still incomplete (uvicorn's ``more_body``) and whose answer
has not begun, found so at sweeps ``timeout`` seconds apart, gets ``BODY_STALLED`` set in its
ASGI scope and its ``receive()`` woken. The app (``proxy.resources.responses``) then answers 408
``request_timeout`` with ``Connection: close``, having done nothing. The bound is therefore
the timeout plus at most two sweeps. A request that arrives whole, as nearly all do, is never
seen by a sweep; one sweep costs a few attribute reads per open connection.

**Heads.** uvicorn has no header timeout either (its keep-alive timer runs only between
requests, and any byte cancels it): a client dripping its request line and headers, or one that
connects and sends nothing, held a connection forever when no HAProxy (``timeout http-request``)
was in front. The same sweep asks each HTTP connection whether it awaits a head
(``LingeringHttpToolsProtocol.head_wait``: a few attribute reads); one found awaiting the same
head at sweeps ``timeout`` seconds apart is timed out (``time_out_head``): a JSON 408
``request_timeout`` and the connection closed when part of the head came, as HAProxy answers; closed
without a word when nothing came (a preconnect or a probe, as HAProxy's ``http-ignore-probes`` and
nginx treat it). The clock starts when a sweep first finds the connection waiting: on a new
connection, from its accept, as HAProxy counts; after an answer, from the first byte of the next
head (until then uvicorn's keep-alive timer bounds the idle connection).

**Answered early.** A request the app answers before reading its body (a 415 for its
``Content-Type``, a 404 for its path) leaves the connection kept alive with that body still
due: uvicorn discards what comes of it, and every byte cancels its keep-alive timer, so a
client dripping the declared body held the connection for as long as it liked. A sweep that
finds such an answered body incomplete at sweeps ``timeout`` seconds apart closes the connection
(its answer was sent whole: nothing is cut; the client has had ``timeout`` seconds to read it).

A scope without the flag's server (the app served by another server, or a test's) has no
bound of its own.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

log = logging.getLogger("proxy.stalled")

# The ASGI scope key the sweep sets on a request whose body stalled.
BODY_STALLED = "proxy.body_stalled"


class RequestWatch:
    """Finds the requests of ``connections`` (uvicorn's ``ServerState.connections``: its protocols)
    whose body has been incomplete for ``timeout_secs`` and wakes them with ``BODY_STALLED``, the
    connections that have awaited a head as long, and times them out, and those whose answered
    request's body has still not come in that time, and closes them (see the module docstring)."""

    def __init__(self, connections: Collection[Any], timeout_secs: float) -> None:
        self._connections = connections
        self._timeout = timeout_secs
        self.interval = min(1.0, max(0.1, timeout_secs / 4))
        # (cycle, answered) → when a sweep first found its body incomplete (so, once answered)
        self._reading: dict[tuple[Any, bool], float] = {}
        # connection → (the cycle its awaited head follows, when a sweep first found it awaiting it)
        self._heads: dict[Any, tuple[Any, float]] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sweep(loop.time())
            except Exception:  # a bug of ours must not end the bound for the worker's lifetime
                log.exception("sweeping for stalled requests failed")

    def sweep(self, now: float) -> None:
        reading: dict[tuple[Any, bool], float] = {}
        heads: dict[Any, tuple[Any, float]] = {}
        for connection in list(self._connections):  # (a head timed out leaves the set)
            head_wait = getattr(connection, "head_wait", None)  # (a WebSocket protocol has none)
            wait = head_wait() if head_wait is not None else None
            if wait is not None:
                after, since = self._heads.get(connection, (wait[0], now))
                if after is not wait[0]:
                    since = now  # another head than the one a sweep saw awaited before
                if now - since >= self._timeout:
                    connection.time_out_head(self._timeout, now - since)
                else:
                    heads[connection] = (wait[0], since)
                continue
            cycle = getattr(connection, "cycle", None)
            if cycle is None or not cycle.more_body or cycle.disconnected:
                continue
            if cycle.response_started:
                if not cycle.response_complete:
                    continue  # its answer is under way
                # (answered before its body came: see "Answered early" above)
            elif BODY_STALLED in cycle.scope:
                continue  # woken already
            # (keyed by whether it was answered too: an answer gets the whole timeout to be read)
            key = (cycle, cycle.response_started)
            since = self._reading.get(key, now)
            if now - since < self._timeout:
                reading[key] = since
            elif cycle.response_started:
                connection.transport.close()  # the client has its answer; the rest of its body is unread
            else:
                cycle.scope[BODY_STALLED] = True
                cycle.message_event.set()  # its receive() returns what came so far, more_body still true
        self._reading = reading
        self._heads = heads
