"""``GET /metrics`` and the middleware that counts every request for it.

The middleware sees every request, on every route, exactly once: it counts
it in flight from ``process_request``, and finishes it in ``process_response``
(route template, the model the resource put on ``req.context.meta``, the HTTP
status, the duration) — or, when the answer is a stream, when Falcon closes
that stream after its last byte. The stream is wrapped for that, without a
layer per chunk: the wrapper hands Falcon the inner stream's own iterator and
only intercepts ``close``.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator

import falcon
import falcon.asgi

from ..metrics import Metrics, render
from ..runtime import Runtime

__all__ = ["MetricsMiddleware", "MetricsResource"]

_STARTED = "metrics_started"


class MetricsResource:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body, content_type = render(self._runtime.breakers, self._runtime.metrics)
        resp.content_type = content_type
        resp.data = body


class MetricsMiddleware:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        setattr(req.context, _STARTED, time.perf_counter())
        self._metrics.request_started()

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, _STARTED, None)
        if started is None:  # process_request did not run (an earlier middleware raised)
            return
        route = req.uri_template or "unmatched"
        stream = resp.stream
        if stream is not None and not hasattr(stream, "read"):
            self._metrics.stream_opened()
            resp.stream = _Finishing(stream, self._metrics, req, resp, route, started)
            return
        self._metrics.request_finished(route, _model(req), resp.status_code, False, time.perf_counter() - started)


class _Finishing(AsyncIterator[bytes]):
    """A response stream that finishes its request's metrics when Falcon closes it."""

    __slots__ = ("_inner", "_metrics", "_req", "_resp", "_route", "_started")

    def __init__(
        self, inner: AsyncIterable[bytes], metrics: Metrics, req: falcon.asgi.Request, resp: falcon.asgi.Response,
        route: str, started: float,
    ) -> None:
        self._inner = inner
        self._metrics: Metrics | None = metrics
        self._req = req
        self._resp: falcon.asgi.Response | None = resp
        self._route = route
        self._started = started

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()  # the inner stream's own iterator: no layer per chunk

    async def __anext__(self) -> bytes:  # for the protocol; Falcon iterates what __aiter__ returns
        return await self._inner.__aiter__().__anext__()

    async def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None) or getattr(self._inner, "aclose", None)
            if close is not None:
                await close()
        finally:
            metrics, self._metrics = self._metrics, None
            # The response holds this stream: letting go of it cuts the cycle, so both are freed at once.
            resp, self._resp = self._resp, None
            if metrics is not None and resp is not None:
                metrics.stream_closed()
                metrics.request_finished(
                    self._route, _model(self._req), resp.status_code, True, time.perf_counter() - self._started
                )


def _model(req: falcon.asgi.Request) -> str:
    meta = getattr(req.context, "meta", None)
    model = getattr(meta, "model", None)
    return model if isinstance(model, str) else "-"
