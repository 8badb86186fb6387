"""``GET /health``: the reference's body, from the host breaker, plus the models whose breaker is open.

``circuit_breaker`` keeps the reference's keys (``enabled``, ``is_open``,
``consecutive_failures``), now those of the host-level breaker; ``open_models``
lists the models refused on their own (``model``, ``state``,
``consecutive_failures``, ``retry_after``). One failing model is not a
failing host: the status stays 200 and the balancer keeps sending the other
models' traffic.

While the host breaker refuses requests the answer is 503 ``unhealthy``, so
that HAProxy's health checks take this host out of rotation. Once the
recovery time has passed and no probe is in flight, it answers 200
``recovering``: a load balancer sends no traffic to a host it marked down, so
without that the probe that closes the breaker could never arrive and the
host would stay out for good.

While the instance drains before a stop (``SHUTDOWN_DRAIN_SECS``, ``proxy.drain``:
the master got SIGTERM) the answer is 503 ``draining``, whatever the breakers
say, so that the balancer takes the instance out before its listener closes;
every other endpoint keeps serving as usual meanwhile.
"""
from __future__ import annotations

import falcon
import orjson

from .. import drain
from ..runtime import Runtime


class HealthResource:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        # Inherited from the gunicorn master (None when the app runs without conf/gunicorn.conf.py).
        self._draining = drain.current()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        snap = self._runtime.breakers.snapshot()
        is_open = bool(snap["is_open"])
        refusing = is_open and not snap["admits_probe"]
        draining = self._draining is not None and self._draining.active
        resp.status = 503 if refusing or draining else 200
        resp.content_type = falcon.MEDIA_JSON
        if draining:
            status = "draining"
        else:
            status = "unhealthy" if refusing else ("recovering" if is_open else "healthy")
        resp.data = orjson.dumps(
            {
                "status": status,
                "circuit_breaker": {
                    "enabled": snap["enabled"],
                    "is_open": is_open,
                    "consecutive_failures": snap["consecutive_failures"],
                },
                "open_models": snap["open_models"],
            }
        )

    on_head = on_get
