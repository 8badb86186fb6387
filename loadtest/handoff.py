"""What handing a job to a thread and its result back costs, by how the two threads meet (prints a table).

Usage::

    python -m loadtest.handoff            # ~10 s
    python -m loadtest.handoff --n 50000 --rounds 5

Why: ``proxy.store.sqlite_threads`` hands every SQLite call to a thread of its own. On a VM,
waking a thread on another, idle CPU is an inter-processor interrupt and a VM exit, charged to
the process as system time. This measures, under uvloop as the workers run, one round trip of a
job that makes one SQLite call (``SELECT 1`` on an in-memory database: the GIL is released and
taken back once, as in every store job), four ways:

- ``free / call_soon_threadsafe``: the scheduler places both threads (the store before colocation);
- ``free / inbox``: the result comes back through ``proxy.store.inbox.Inbox`` (a socket write);
- ``follow / call_soon_threadsafe``: the thread is moved to the loop's CPU (``proxy.store.colocate``)
  before each hand-off, the result comes back through the loop's eventfd;
- ``follow / inbox``: both, as ``SQLiteThreads`` does.

CPU is this process's user + system time per round trip (``getrusage``: both threads), best of
``--rounds``; ``moves`` is how many hand-offs moved the thread, per 1,000.
"""
from __future__ import annotations

import argparse
import asyncio
import queue
import resource
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from proxy.store.colocate import CpuFollower  # noqa: E402
from proxy.store.inbox import Inbox  # noqa: E402


def _cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(follow: bool, inbox: bool, n: int, rounds: int) -> tuple[float, float, float]:
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()
    back = Inbox(loop) if inbox else None
    reply: Callable[[asyncio.Future[None]], Any]
    if back is not None:
        reply = lambda fut: back.post(fut.set_result, None)  # noqa: E731
    else:
        reply = lambda fut: loop.call_soon_threadsafe(fut.set_result, None)  # noqa: E731

    def serve() -> None:
        conn = sqlite3.connect(":memory:")
        while (fut := jobs.get()) is not None:
            conn.execute("SELECT 1").fetchone()
            reply(fut)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    follower = CpuFollower(thread.native_id if follow else None)
    moves = 0

    async def round_trip() -> None:
        nonlocal moves
        before = follower.cpu
        follower.follow()
        moves += follower.cpu != before
        fut: asyncio.Future[None] = loop.create_future()
        jobs.put(fut)
        await fut

    for _ in range(1000):
        await round_trip()
    best_cpu = best_wall = float("inf")
    moves = 0
    for _ in range(rounds):
        cpu, wall = _cpu_secs(), time.perf_counter()
        for _ in range(n):
            await round_trip()
        best_cpu = min(best_cpu, (_cpu_secs() - cpu) / n * 1e6)
        best_wall = min(best_wall, (time.perf_counter() - wall) / n * 1e6)
    jobs.put(None)
    thread.join()
    if back is not None:
        back.close()
    return best_cpu, best_wall, moves / (n * rounds) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="round trips per round (default 10,000)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"one job's round trip through a thread, a SQLite call in it (best of {args.rounds} x {args.n:,})")
    print(f"{'thread':8} {'result back by':22} {'CPU µs':>8} {'wall µs':>8} {'moves/1000':>11}")
    for follow in (False, True):
        for inbox in (False, True):
            cpu, wall, moves = uvloop.run(_measure(follow, inbox, args.n, args.rounds))
            print(f"{'follow' if follow else 'free':8} {'inbox' if inbox else 'call_soon_threadsafe':22} "
                  f"{cpu:8.1f} {wall:8.1f} {moves:11.1f}", flush=True)


if __name__ == "__main__":
    main()
