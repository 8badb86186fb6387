"""Per-request bookkeeping shared by the middleware and the resources.

The request id (the client's ``X-Request-ID`` when sane, else a new one), the
start time, and the single ``request_completed`` line each request ends with —
written by the middleware for plain answers, by the stream's end for SSE.
"""
from __future__ import annotations

import asyncio
import os
import time

import falcon.asgi

from ..logs import request_completed

RECEIVE_SCOPE_KEY = "proxy.receive"


def _new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def _sane_request_id(value: str | None) -> str | None:
    if value and len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value:
        return value
    return None


class RequestMeta:
    __slots__ = ("request_id", "started", "model", "status", "http_status", "key", "deferred")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = time.perf_counter()
        self.model = "-"
        self.status = "error"
        self.http_status = 200
        self.key = "-"  # masked
        self.deferred = False

    def log_completed(self) -> None:
        request_completed(
            model=self.model,
            duration_ms=(time.perf_counter() - self.started) * 1000.0,
            status=self.status,
            http_status=self.http_status,
            key=self.key,
            request_id=self.request_id,
        )


class RequestMetaMiddleware:
    """Gives every request an id and guarantees its metrics line."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        request_id = _sane_request_id(req.get_header("X-Request-ID")) or _new_request_id()
        req.context.meta = RequestMeta(request_id)

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        meta: RequestMeta | None = getattr(req.context, "meta", None)
        if meta is None:
            return
        resp.set_header("X-Request-ID", meta.request_id)
        meta.http_status = resp.status_code
        if req.path == "/health":
            return
        if not req_succeeded:
            meta.status = "error"
        if not meta.deferred:
            meta.log_completed()


def watch_disconnect(req: falcon.asgi.Request) -> asyncio.Future[None]:
    """A future that completes when the client goes away.

    Call only after the body was read in full: from then on the ASGI server's
    ``receive`` yields nothing but ``http.disconnect``.
    """
    receive = req.scope.get(RECEIVE_SCOPE_KEY)
    if receive is None:  # not behind our ASGI shim: never signals
        return asyncio.get_running_loop().create_future()

    async def wait() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    return asyncio.ensure_future(wait())
