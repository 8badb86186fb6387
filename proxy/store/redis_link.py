"""One worker's connections to Redis, and running one Lua script on them with bounded waits.

Built on redis-py 8.1's asyncio ``Connection`` (its connect logic, TLS, AUTH/SELECT, the hiredis
reply parser, socket timeouts), with a small pool of its own instead of ``redis.asyncio.Redis``
over ``ConnectionPool``: measured on this machine, one ``EVALSHA`` costs ~65 µs of client CPU
through ``Redis.execute_command`` (its retry wrapper, event dispatch and per-command
observability hooks, a lock around every pool get and release) and ~33 µs this way
(``loadtest/store_bench.py`` prints both). Every store operation is one script, one round trip.

Bounds: a connect waits at most ``socket_connect_timeout``, a reply at most ``socket_timeout``,
a free connection at most the same timeout; so a dead, stopped or unreachable Redis fails an
operation within about one timeout (two when a pooled connection turns out stale and the one
retry on a fresh connection also fails). A connection that failed or was interrupted mid-reply
is disconnected, never reused (no half-read reply reaches the next caller); the next operation
connects again, so the store recovers by itself when Redis returns. Connections are created in
the running loop and belong to this process: after a fork, or in another loop, a new pool starts
and the inherited one is left untouched.
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import StoreError, StoreUnavailable

# Error replies that mean "Redis cannot serve this now" rather than "this script is wrong".
_UNAVAILABLE = ("OOM", "MISCONF", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN")


class Script:
    """A Lua source and its SHA1, sent with EVALSHA (EVAL once if Redis does not know it yet)."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def map_error(exc: BaseException) -> StoreError:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return StoreUnavailable(f"the response store (Redis) is unreachable: {exc or type(exc).__name__}", 1)
    code = getattr(exc, "status_code", None)  # the reply's error code, which redis-py strips from the text
    text = f"{code} {exc}" if code else str(exc)
    if isinstance(exc, OutOfMemoryError | ReadOnlyError | NoPermissionError) or any(t in text for t in _UNAVAILABLE):
        return StoreUnavailable(f"the response store (Redis) refuses the operation: {text[:200]}", 5)
    return StoreError(f"redis: {text[:500]}")


class _Pool:
    __slots__ = ("idle", "slots", "closed")

    def __init__(self, size: int) -> None:
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(size)
        self.closed = False


class RedisLink:
    def __init__(self, url: str, timeout_secs: float, max_connections: int = 64) -> None:
        kwargs: dict[str, Any] = dict(parse_url(url))
        self._connection_class = kwargs.pop("connection_class", Connection)
        kwargs.update(
            socket_timeout=timeout_secs,
            socket_connect_timeout=timeout_secs,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._kwargs = kwargs
        self._timeout = timeout_secs
        self._size = max_connections
        self._pool: _Pool | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop] | None = None

    def _current(self) -> _Pool:
        owner = (os.getpid(), asyncio.get_running_loop())
        if self._owner != owner or self._pool is None:
            self._pool, self._owner = _Pool(self._size), owner
        return self._pool

    async def run(self, script: Script, *args: Any) -> Any:
        """EVALSHA ``script`` with ``args`` (no declared keys: they derive from the args)."""

        async def send(conn: Connection) -> Any:
            try:
                await conn.send_command("EVALSHA", script.sha, 0, *args, check_health=False)
                return await conn.read_response()
            except NoScriptError:
                await conn.send_command("EVAL", script.source, 0, *args, check_health=False)
                return await conn.read_response()

        return await self._call(send)

    async def command(self, *args: Any, reply_timeout: float | None = None) -> Any:
        """One plain command (``XREAD BLOCK``…), its reply awaited up to ``reply_timeout``
        instead of the store's timeout (a blocking read waits longer by design)."""

        async def send(conn: Connection) -> Any:
            await conn.send_command(*args, check_health=False)
            if reply_timeout is None:
                return await conn.read_response()
            # Not read_response(timeout=…): that answers None on a timeout, which is also XREAD's
            # "nothing came", and keeps a connection whose reply may still arrive.
            try:
                return await asyncio.wait_for(conn.read_response(timeout=math.inf), reply_timeout)
            except TimeoutError:
                raise RedisTimeoutError(f"no reply from Redis within {reply_timeout:g} s") from None

        return await self._call(send)

    async def _call(self, send: Callable[[Connection], Awaitable[Any]]) -> Any:
        pool = self._current()
        try:
            if pool.slots.locked():
                await asyncio.wait_for(pool.slots.acquire(), self._timeout)
            else:
                await pool.slots.acquire()
        except TimeoutError:
            raise StoreUnavailable("the response store (Redis) is overloaded: no free connection", 1) from None
        try:
            try:
                return await self._once(pool, send, pool.idle.pop() if pool.idle else None)
            except (RedisConnectionError, OSError) as exc:
                if getattr(exc, "_fresh", False):
                    raise
                return await self._once(pool, send, None)  # the pooled connection was stale
        except ResponseError as exc:
            raise map_error(exc) from exc
        except (TimeoutError, RedisError, OSError) as exc:
            raise map_error(exc) from exc
        finally:
            pool.slots.release()

    async def _once(
        self, pool: _Pool, send: Callable[[Connection], Awaitable[Any]], conn: Connection | None
    ) -> Any:
        fresh = conn is None
        if conn is None:
            conn = self._connection_class(**self._kwargs)
        try:
            reply = await send(conn)
        except ResponseError:
            self._keep(pool, conn)  # an error reply leaves the connection in sync
            raise
        except BaseException as exc:
            await conn.disconnect(nowait=True)  # never reuse a connection that may hold half a reply
            if fresh:
                exc._fresh = True  # type: ignore[attr-defined]  # tells run() not to retry a new connection
            raise
        self._keep(pool, conn)
        return reply

    def connection(self) -> Connection:
        """A new connection of this link's kind, owned by the caller (a subscriber's)."""
        return self._connection_class(**self._kwargs)

    def _keep(self, pool: _Pool, conn: Connection) -> None:
        if pool.closed:
            asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))
        else:
            pool.idle.append(conn)

    async def aclose(self) -> None:
        pool, owner, self._pool, self._owner = self._pool, self._owner, None, None
        if pool is None or owner is None or owner[0] != os.getpid():
            return  # an inherited pool is the parent's to close
        pool.closed = True
        idle, pool.idle = pool.idle, []
        for conn in idle:
            await conn.disconnect(nowait=True)
