"""CPU cost of the response store per request, and the design comparison behind it (prints numbers).

Usage::

    python -m loadtest.store_bench                      # SQLite in a temp dir, a redis-server of its own
    python -m loadtest.store_bench --redis-url redis://127.0.0.1:6379/15 --n 3000

CPU is this process's own CPU time (``time.process_time``: the event loop *and* the SQLite
threads), per operation, under uvloop as the workers run; Redis's server CPU is shown apart
(``INFO cpu``). The budget of issue 10: the stored path may add at most 0.15 ms CPU per JSON
request, i.e. ``put_response`` for a plain ``store: true`` request, ``get_history`` +
``put_response`` for one with ``previous_response_id``.

Sections: (1) hand-off costs that chose the implementation (SQLite threads vs
``run_in_executor``; one EVALSHA through ``redis.asyncio.Redis`` vs ``RedisLink``); (2) per
backend, a small response (``Hello`` → one message) and turn 10 of a chain; (3) Codex-like
chains of 10 and 100 turns (an 8 KiB tool output per turn, 24 KiB of instructions first, 9 KiB
of tools echoed in every Response), stored as this store does (each response's own items plus
ancestor ids) versus copying the whole history into every response: bytes kept and CPU per turn.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import redis
import redis.asyncio
import uvloop

from proxy.devtools import free_port
from proxy.store import History, NewResponse, Store, prepare_items
from proxy.store import redis_scripts as lua
from proxy.store.items import decode_arrays, encode_items
from proxy.store.redis_link import RedisLink, Script
from proxy.store.redis_store import RedisStore
from proxy.store.sqlite_schema import connect
from proxy.store.sqlite_store import SQLiteStore
from proxy.store.sqlite_threads import SQLiteThreads
from proxy.translate.ids import new_id

TOOLS = [{"type": "function", "name": f"tool_{i}", "description": "d" * 700, "parameters": {"type": "object"}}
         for i in range(12)]  # ≈ 9 KiB, like Codex's tool set


def body_of(rid: str, output: list[dict[str, Any]], tools: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                         "model": "mock-echo", "output": output, "tools": tools, "parallel_tool_calls": True,
                         "usage": {"input_tokens": 12, "output_tokens": 9, "total_tokens": 21}})


def small_response(previous: History | None = None) -> NewResponse:
    rid = new_id("resp")
    out: list[dict[str, Any]] = [{"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "Hello! How can I help you today?", "annotations": []}]}]
    return NewResponse(rid, body_of(rid, out, []), prepare_items("Hello"), out, previous=previous)


def codex_turn(n: int, previous: History | None, tool_bytes: int = 8192) -> NewResponse:
    rid, call = new_id("resp"), f"call_{n}"
    if n == 0:
        raw: list[Any] = [{"role": "developer", "content": "i" * 24576}, {"role": "user", "content": "Fix the bug."}]
    else:
        raw = [{"type": "function_call_output", "call_id": f"call_{n - 1}", "output": "o" * tool_bytes}]
    out: list[dict[str, Any]] = [
           {"id": new_id("rs"), "type": "reasoning", "summary": [], "encrypted_content": "e" * 1024},
           {"id": new_id("fc"), "type": "function_call", "call_id": call, "name": "exec_command",
            "arguments": '{"cmd":"pytest -q"}', "status": "completed"}]
    return NewResponse(rid, body_of(rid, out, TOOLS), prepare_items(raw), out, previous=previous)


async def per_op(n: int, fn: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of ``fn(i)``, best of three rounds after a warm-up."""
    for i in range(min(200, n)):
        await fn(-1 - i)
    best = (float("inf"), float("inf"))
    for r in range(3):
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(n):
            await fn(r * n + i)
        best = min(best, ((time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6))
    return best


def _row(label: str, cost: tuple[float, float]) -> str:
    return f"{label:30} {cost[0]:8.1f}  {cost[1]:8.1f}"


async def handoffs(db_path: str, redis_url: str, n: int) -> None:
    print("\n(1) hand-off per call              CPU µs   wall µs")
    loop, pool = asyncio.get_running_loop(), ThreadPoolExecutor(2)
    print(_row("  run_in_executor (2 threads)", await per_op(n, lambda i: loop.run_in_executor(pool, int))))
    threads = SQLiteThreads(lambda: connect(db_path, 3.0), 3.0)
    print(_row("  SQLiteThreads", await per_op(n, lambda i: threads.run("read", _noop))))
    await threads.aclose()
    pool.shutdown()
    args = ["b:", "o", "r", "b"]
    client = redis.asyncio.Redis.from_url(redis_url)
    script = client.register_script(lua.READ_RESPONSE.source)
    print(_row("  Redis(): one EVALSHA", await per_op(n, lambda i: script(args=args))))
    await client.aclose()
    link = RedisLink(redis_url, 3.0)
    print(_row("  RedisLink: one EVALSHA", await per_op(n, lambda i: link.run(lua.READ_RESPONSE, *args))))
    await link.aclose()


def _noop(conn: Any) -> None:
    return None


async def per_request(store: Store, n: int) -> None:
    owner = store.owner_of("sk-bench")
    small = [small_response() for _ in range(n * 3 + 200)]
    for r in small[:200]:
        await store.put_response(owner, r)
    ids = [r.id for r in small[:200]]
    put = await per_op(n, lambda i: store.put_response(owner, small[200 + i] if i >= 0 else small_response()))
    get = await per_op(n, lambda i: store.get_response(owner, ids[i % 200]))
    hist = await per_op(n, lambda i: store.get_history(owner, ids[i % 200]))
    chains: list[History] = []
    for _ in range(20):
        h = None
        for _k in range(9):
            r = small_response(h)
            await store.put_response(owner, r)
            h = await store.get_history(owner, r.id)
        assert h is not None
        chains.append(h)

    async def tenth(i: int) -> None:
        h = await store.get_history(owner, chains[i % 20].response_id)
        await store.put_response(owner, small_response(h))

    chained = await per_op(n, tenth)
    print(f"\n(2) {store.backend}: per request             CPU µs   wall µs")
    print(_row("  put_response (small)", put))
    print(_row("  get_response (GET route)", get))
    print(_row("  get_history (1 turn)", hist))
    print(_row("  put + get (store: true)", (put[0] + get[0], put[1] + get[1])))
    print(_row("  get_history + put, turn 10", chained))


async def chain_costs(store: Store, whole: WholeHistory, turns: int, bytes_of: Callable[[], int]) -> None:
    owner = store.owner_of("sk-bench")
    base, made = bytes_of(), [codex_turn(k, None) for k in range(turns)]
    h, cpu = None, time.process_time()
    for r in made:
        r.previous = h
        await store.put_response(owner, r)
        h = await store.get_history(owner, r.id)
    ours_cpu, ours_bytes = (time.process_time() - cpu) / turns * 1e6, bytes_of() - base
    assert h is not None
    made = [codex_turn(k, None) for k in range(turns)]
    cpu, copied, prev = time.process_time(), 0, ""
    for r in made:
        history = (await whole.get(prev)) if prev else []
        copied += await whole.put(r.id, r.body, encode_items(history + r.input_items + r.output_items))
        prev = r.id
    whole_cpu = (time.process_time() - cpu) / turns * 1e6
    print(f"  {store.backend:6} {turns:3} turns: this store {ours_bytes / 1e6:6.2f} MB {ours_cpu:6.0f} µs/turn;"
          f" whole history in each {copied / 1e6:6.2f} MB {whole_cpu:6.0f} µs/turn"
          f"   (last history {len(h.items)} items, {len(orjson.dumps(h.items)) / 1e3:.0f} KB)")


class WholeHistory:
    """The alternative design, on the same backend and transport: every response keeps a copy of
    its whole history (one row or key), so a chained request reads one blob and writes a bigger one."""

    def __init__(self, backend: str, where: str) -> None:
        self.backend, self.where = backend, where
        self.threads = SQLiteThreads(lambda: connect(where, 3.0), 3.0) if backend == "sqlite" else None
        self.link = RedisLink(where, 3.0) if backend == "redis" else None
        self.prefix = f"whole{os.getpid()}:"

    async def get(self, rid: str) -> list[Any]:
        if self.threads is not None:
            return decode_arrays([await self.threads.run("read", _whole_get, rid)])
        assert self.link is not None
        return decode_arrays([await self.link.run(_GET, self.prefix + rid)])

    async def put(self, rid: str, body: bytes, history: bytes) -> int:
        if self.threads is not None:
            await self.threads.run("write", _whole_put, rid, body, history)
        else:
            assert self.link is not None
            await self.link.run(_SET, self.prefix + rid, body, history)
        return len(body) + len(history)

    async def aclose(self) -> None:
        if self.threads is not None:
            await self.threads.aclose()
        if self.link is not None:
            await self.link.aclose()


async def main(args: argparse.Namespace, redis_url: str, tmp: str) -> None:
    await handoffs(os.path.join(tmp, "handoff.sqlite3"), redis_url, args.n)
    for store in (SQLiteStore(os.path.join(tmp, "bench.sqlite3")), RedisStore(redis_url, prefix=f"b{os.getpid()}:")):
        info0 = redis.Redis.from_url(redis_url).info("cpu")
        await per_request(store, args.n)
        if store.backend == "redis":
            info1 = redis.Redis.from_url(redis_url).info("cpu")
            spent = sum(info1[k] - info0[k] for k in ("used_cpu_user", "used_cpu_sys"))
            print(f"  (redis-server CPU over the section: {spent:.2f} s)")
        await store.aclose()
    print("\n(3) Codex-like chains: bytes kept, CPU per turn (get_history + put_response)")
    for turns in (10, 100):
        path = os.path.join(tmp, f"chain{turns}.sqlite3")
        sqlite, whole = SQLiteStore(path), WholeHistory("sqlite", path)
        await whole.threads.run("write", _whole_table)  # type: ignore[union-attr]  # sqlite: threads is set
        await chain_costs(sqlite, whole, turns, functools.partial(_sqlite_bytes, path))
        await sqlite.aclose()
        await whole.aclose()
        prefix = f"chain{turns}x{os.getpid()}:"
        store, whole = RedisStore(redis_url, prefix=prefix), WholeHistory("redis", redis_url)
        await chain_costs(store, whole, turns, functools.partial(_redis_bytes, redis_url, prefix))
        print(f"         (whole-history keys in Redis: {_redis_bytes(redis_url, whole.prefix) / 1e6:.2f} MB)")
        await store.aclose()
        await whole.aclose()


_SET = Script("redis.call('SET', ARGV[1], ARGV[3], 'PX', 3600000) "
              "redis.call('SET', ARGV[1] .. ':b', ARGV[2], 'PX', 3600000) return 1")
_GET = Script("return redis.call('GET', ARGV[1])")


def _whole_table(conn: Any) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS whole (id TEXT PRIMARY KEY, body BLOB, history BLOB)")


def _whole_put(conn: Any, rid: str, body: bytes, history: bytes) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO whole VALUES (?, ?, ?)", (rid, body, history))
    conn.execute("COMMIT")


def _whole_get(conn: Any, rid: str) -> bytes:
    return conn.execute("SELECT history FROM whole WHERE id = ?", (rid,)).fetchone()[0]  # type: ignore[no-any-return]


def _sqlite_bytes(path: str) -> int:
    """Bytes of the store's payload columns (the file holds them in pages, a little more)."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        return int(conn.execute(
            "SELECT coalesce(sum(length(body) + length(items) + coalesce(length(base_items), 0) + length(chain)"
            " + length(ids)), 0) FROM responses"
        ).fetchone()[0])


def _redis_bytes(url: str, prefix: str) -> int:
    """Redis's own account of the memory of every key under ``prefix`` (MEMORY USAGE)."""
    with redis.Redis.from_url(url) as client:
        return sum(client.memory_usage(k, samples=0) or 0 for k in client.scan_iter(match=prefix + "*", count=1000))


def run() -> None:
    ap = argparse.ArgumentParser(prog="python -m loadtest.store_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="operations per measurement (default 2000)")
    ap.add_argument("--redis-url", help="an existing Redis (a db you can write to); default: start redis-server")
    args = ap.parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        url = args.redis_url
        if url is None:
            port = free_port()
            server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save",
                                       "", "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.RedisError:
                    time.sleep(0.05)
        try:
            uvloop.run(main(args, url, tmp))
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    run()
