"""``GET /health``: the reference's body, with the breaker's shared state.

While the breaker is open the answer is 503 ``unhealthy`` so that HAProxy's
health checks take this host out of rotation until the backend recovers.
"""
from __future__ import annotations

import falcon
import orjson

from ..runtime import Runtime


class HealthResource:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        snap = self._runtime.breaker.snapshot()
        is_open = bool(snap["is_open"])
        resp.status = 503 if is_open else 200
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(
            {
                "status": "unhealthy" if is_open else "healthy",
                "circuit_breaker": {
                    "enabled": snap["enabled"],
                    "is_open": is_open,
                    "consecutive_failures": snap["consecutive_failures"],
                },
            }
        )

    on_head = on_get
