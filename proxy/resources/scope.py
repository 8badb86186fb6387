"""One request's scope: its id, its metrics line, and everything it must release.

The ASGI shim in ``proxy.app`` creates a ``RequestScope`` for every HTTP request
and, once the app has finished with it — the response sent, a stream ended,
the client gone, or the task cancelled — closes it: every resource the request
registered with ``own()`` is closed (an ``Exchange``: its upstream connection,
breaker permit and disconnect watcher), then the single ``request_completed``
line is written. Resources are therefore released on every path, whether or
not a stream was ever iterated, and each request logs exactly one line.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import falcon.asgi

from ..logs import request_completed

SCOPE_KEY = "proxy.request"
# Set in the ASGI scope of a request the worker answered itself while the app had it (a body whose
# framing httptools refused, ``proxy.edge``): the worker wrote its metrics line, so the app writes none.
SERVER_ANSWERED = "proxy.server_answered"

log = logging.getLogger("proxy.scope")


class AsyncClosable(Protocol):
    async def aclose(self) -> None: ...


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def sane_request_id(value: str | None) -> str | None:
    if value and len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value:
        return value
    return None


class RequestScope:
    """See the module docstring; ``req.context.meta`` is this object."""

    __slots__ = ("request_id", "started", "model", "status", "http_status", "key", "quiet", "receive", "_owned")

    def __init__(self, receive: Callable[[], Any]) -> None:
        self.request_id = "-"
        self.started = time.perf_counter()
        self.model = "-"
        self.status = "error"
        self.http_status = 200
        self.key = "-"  # masked
        self.quiet = False  # health checks write no metrics line
        self.receive = receive  # the ASGI server's channel (Falcon keeps its own private)
        self._owned: list[AsyncClosable] = []

    def own(self, resource: AsyncClosable) -> None:
        """Close ``resource`` when the request ends (after any close of its own: closes must be idempotent)."""
        self._owned.append(resource)

    def watch_disconnect(self) -> asyncio.Future[None]:
        """A future that completes when the client goes away.

        Call only after the body was read in full: from then on the ASGI server's
        ``receive`` yields nothing but ``http.disconnect``. The future's task is
        cancelled by whoever owns it (an ``Exchange``).
        """
        receive = self.receive

        async def wait() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        return asyncio.ensure_future(wait())

    async def close(self) -> None:
        owned, self._owned = self._owned, []
        for resource in owned:
            try:
                await resource.aclose()
            except Exception:
                log.exception("request_id=%s: releasing %r failed", self.request_id, resource)
        if not self.quiet:
            request_completed(
                model=self.model,
                duration_ms=(time.perf_counter() - self.started) * 1000.0,
                status=self.status,
                http_status=self.http_status,
                key=self.key,
                request_id=self.request_id,
            )


class RequestIdMiddleware:
    """Names every request (the client's ``X-Request-ID`` when sane, else a new id)
    and records its HTTP status for the metrics line."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        scope: RequestScope = req.scope[SCOPE_KEY]
        scope.request_id = sane_request_id(req.get_header("X-Request-ID")) or new_request_id()
        scope.quiet = req.path == "/health"
        req.context.meta = scope

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        scope: RequestScope | None = req.scope.get(SCOPE_KEY)
        if scope is None:
            return
        resp.set_header("X-Request-ID", scope.request_id)
        scope.http_status = resp.status_code
        if not req_succeeded and scope.status != "client_disconnected":  # (a body the client left unfinished)
            scope.status = "error"
        elif scope.status == "error" and resp.status_code < 400 and resp.stream is None:
            # A route that answers no Response of its own (a stored object, a list, the models)
            # and did its job. A stream keeps "error" until its end says otherwise.
            scope.status = "completed"
