"""Background jobs in the store, one suite for both backends (a real SQLite file, a real
redis-server): a background response stored at once and finished later (chaining from it sees
its output), its event log read after any sequence number, cancels and reapers that end a job
exactly once, leases that renew, the owner's cap (given back when a lease runs out), the log's
size bound, owners kept apart, and the TTL the log shares with its response. Across processes
and live: ``test_store_background_live``."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from openai.types.responses import Response

from proxy.store import NewResponse, ObjectTooLarge, ResponsePending, prepare_items
from proxy.store.base import NewJob, TooManyJobs
from proxy.translate.ids import new_id
from tests.store_kit import BACKENDS, run, spec, stored_rows
from tests.unit.test_store_responses import response_body

WORKER = "host-a:101:aaaa"
OTHER_WORKER = "host-b:202:bbbb"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def body(rid: str, status: str, output: list | None = None) -> bytes:
    doc = orjson.loads(response_body(rid, output or [], status))
    doc["background"] = True
    return orjson.dumps(doc)


def queued(text: str = "hello", previous=None) -> NewResponse:
    rid = new_id("resp")
    return NewResponse(rid, body(rid, "queued"), prepare_items(text), [], previous=previous)


def finished(r: NewResponse, text: str = "done") -> NewResponse:
    out = [{"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    return NewResponse(r.id, body(r.id, "completed", out), r.input_items, out)


def job(worker: str = WORKER, lease_ms: int = 30_000, cap: int = 100, events: bool = True) -> NewJob:
    return NewJob(worker=worker, lease_ms=lease_ms, max_per_owner=cap, events=events)


def event(seq: int, kind: str = "response.output_text.delta") -> bytes:
    return orjson.dumps({"type": kind, "sequence_number": seq, "delta": f"t{seq} "})


def seqs(page) -> list[int]:
    return [orjson.loads(e)["sequence_number"] for e in page.events]


def test_a_background_response_is_stored_at_once_and_finished_later(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        assert await store.get_response(owner, r.id) == r.body
        assert Response.model_validate_json(r.body).status == "queued"
        snap = await store.background_job(owner, r.id)
        assert (snap.state, snap.version, snap.body) == ("queued", 0, r.body)
        assert (await store.list_input_items(owner, r.id, order="asc")).items == r.input_items

        running = body(r.id, "in_progress")
        assert not await store.start_background(owner, r.id, running, OTHER_WORKER)  # not its job
        assert await store.start_background(owner, r.id, running, WORKER)
        snap = await store.background_job(owner, r.id)
        assert (snap.state, snap.version, snap.body) == ("in_progress", 1, running)
        assert await store.get_response(owner, r.id) == running

        done = finished(r)
        assert await store.finish_background(owner, done, WORKER, 0, [event(0)], "completed")
        assert await store.get_response(owner, r.id) == done.body
        assert (await store.background_job(owner, r.id)).state == "ended"
        # Chaining from it sees its input and its output, like from any stored response.
        history = await store.get_history(owner, r.id)
        assert history.items == r.input_items + done.output_items
        child = queued("next", previous=history)
        await store.put_response(owner, child)
        assert (await store.get_history(owner, child.id)).items == r.input_items + done.output_items + child.input_items
        found = await store.get_items(owner, [done.output_items[0]["id"]])
        assert found == {done.output_items[0]["id"]: done.output_items[0]}
        # A finished job takes no more writes from anyone.
        assert not await store.append_events(owner, r.id, WORKER, 1, [event(1)])
        assert not await store.start_background(owner, r.id, running, WORKER)
        assert not await store.finish_background(owner, done, WORKER, 1, [], "completed")
        assert await store.end_background(owner, r.id, running, version=snap.version + 1, outcome="cancelled") == "ended"
        assert await store.get_response(owner, r.id) == done.body

    run(store, scenario)


def test_a_chain_from_a_background_response_waits_for_its_end(backend, store_factory):
    """Queued, running: its output is not there yet, so a history read of it refuses
    (``ResponsePending``) instead of handing on the turn without its answer; ended (completed or
    cancelled by anyone), it reads like any stored response."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        for ending in ("finished", "cancelled"):
            r = queued()
            await store.create_background(owner, r, job())
            with pytest.raises(ResponsePending) as refused:
                await store.get_history(owner, r.id)
            assert refused.value.response_id == r.id
            assert await store.start_background(owner, r.id, body(r.id, "in_progress"), WORKER)
            with pytest.raises(ResponsePending):
                await store.get_history(owner, r.id)
            if ending == "finished":
                done = finished(r)
                assert await store.finish_background(owner, done, WORKER, 0, [], "completed")
                expected = r.input_items + done.output_items
            else:
                outcome = await store.end_background(owner, r.id, body(r.id, "cancelled"), version=1, outcome="cancelled")
                assert outcome == "ok"
                expected = r.input_items
            assert (await store.get_history(owner, r.id)).items == expected, ending
        # Another key's pending response is simply not found: ids leak nothing.
        other = queued()
        await store.create_background(owner, other, job())
        assert await store.get_history(store.owner_of("sk-bob"), other.id) is None

    run(store, scenario)


