"""An item id held by several holders, one suite for both backends (a real SQLite file, a real
redis-server): a resolved ``item_reference`` stores the item again in the new response, a client
resends an item with its id, a response's items are appended to its conversation. A lookup
(``get_items``) takes the newest holder that is still live and falls back to older ones when it
is deleted or expires — never to another key's."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from proxy.store import NewJob, NewResponse, Store, prepare_items
from proxy.translate.ids import new_id
from tests.store_kit import BACKENDS, run, stored_rows


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def answer(text: str) -> list[dict]:
    return [{"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": text, "annotations": []}]}]


def response(inputs: list[dict], text: str = "answer", **built_on) -> NewResponse:
    rid = new_id("resp")
    return NewResponse(rid, orjson.dumps({"id": rid}), inputs, answer(text), **built_on)


def copy_of(item: dict, text: str) -> dict:
    """The item under the same id with other content (a client resending it, changed)."""
    return {**item, "content": [{"type": "input_text", "text": text}]}


async def found(store: Store, owner: str, item: dict) -> dict | None:
    return (await store.get_items(owner, [item["id"]])).get(item["id"])


def index_entries(store: Store) -> int:
    rows = stored_rows(store)
    return rows.get("item_index", 0) + rows.get("ix", 0) + rows.get("i", 0)


def test_an_item_stored_again_is_found_in_the_older_holder_once_the_newer_is_deleted(backend, store_factory):
    """The reproduction: B stores A's input item again (a resolved reference); DELETE B."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        a = response(prepare_items("question A"))
        await store.put_response(owner, a)
        x = a.input_items[0]
        b = response([x])
        await store.put_response(owner, b)
        assert await store.delete_response(owner, b.id)
        assert await store.get_response(owner, a.id) == a.body
        assert await found(store, owner, x) == x
        assert await found(store, owner, b.output_items[0]) is None  # B's own items went with it
        assert await store.delete_response(owner, a.id)
        assert await found(store, owner, x) is None
        return index_entries(store)

    assert run(store, scenario) == 0  # each holder removed only its own entries, and all of them


def test_a_deleted_conversation_leaves_its_responses_items_referenceable(backend, store_factory):
    """A response in a conversation appends its items there; deleting the conversation keeps the
    response (200) and its items must still be found in it."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        cid = (await store.create_conversation(owner))["id"]
        r = response(prepare_items("in a conversation"), conversation=await store.conversation_context(owner, cid))
        await store.put_response(owner, r)
        await store.append_conversation_items(owner, cid, r.input_items + r.output_items)
        assert await store.delete_conversation(owner, cid)
        assert await store.get_response(owner, r.id) == r.body
        wanted = [r.input_items[0]["id"], r.output_items[0]["id"]]
        assert await store.get_items(owner, wanted) == {i["id"]: i for i in r.input_items + r.output_items}

    run(store, scenario)


def test_a_conversation_item_deleted_while_a_response_holds_it_stays_found_in_the_response(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = response(prepare_items("kept by a response"))
        await store.put_response(owner, r)
        out = r.output_items[0]
        cid = (await store.create_conversation(owner, items=[out]))["id"]  # a reference, resolved
        assert await store.delete_conversation_item(owner, cid, out["id"]) is not None
        assert await store.get_conversation_item(owner, cid, out["id"]) is None
        assert await found(store, owner, out) == out
        # and the other way round: the response deleted, the conversation's copy is found
        await store.append_conversation_items(owner, cid, [out])
        assert await store.delete_response(owner, r.id)
        assert await found(store, owner, out) == out
        assert await store.delete_conversation_item(owner, cid, out["id"]) is not None
        assert await found(store, owner, out) is None

    run(store, scenario)


def test_the_newest_of_differing_copies_wins_and_the_older_are_found_after_it_goes(backend, store_factory):
    """A client that resent an item under its id with other content: the last one stored is what
    a reference gets (as when the index kept one location), the older copies once it is gone."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        a = response(prepare_items("first"))
        await store.put_response(owner, a)
        first = a.input_items[0]
        second, third = copy_of(first, "second"), copy_of(first, "third")
        b = response([second])
        await store.put_response(owner, b)
        assert await found(store, owner, first) == second
        cid = (await store.create_conversation(owner, items=[third]))["id"]
        assert await found(store, owner, first) == third
        assert await store.delete_conversation_item(owner, cid, first["id"]) is not None
        assert await found(store, owner, first) == second
        assert await store.delete_response(owner, b.id)
        assert await found(store, owner, first) == first
        await store.append_conversation_items(owner, cid, [third])  # stored again: the newest now
        assert await found(store, owner, first) == third
        assert await store.delete_conversation(owner, cid)
        assert await found(store, owner, first) == first

    run(store, scenario)


