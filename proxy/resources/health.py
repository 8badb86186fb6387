"""``GET /health``: the reference's body, with the breaker's shared state.

While the breaker refuses requests the answer is 503 ``unhealthy``, so that
HAProxy's health checks take this host out of rotation. Once the recovery time
has passed and no probe is in flight, it answers 200 ``recovering``: a load
balancer sends no traffic to a host it marked down, so without that the probe
that closes the breaker could never arrive and the host would stay out for good.
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
        refusing = is_open and not snap["admits_probe"]
        resp.status = 503 if refusing else 200
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(
            {
                "status": "unhealthy" if refusing else ("recovering" if is_open else "healthy"),
                "circuit_breaker": {
                    "enabled": snap["enabled"],
                    "is_open": is_open,
                    "consecutive_failures": snap["consecutive_failures"],
                },
            }
        )

    on_head = on_get
