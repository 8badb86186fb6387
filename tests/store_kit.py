"""Stores of either backend on real parts, for the store tests: a SQLite file in the test's
temporary directory, or the session's Redis under a key prefix of the test's own."""
from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from proxy.store import Store
from proxy.store.redis_store import RedisStore
from proxy.store.sqlite_store import SQLiteStore

T = TypeVar("T")
BACKENDS = ("sqlite", "redis")


class StoreFactory:
    def __init__(self, tmp_path: Path, redis_url: Callable[[], str]) -> None:
        self._tmp = tmp_path
        self._redis_url = redis_url
        self.sqlite_path = str(tmp_path / "store.sqlite3")
        self.redis_prefix = f"t{os.urandom(6).hex()}:"

    def __call__(self, backend: str, **opts: Any) -> Store:
        """A new store object; every one a test makes shares the same file or prefix unless told."""
        if backend == "sqlite":
            return SQLiteStore(opts.pop("path", self.sqlite_path), **opts)
        url = opts.pop("url", None) or self._redis_url()
        return RedisStore(url, prefix=opts.pop("prefix", self.redis_prefix), **opts)


def run(store: Store, scenario: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``scenario(store)`` in a fresh event loop, closing the store in that loop."""

    async def main() -> T:
        try:
            return await scenario(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


def stored_rows(store: Store) -> dict[str, int]:
    """What physically remains of a store, read behind its back: SQLite rows per table, or Redis
    keys under the store's prefix per kind (``r``, ``t``, ``ix``, ``c``, ``ci``, ``cb``…)."""
    if isinstance(store, SQLiteStore):
        import sqlite3

        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") if t != "meta"]
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    assert isinstance(store, RedisStore)
    counts: dict[str, int] = {}
    with redis.Redis.from_url(store.url) as client:
        for key in client.scan_iter(match=store.prefix + "*", count=1000):
            kind = key.decode()[len(store.prefix) :].split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def redis_client(store: Store) -> redis.Redis:
    assert isinstance(store, RedisStore)
    return redis.Redis.from_url(store.url)


def spec(store: Store) -> tuple[str, str, str]:
    """What another process needs to open the same store (a store object itself does not pickle)."""
    if isinstance(store, SQLiteStore):
        return ("sqlite", store.path, "")
    assert isinstance(store, RedisStore)
    return ("redis", store.url, store.prefix)


def from_spec(described: tuple[str, str, str], **opts: Any) -> Store:
    backend, where, prefix = described
    if backend == "sqlite":
        return SQLiteStore(where, **opts)
    return RedisStore(where, prefix=prefix, **opts)