def test_events_read_back_after_any_sequence_number_exactly_once(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        logged = [event(n) for n in range(12)]
        assert await store.append_events(owner, r.id, WORKER, 0, logged[:5])
        assert await store.append_events(owner, r.id, WORKER, 3, logged[3:8])  # a retried write overlaps
        assert await store.append_events(owner, r.id, WORKER, 8, logged[8:])
        everything = await store.read_events(owner, r.id, -1)
        assert everything.events == logged and not everything.ended and everything.logged
        for after in (0, 4, 7, 10, 11):
            page = await store.read_events(owner, r.id, after)
            assert page.events == logged[after + 1 :], after
        page = await store.read_events(owner, r.id, 2, limit=4)
        assert seqs(page) == [3, 4, 5, 6] and not page.ended
        assert await store.finish_background(owner, finished(r), WORKER, 12, [event(12, "response.completed")], "completed")
        page = await store.read_events(owner, r.id, 10)
        assert seqs(page) == [11, 12] and page.ended
        assert (await store.read_events(owner, r.id, 12)).events == [] and (await store.read_events(owner, r.id, 12)).ended
        limited = await store.read_events(owner, r.id, -1, limit=5)
        assert seqs(limited) == [0, 1, 2, 3, 4] and not limited.ended  # more to read: not ended yet

    run(store, scenario)


def test_a_response_not_streamed_keeps_no_log(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job(events=False))
        page = await store.read_events(owner, r.id, -1)
        assert page.events == [] and page.ended and not page.logged
        assert await store.read_events(owner, new_id("resp"), -1) is None  # no such job at all

    run(store, scenario)


def test_a_cancelled_log_its_worker_never_closes_ends_at_its_lease(backend, store_factory):
    """A cancelled job whose worker does not close its log (it died, or runs the previous release):
    a follower waits for it no longer than the lease would have lasted, then the log is ended and
    takes nothing more. A reaper's end (the lease ran out) closes the log at once."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r, dead = queued(), queued()
        for j in (r, dead):
            await store.create_background(owner, j, job(lease_ms=1500))
            assert await store.start_background(owner, j.id, body(j.id, "in_progress"), WORKER)
            assert await store.append_events(owner, j.id, WORKER, 0, [event(0)])
        snap = await store.background_job(owner, r.id)
        assert await store.end_background(owner, r.id, body(r.id, "cancelled"), version=snap.version,
                                          outcome="cancelled") == "ok"
        page = await store.read_events(owner, r.id, 0, wait_secs=0.5)
        assert page.events == [] and not page.ended
        await asyncio.sleep(1.6)
        page = await store.read_events(owner, r.id, -1, wait_secs=1.0)
        assert seqs(page) == [0] and page.ended
        assert not await store.close_cancelled(owner, r.id, WORKER, 1, [event(1)])
        assert seqs(await store.read_events(owner, dead.id, -1)) == [0]
        assert await store.expired_jobs(100) == [(owner, dead.id)]
        snap = await store.background_job(owner, dead.id)
        assert await store.end_background(owner, dead.id, body(dead.id, "failed"), version=snap.version,
                                          outcome="lost", only_expired=True) == "ok"
        page = await store.read_events(owner, dead.id, -1)
        assert seqs(page) == [0] and page.ended
        assert not await store.close_cancelled(owner, dead.id, WORKER, 1, [event(1)])

    run(store, scenario)


@pytest.mark.parametrize("outcome", ["cancelled", "failed"])
def test_ending_a_job_from_outside_wins_once_and_stops_its_worker(backend, store_factory, outcome):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        assert await store.start_background(owner, r.id, body(r.id, "in_progress"), WORKER)
        assert await store.append_events(owner, r.id, WORKER, 0, [event(0), event(1)])
        snap = await store.background_job(owner, r.id)
        ended = body(r.id, outcome)
        assert await store.end_background(owner, r.id, ended, version=snap.version - 1, outcome=outcome) == "changed"
        assert await store.end_background(owner, r.id, ended, version=snap.version, outcome=outcome) == "ok"
        assert await store.end_background(owner, r.id, ended, version=snap.version, outcome=outcome) == "ended"
        assert await store.get_response(owner, r.id) == ended
        page = await store.read_events(owner, r.id, -1)
        # A follower stops after what was logged; after a cancel, once its worker closed the log.
        assert seqs(page) == [0, 1] and page.ended == (outcome != "cancelled")
        # The worker's next step learns it: every write refused, the renewal names the job.
        assert not await store.append_events(owner, r.id, WORKER, 2, [event(2), event(3)])
        assert not await store.finish_background(owner, finished(r), WORKER, 2, [], "completed")
        assert await store.renew_leases(WORKER, [(owner, r.id)], 30_000) == {r.id}
        assert await store.get_response(owner, r.id) == ended
        assert await store.expired_jobs(100) == []
        # Cancelled, its worker logs what its live client already got (from no other worker, once).
        assert not await store.close_cancelled(owner, r.id, OTHER_WORKER, 2, [event(2)])
        closed = await store.close_cancelled(owner, r.id, WORKER, 1, [event(1), event(2), event(3)])
        assert closed == (outcome == "cancelled")
        assert not await store.close_cancelled(owner, r.id, WORKER, 4, [event(4)])
        page = await store.read_events(owner, r.id, -1)
        assert seqs(page) == ([0, 1, 2, 3] if closed else [0, 1]) and page.ended
        assert await store.get_response(owner, r.id) == ended
        assert (await store.background_job(owner, r.id)).state == "ended"

    run(store, scenario)


def test_renewal_keeps_a_lease_the_reapers_take_it_once_it_runs_out(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        kept, lost = queued(), queued()
        await store.create_background(owner, kept, job(lease_ms=300))
        await store.create_background(owner, lost, job(lease_ms=300, worker=OTHER_WORKER))
        for _ in range(4):
            await asyncio.sleep(0.15)
            assert await store.renew_leases(WORKER, [(owner, kept.id)], 300) == set()
        assert await store.expired_jobs(100) == [(owner, lost.id)]
        snap = await store.background_job(owner, kept.id)
        failed = body(kept.id, "failed")
        assert await store.end_background(owner, kept.id, failed, version=snap.version, outcome="failed",
                                          only_expired=True) == "alive"
        # Two reapers (two store clients, as two workers) race for the dead job: one wins.
        other = type(store)(**_same(store))
        try:
            snap = await store.background_job(owner, lost.id)
            results = await asyncio.gather(*(
                s.end_background(owner, lost.id, body(lost.id, "failed"), version=snap.version, outcome="failed",
                                 only_expired=True)
                for s in (store, other, store, other)
            ))
        finally:
            await other.aclose()
        assert sorted(results) == ["ended", "ended", "ended", "ok"]
        assert Response.model_validate_json(await store.get_response(owner, lost.id)).status == "failed"
        assert await store.expired_jobs(100) == []

    run(store, scenario)


def _same(store) -> dict:
    """Constructor arguments of a second client of the same store."""
    described = spec(store)
    if described[0] == "sqlite":
        return {"path": described[1]}
    return {"url": described[1], "prefix": described[2]}


def test_the_owners_cap_counts_live_leases_only(backend, store_factory):
    store = store_factory(backend)
    alice, bob = store.owner_of("sk-alice"), store.owner_of("sk-bob")

    async def scenario(store):
        first, second = queued(), queued()
        await store.create_background(alice, first, job(cap=2))
        await store.create_background(alice, second, job(cap=2, lease_ms=300))
        refused = queued()
        with pytest.raises(TooManyJobs) as caught:
            await store.create_background(alice, refused, job(cap=2))
        assert (caught.value.active, caught.value.limit) == (2, 2)
        assert await store.get_response(alice, refused.id) is None  # refused whole: nothing stored
        await store.create_background(bob, queued(), job(cap=2))  # another key has its own count
        assert await store.finish_background(alice, finished(first), WORKER, 0, [], "completed")
        await store.create_background(alice, queued(), job(cap=2))  # a finished job gave its slot back
        with pytest.raises(TooManyJobs):
            await store.create_background(alice, queued(), job(cap=2))
        await asyncio.sleep(0.4)  # `second`'s worker died: no renewal, its lease runs out
        await store.create_background(alice, queued(), job(cap=2))  # ...and with it its slot

    run(store, scenario)


def test_the_log_is_bounded_and_refused_whole_past_the_bound(backend, store_factory):
    store = store_factory(backend, max_object_bytes=64 * 1024)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        big = [orjson.dumps({"type": "response.output_text.delta", "sequence_number": n, "delta": "x" * 10_000})
               for n in range(7)]
        assert await store.append_events(owner, r.id, WORKER, 0, big[:6])
        with pytest.raises(ObjectTooLarge):
            await store.append_events(owner, r.id, WORKER, 6, big[6:] + [event(7)])
        assert len((await store.read_events(owner, r.id, -1)).events) == 6  # nothing of the refused batch
        with pytest.raises(ObjectTooLarge):
            await store.finish_background(owner, finished(r), WORKER, 6, big[6:], "completed")
        assert (await store.background_job(owner, r.id)).state == "queued"  # still running: its worker decides

    run(store, scenario)


def test_another_owner_sees_no_job_and_no_event(backend, store_factory):
    store = store_factory(backend)
    alice, bob = store.owner_of("sk-alice"), store.owner_of("sk-bob")

    async def scenario(store):
        r = queued()
        await store.create_background(alice, r, job())
        assert await store.append_events(alice, r.id, WORKER, 0, [event(0)])
        assert await store.background_job(bob, r.id) is None
        assert await store.read_events(bob, r.id, -1) is None
        assert await store.end_background(bob, r.id, b"{}", version=0, outcome="cancelled") == "gone"
        assert not await store.append_events(bob, r.id, WORKER, 1, [event(1)])
        assert not await store.start_background(bob, r.id, b"{}", WORKER)
        assert (await store.background_job(alice, r.id)).state == "queued"

    run(store, scenario)


def test_the_log_lives_as_long_as_its_response(backend, store_factory):
    store = store_factory(backend, ttl_secs=1)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        assert await store.append_events(owner, r.id, WORKER, 0, [event(0)])
        assert await store.finish_background(owner, finished(r), WORKER, 1, [event(1, "response.completed")], "completed")
        assert len((await store.read_events(owner, r.id, -1)).events) == 2
        await asyncio.sleep(1.3)
        assert await store.get_response(owner, r.id) is None
        assert await store.read_events(owner, r.id, -1) is None
        assert await store.background_job(owner, r.id) is None
        if store.backend == "sqlite":
            await store.sweep(force=True)

    run(store, scenario)
    rows = stored_rows(store)
    assert rows.get("jobs", 0) == 0 and rows.get("response_events", 0) == 0 and rows.get("job", 0) == 0
    assert rows.get("ev", 0) == 0
