"""The background operations fail as promptly as the rest of the store when it is down, hung or
locked, and work again when it returns: a ``redis-server`` of the test's own killed or stopped, a
SQLite file locked by another process. A follower's blocking read on a stopped Redis is bounded
too. (The time bounds are hang checks, generous on a shared machine, not performance tests.)"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from proxy.store import StoreUnavailable
from proxy.store.redis_store import RedisStore
from proxy.store.sqlite_store import SQLiteStore
from tests.redis_server import RedisServer
from tests.store_kit import run
from tests.unit.test_store_background import WORKER, body, event, finished, job, queued
from tests.unit.test_store_faults import _HOLD_LOCK, HANG_BOUND_SECS, unavailable_within_bound


def every_job_operation(store, owner: str, rid: str):
    """One coroutine per background operation."""
    return [
        store.create_background(owner, queued(), job()),
        store.start_background(owner, rid, body(rid, "in_progress"), WORKER),
        store.append_events(owner, rid, WORKER, 0, [event(0)]),
        store.finish_background(owner, finished(queued()), WORKER, 0, [event(0)], "completed"),
        store.end_background(owner, rid, body(rid, "cancelled"), version=0, outcome="cancelled"),
        store.background_job(owner, rid),
        store.read_events(owner, rid, -1),
        store.read_events(owner, rid, -1, wait_secs=2.0),
        store.renew_leases(WORKER, [(owner, rid)], 10_000),
        store.expired_jobs(10),
    ]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_redis_gone_or_hung_fails_every_job_operation_fast_and_recovers(how):
    with RedisServer() as server:
        store = RedisStore(server.url, timeout_secs=1.0)
        owner = store.owner_of("sk-alice")

        async def scenario(store):
            r = queued()
            await store.create_background(owner, r, job())
            if how == "SIGSTOP":
                server.send(signal.SIGSTOP)
            else:
                server.stop(signal.SIGKILL)
            for op in every_job_operation(store, owner, r.id):
                await unavailable_within_bound(op)
            if how == "SIGSTOP":
                server.send(signal.SIGCONT)
            else:
                server.start()
            again = queued()
            await store.create_background(owner, again, job())
            assert await store.append_events(owner, again.id, WORKER, 0, [event(0)])
            assert (await store.read_events(owner, again.id, -1)).events == [event(0)]

        run(store, scenario)


def test_a_follower_blocked_on_redis_that_stops_answering_is_released_within_the_bound():
    with RedisServer() as server:
        store = RedisStore(server.url, timeout_secs=1.0)
        owner = store.owner_of("sk-alice")

        async def scenario(store):
            r = queued()
            await store.create_background(owner, r, job())
            follower = asyncio.create_task(store.read_events(owner, r.id, -1, wait_secs=1.0))
            await asyncio.sleep(0.2)  # blocked in XREAD
            server.send(signal.SIGSTOP)
            started = time.monotonic()
            try:
                with pytest.raises(StoreUnavailable):
                    await follower
                assert time.monotonic() - started < HANG_BOUND_SECS
            finally:
                server.send(signal.SIGCONT)

        run(store, scenario)


def test_a_cancel_subscriber_outlives_a_redis_restart():
    with RedisServer() as server:
        store = RedisStore(server.url, timeout_secs=1.0)
        owner = store.owner_of("sk-alice")

        async def scenario(store):
            heard: asyncio.Queue[str] = asyncio.Queue()
            watcher = asyncio.create_task(store.watch_cancels(WORKER, heard.put_nowait))
            try:
                await asyncio.sleep(0.3)
                server.stop(signal.SIGKILL)
                await asyncio.sleep(0.5)
                server.start()
                r = queued()
                await store.create_background(owner, r, job())
                deadline = time.monotonic() + 10
                while heard.empty() and time.monotonic() < deadline:  # resubscribed after about a second
                    snap = await store.background_job(owner, r.id)
                    if snap.state != "ended":
                        await store.end_background(owner, r.id, b"{}", version=snap.version, outcome="cancelled")
                        continue
                    r = queued()
                    await store.create_background(owner, r, job())
                    await asyncio.sleep(0.3)
                assert not heard.empty(), "the subscription never came back"
                assert not watcher.done()
            finally:
                watcher.cancel()

        run(store, scenario)


def test_sqlite_locked_fails_job_writes_promptly_while_followers_still_read(tmp_path):
    path = str(tmp_path / "store.sqlite3")
    store = SQLiteStore(path, timeout_secs=0.5)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        assert await store.append_events(owner, r.id, WORKER, 0, [event(0)])
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout.readline().strip() == "locked"
            await unavailable_within_bound(store.append_events(owner, r.id, WORKER, 1, [event(1)]))
            await unavailable_within_bound(store.renew_leases(WORKER, [(owner, r.id)], 10_000))
            await unavailable_within_bound(store.create_background(owner, queued(), job()))
            await unavailable_within_bound(
                store.end_background(owner, r.id, body(r.id, "cancelled"), version=0, outcome="cancelled")
            )
            assert (await store.read_events(owner, r.id, -1)).events == [event(0)]  # WAL: readers go on
            assert (await store.background_job(owner, r.id)).state == "queued"
            holder.communicate("\n", timeout=10)
        finally:
            holder.kill()
            holder.wait()
        assert await store.append_events(owner, r.id, WORKER, 1, [event(1)])

    run(store, scenario)
