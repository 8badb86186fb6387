"""Request bodies that stop arriving: ``BODY_READ_TIMEOUT_SECS`` bounds every one, at no cost per request.

uvicorn bounds no body read, and a timer in the app cannot bound them all: Falcon awaits the
first body event before routing, so a client that sends its headers and then no body byte
would never reach the app's timer, and ``asyncio.timeout`` costs ~9 µs a request (more than a
small request's whole read). A slowloris would hold a connection, its task and the part of
the body it sent for as long as it liked.

So the worker sweeps its own connections instead (``BodyWatch``, started by
``proxy.worker.Worker``): every quarter of the timeout (at most a second, at least a tenth),
an HTTP request whose body is still incomplete (uvicorn's ``more_body``) and whose answer
has not begun, found so at sweeps ``timeout`` seconds apart, gets ``BODY_STALLED`` set in its
ASGI scope and its ``receive()`` woken. The app (``proxy.resources.responses``) then answers 408
``request_timeout`` with ``Connection: close``, having done nothing. The bound is therefore
the timeout plus at most two sweeps. A request that arrives whole, as nearly all do, is never
seen by a sweep; one sweep costs a few attribute reads per open connection.

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


class BodyWatch:
    """Finds the requests of ``connections`` (uvicorn's ``ServerState.connections``: its protocols)
    whose body has been incomplete for ``timeout_secs`` and wakes them with ``BODY_STALLED``."""

    def __init__(self, connections: Collection[Any], timeout_secs: float) -> None:
        self._connections = connections
        self._timeout = timeout_secs
        self.interval = min(1.0, max(0.1, timeout_secs / 4))
        self._reading: dict[Any, float] = {}  # cycle → when a sweep first found its body incomplete

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sweep(loop.time())
            except Exception:  # a bug of ours must not end the bound for the worker's lifetime
                log.exception("sweeping for stalled request bodies failed")

    def sweep(self, now: float) -> None:
        reading: dict[Any, float] = {}
        for connection in self._connections:
            cycle = getattr(connection, "cycle", None)  # (a WebSocket protocol has none)
            if cycle is None or not cycle.more_body or cycle.response_started or cycle.disconnected:
                continue
            if BODY_STALLED in cycle.scope:
                continue  # woken already
            since = self._reading.get(cycle, now)
            if now - since >= self._timeout:
                cycle.scope[BODY_STALLED] = True
                cycle.message_event.set()  # its receive() returns what came so far, more_body still true
            else:
                reading[cycle] = since
        self._reading = reading
