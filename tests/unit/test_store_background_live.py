"""Background jobs in the store across processes and live, on both backends (a real SQLite file,
a real redis-server): a follower reading another process's events as they are logged until the
end, the owner's cap holding for processes creating at once, and (Redis) a cancel pushed to the
worker running the job."""
from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest

from proxy.store import NewResponse, prepare_items
from proxy.store.base import TooManyJobs
from tests.store_kit import BACKENDS, from_spec, run, spec
from tests.unit.test_store_background import WORKER, body, event, job, queued, seqs


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _append_slowly(described, owner: str, rid: str, count: int, ready) -> None:
    """Another process: the running worker, logging one event every 20 ms, then finishing."""

    async def work(store):
        ready.wait(30)
        for n in range(count):
            assert await store.append_events(owner, rid, WORKER, n, [event(n)])
            await asyncio.sleep(0.02)
        r = NewResponse(rid, body(rid, "completed"), prepare_items("hello"), [])
        assert await store.finish_background(owner, r, WORKER, count, [event(count, "response.completed")], "completed")

    run(from_spec(described), work)


def test_a_follower_sees_another_processes_events_live_until_the_end(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")
    r = queued()
    run(store, lambda s: s.create_background(owner, r, job()))
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    writer = ctx.Process(target=_append_slowly, args=(spec(store), owner, r.id, 40, ready))
    writer.start()

    async def follow(store):
        seen: list[int] = []
        calls = 0
        ready.set()
        while True:
            page = await store.read_events(owner, r.id, seen[-1] if seen else -1, wait_secs=5.0)
            calls += 1
            seen += seqs(page)
            if page.ended:
                return seen, calls

    try:
        seen, calls = run(store_factory(backend), follow)
        writer.join(60)
        assert writer.exitcode == 0
    finally:
        if writer.is_alive():
            writer.kill()
    assert seen == list(range(41))
    assert calls > 5  # it followed as the events came, not in one read at the end


def _create_many(described, owner: str, count: int, start, results) -> None:
    async def work(store):
        start.wait(30)
        for _ in range(count):
            try:
                await store.create_background(owner, queued(), job(cap=7))
                results.put("ok")
            except TooManyJobs:
                results.put("limit")
            except Exception as e:  # reported, not left to hang the parent's get()
                results.put(repr(e))

    run(from_spec(described), work)


def test_the_cap_holds_for_processes_creating_at_once(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_create_many, args=(spec(store), owner, 10, start, results)) for _ in range(3)]
    for w in workers:
        w.start()
    start.set()
    try:
        outcomes = [results.get(timeout=120) for _ in range(30)]
        for w in workers:
            w.join(60)
            assert w.exitcode == 0
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
    assert outcomes.count("ok") == 7 and outcomes.count("limit") == 23


def test_a_cancel_is_pushed_to_the_worker_running_the_job(store_factory):
    store = store_factory("redis")
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        heard: asyncio.Queue[str] = asyncio.Queue()
        watcher = asyncio.create_task(store.watch_cancels(WORKER, heard.put_nowait))
        try:
            await asyncio.sleep(0.3)  # subscribed
            started = time.monotonic()
            snap = await store.background_job(owner, r.id)
            assert await store.end_background(owner, r.id, body(r.id, "cancelled"), version=snap.version,
                                              outcome="cancelled") == "ok"
            assert await asyncio.wait_for(heard.get(), 10) == r.id
            assert time.monotonic() - started < 5  # pushed, not found by a poll (a hang bound, generous)
        finally:
            watcher.cancel()

    run(store, scenario)