@pytest.mark.slow
def test_an_expired_holder_makes_the_lookup_fall_back_to_a_live_one(backend, store_factory):
    """The newest holder (a response) expires while an older one (a conversation, written to
    since) lives on: the lookup falls back to the conversation's copy, then to nothing."""
    ttl = 2.0
    store = store_factory(backend, ttl_secs=int(ttl))
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        x = prepare_items("in the conversation")[0]
        cid = (await store.create_conversation(owner, items=[x]))["id"]
        await asyncio.sleep(0.3)
        newer = response([copy_of(x, "the response's copy")])
        await store.put_response(owner, newer)
        newer_stored = time.monotonic()
        assert await found(store, owner, x) == newer.input_items[0]
        await asyncio.sleep(0.7)
        conv_started = time.monotonic()
        await store.append_conversation_items(owner, cid, prepare_items("keeps it alive"))
        await asyncio.sleep(max(0.0, newer_stored + ttl + 0.2 - time.monotonic()))
        assert time.monotonic() < conv_started + ttl, "the machine stalled too long for this check"
        assert await store.get_response(owner, newer.id) is None
        assert await found(store, owner, x) == x
        if backend == "sqlite":  # the sweep frees the expired holder's rows only
            assert await store.sweep(force=True) == 1
            assert await found(store, owner, x) == x
        await asyncio.sleep(max(0.0, conv_started + ttl + 0.4 - time.monotonic()))
        assert await found(store, owner, x) is None

    run(store, scenario)


def test_another_key_never_sees_any_holder(backend, store_factory):
    store = store_factory(backend)
    alice, bob = store.owner_of("sk-alice"), store.owner_of("sk-bob")

    async def scenario(store):
        a = response(prepare_items("alice's"))
        await store.put_response(alice, a)
        x = a.input_items[0]
        again = response([x])
        await store.put_response(alice, again)
        cid = (await store.create_conversation(alice, items=[x, a.output_items[0]]))["id"]
        assert await store.get_items(bob, [x["id"], a.output_items[0]["id"]]) == {}
        mine = response([copy_of(x, "bob's, under alice's id")])  # an id is only a name: bob's own
        await store.put_response(bob, mine)
        assert await found(store, bob, x) == mine.input_items[0]
        assert await found(store, alice, x) == x
        assert await store.delete_response(bob, mine.id)
        assert await found(store, bob, x) is None
        assert await store.delete_conversation(alice, cid) and await store.delete_response(alice, again.id)
        assert await found(store, alice, x) == x  # alice falls back to her older holder…
        assert await store.get_items(bob, [x["id"], a.output_items[0]["id"]]) == {}  # … bob to none of hers

    run(store, scenario)


def test_a_background_responses_items_are_holders_like_a_plain_responses(backend, store_factory):
    """A background response indexes its input when it is created and its output when it finishes
    (``redis_job_scripts``, ``sqlite_job_sql``): both stay found when a newer holder goes."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        stored = response(prepare_items("referenced"))
        await store.put_response(owner, stored)
        x = stored.input_items[0]
        rid = new_id("resp")
        queued = NewResponse(rid, orjson.dumps({"id": rid, "status": "queued"}), [x], [])
        await store.create_background(owner, queued, NewJob("host:1:a", 30_000, 10, False))
        assert await store.delete_response(owner, stored.id)
        assert await found(store, owner, x) == x  # in the background response's input
        done = NewResponse(queued.id, queued.body, queued.input_items, answer("done"))
        assert await store.finish_background(owner, done, "host:1:a", 0, [], "completed")
        out = done.output_items[0]
        later = response([out])
        await store.put_response(owner, later)
        assert await store.delete_response(owner, later.id)
        assert await store.get_items(owner, [x["id"], out["id"]]) == {x["id"]: x, out["id"]: out}

    run(store, scenario)
