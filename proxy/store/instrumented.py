"""The configured store with every operation timed and counted for ``/metrics``.

A wrapper rather than calls sprinkled through the routes: each operation a
route or a transport awaits is counted once, by name and backend, with its
latency, and as failed when the store itself failed (unavailable, history lost)
— not when it refused an object as too large or an item as invalid, found a
response's conversation deleted, or a chain's predecessor still running, which are the
client's doing.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..metrics import Metrics
from .base import Store, client_caused


class InstrumentedStore:
    """Delegates to ``inner``; ``instrumented(inner, metrics)`` gives it the ``Store`` type."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        # What every stored request reads (``proxy.state``), found directly rather than through
        # ``__getattr__``: the store's settings, fixed once it is built, and its one plain method.
        self.backend = inner.backend
        self.ttl_secs = inner.ttl_secs
        self.max_object_bytes = inner.max_object_bytes
        self.owner_of = inner.owner_of

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr) or name == "aclose":
            return attr
        wrapped = self._timed(name, attr)
        setattr(self, name, wrapped)  # found directly from now on
        return wrapped

    def _timed(self, op: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        metrics, backend = self._metrics, self._inner.backend

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            ok = False
            try:
                result = await call(*args, **kwargs)
                ok = True
                return result
            except Exception as exc:
                ok = client_caused(exc)  # refused for what it was given: the store is fine
                raise
            finally:
                metrics.store_op(op, backend, ok, time.perf_counter() - start)

        return timed


def instrumented(inner: Store, metrics: Metrics) -> Store:
    return cast(Store, InstrumentedStore(inner, metrics))
