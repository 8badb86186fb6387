"""A store that is down, hung, full or locked fails promptly with ``StoreUnavailable`` and
recovers by itself; lost history is reported, never handed on shortened. Real parts: a
``redis-server`` of the test's own that is killed, stopped or filled; a SQLite file locked by
another process or written past a file-size limit.

The time bounds asserted are hang checks (generous on a shared machine), not performance tests.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from proxy.store import HistoryIncomplete, NewResponse, StoreUnavailable, prepare_items
from proxy.store.redis_store import RedisStore
from proxy.store.sqlite_store import SQLiteStore
from proxy.translate.ids import new_id
from tests.redis_server import RedisServer
from tests.store_kit import BACKENDS, redis_client, run

HANG_BOUND_SECS = 5.0


def response(previous=None, size: int = 0) -> NewResponse:
    rid = new_id("resp")
    out = [{"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "ok" + "x" * size, "annotations": []}]}]
    return NewResponse(rid, orjson.dumps({"id": rid, "output": out}), prepare_items("hi"), out, previous=previous)


async def unavailable_within_bound(operation) -> StoreUnavailable:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await operation
    assert time.monotonic() - started < HANG_BOUND_SECS
    assert caught.value.retry_after >= 1
    return caught.value


def every_operation(store, owner: str, rid: str, cid: str):
    """One coroutine per kind of store operation (reads, writes, scripts of each shape)."""
    return [
        store.get_response(owner, rid),
        store.get_history(owner, rid),
        store.list_input_items(owner, rid),
        store.get_items(owner, ["msg_x"]),
        store.put_response(owner, response()),
        store.delete_response(owner, rid),
        store.create_conversation(owner),
        store.append_conversation_items(owner, cid, [{"role": "user", "content": "x"}]),
        store.conversation_context(owner, cid),
        store.list_conversation_items(owner, cid),
    ]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGSTOP"])
def test_redis_gone_or_hung_fails_fast_and_recovers_when_it_returns(how):
    with RedisServer() as server:
        store = RedisStore(server.url, timeout_secs=1.0)
        owner = store.owner_of("sk-alice")

        async def scenario(store):
            first = response()
            await store.put_response(owner, first)
            cid = (await store.create_conversation(owner))["id"]
            if how == "SIGSTOP":
                server.send(signal.SIGSTOP)  # alive but silent: every wait must time out
            else:
                server.stop(getattr(signal, how))
            for op in every_operation(store, owner, first.id, cid):
                await unavailable_within_bound(op)
            if how == "SIGSTOP":
                server.send(signal.SIGCONT)
                assert await store.get_response(owner, first.id) == first.body
            else:
                server.start()  # same port, empty (no persistence)
            again = response()
            await store.put_response(owner, again)
            assert await store.get_response(owner, again.id) == again.body
            assert (await store.get_history(owner, again.id)).items[-1] == again.output_items[0]

        run(store, scenario)


def test_a_hung_redis_is_waited_for_once_not_again_on_a_new_connection(monkeypatch):
    """No reply within the timeout fails the operation after that one wait: a timeout is not a stale
    pooled connection, so it is not tried again on a fresh one (that would double every wait on a
    hung server, and hold a worker's connection slots twice as long)."""
    from proxy.store.redis_link import RedisLink

    attempts: list[bool] = []  # per attempt: on a new connection?
    once = RedisLink._once

    async def counted(self, pool, send, conn):
        attempts.append(conn is None)
        return await once(self, pool, send, conn)

    monkeypatch.setattr(RedisLink, "_once", counted)
    with RedisServer() as server:
        store = RedisStore(server.url, timeout_secs=1.0)
        owner = store.owner_of("sk-alice")

        async def scenario(store):
            first = response()
            await store.put_response(owner, first)  # leaves a pooled connection
            attempts.clear()
            server.send(signal.SIGSTOP)
            try:
                await unavailable_within_bound(store.get_response(owner, first.id))
            finally:
                server.send(signal.SIGCONT)
            assert attempts == [False]
            assert await store.get_response(owner, first.id) == first.body  # on a new connection
            assert attempts == [False, True]

        run(store, scenario)


def test_a_full_redis_refuses_writes_promptly_still_deletes_and_recovers():
    with RedisServer() as server, server.client() as admin:
        store = RedisStore(server.url, timeout_secs=1.0)
        owner = store.owner_of("sk-alice")
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", admin.info("memory")["used_memory"] + 2 * 1024 * 1024)

        async def scenario(store):
            stored = []
            for _ in range(200):
                r = response(size=100_000)
                try:
                    await store.put_response(owner, r)
                except StoreUnavailable as exc:
                    assert "OOM" in str(exc) or "refuses" in str(exc)
                    break
                stored.append(r)
            else:
                pytest.fail("Redis never reported it was full")
            await unavailable_within_bound(store.put_response(owner, response(size=100_000)))
            assert await store.get_response(owner, stored[0].id) == stored[0].body  # reads still work
            assert await store.delete_response(owner, stored[0].id)  # and deletes free memory
            admin.config_set("maxmemory", 0)
            r = response(size=100_000)
            await store.put_response(owner, r)
            assert await store.get_response(owner, r.id) == r.body

        run(store, scenario)


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_lost_behind_the_stores_back_is_reported_not_shortened(backend, store_factory):
    """What Redis eviction (any maxmemory-policy but noeviction) or a damaged file would do."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        first = response()
        await store.put_response(owner, first)
        second = response(await store.get_history(owner, first.id))
        await store.put_response(owner, second)
        if backend == "redis":  # eviction takes whole keys: here the chain's hash, not the pointer to it
            with redis_client(store) as client:
                assert client.delete(f"{store.prefix}t:{owner}:{first.id}") == 1
        else:
            with sqlite3.connect(store.path) as conn:
                conn.execute("DELETE FROM responses WHERE id = ?", (first.id,))
        with pytest.raises(HistoryIncomplete) as caught:
            await store.get_history(owner, second.id)
        assert caught.value.response_id == second.id
        if backend == "redis":  # what was in the evicted hash is gone, never a crash
            assert await store.get_response(owner, first.id) is None
            assert await store.list_input_items(owner, first.id) is None
            assert await store.get_items(owner, [first.input_items[0]["id"]]) == {}
            assert await store.delete_response(owner, first.id) is True  # its pointer goes too

    run(store, scenario)


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


def test_sqlite_locked_too_long_fails_writes_promptly_reads_go_on_and_it_recovers(tmp_path):
    path = str(tmp_path / "store.sqlite3")
    store = SQLiteStore(path, timeout_secs=0.5)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        first = response()
        await store.put_response(owner, first)
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout.readline().strip() == "locked"
            error = await unavailable_within_bound(store.put_response(owner, response()))
            assert "locked" in str(error)
            await unavailable_within_bound(store.create_conversation(owner))
            assert await store.get_response(owner, first.id) == first.body  # WAL: readers never wait
            holder.communicate("\n", timeout=10)
        finally:
            holder.kill()
            holder.wait()
        late = response()
        await store.put_response(owner, late)
        assert await store.get_response(owner, late.id) == late.body

    run(store, scenario)


_FILL_DISK = """
import asyncio, json, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from tests.unit.test_store_faults import response
from proxy.store import StoreUnavailable
from proxy.store.sqlite_store import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1], timeout_secs=2)
    owner = store.owner_of("sk-alice")
    await store.put_response(owner, response())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, hard))  # the disk is full past 2 MiB
    out = {"stored": 0}
    try:
        for _ in range(500):
            await store.put_response(owner, response(size=50_000))
            out["stored"] += 1
    except StoreUnavailable as exc:
        out["error"] = str(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
    r = response(size=50_000)
    await store.put_response(owner, r)
    out["recovered"] = await store.get_response(owner, r.id) == r.body
    await store.aclose()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_sqlite_on_a_full_disk_fails_writes_and_recovers_when_there_is_room(tmp_path):
    from proxy.devtools import ROOT

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FILL_DISK), str(tmp_path / "store.sqlite3"), str(ROOT)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 < out["stored"] < 500 and "unavailable" in out["error"]
    assert out["recovered"] is True


def test_a_cancelled_redis_call_never_leaves_a_reply_for_the_next_one(redis_url):
    """Cancelling mid-reply (a client that went away) must not poison the pooled connection."""
    store = RedisStore(redis_url, prefix=f"t{new_id('x')}:", max_connections=1)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        big = response(size=2_000_000)
        await store.put_response(owner, big)
        for n in range(20):  # cancelled at different points: before sending, mid-reply, after
            task = asyncio.create_task(store.get_response(owner, big.id))
            for _ in range(1 + n % 5):
                await asyncio.sleep(0)
            task.cancel()
            small = response()
            await store.put_response(owner, small)
            assert await store.get_response(owner, small.id) == small.body

    run(store, scenario)
