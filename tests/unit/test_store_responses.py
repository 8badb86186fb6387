"""Stored responses, one suite for both backends (a real SQLite file, a real redis-server):
round trips, histories of long chains and their branches, deletes and TTLs that must not break a
descendant, input_items pages, item lookup, owners kept apart, the size bound."""
from __future__ import annotations

import time

import orjson
import pytest
from openai.types.responses import Response, ResponseItemList

from proxy.store import CursorNotFound, History, NewResponse, ObjectTooLarge, prepare_items
from proxy.store.shapes import item_list
from proxy.translate.ids import new_id
from tests.store_kit import BACKENDS, redis_client, run, stored_rows


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def response_body(rid: str, output: list, status: str = "completed", previous: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id": rid, "object": "response", "created_at": 1_770_000_000, "status": status, "model": "mock-echo",
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "previous_response_id": previous, "store": True, "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
        }
    )


def turn(n: int, previous: History | None = None, inputs: int = 1, status: str = "completed") -> NewResponse:
    rid = new_id("resp")
    raw = [{"role": "user", "content": f"question {n}.{k}"} for k in range(inputs)]
    output = [
        {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": f"think {n}"}]},
        {"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": f"answer {n}", "annotations": []}]},
    ]
    body = response_body(rid, output, status, previous.response_id if previous else None)
    return NewResponse(rid, body, prepare_items(raw), output, previous=previous)


def own_items(r: NewResponse) -> list[dict]:
    return r.input_items + r.output_items


@pytest.mark.parametrize("status", ["completed", "failed", "incomplete"])
def test_a_stored_response_reads_back_exactly(backend, store_factory, status):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = turn(1, inputs=2, status=status)
        await store.put_response(owner, r)
        body = await store.get_response(owner, r.id)
        assert body == r.body  # the bytes the client got
        assert Response.model_validate_json(body).status == status
        history = await store.get_history(owner, r.id)
        assert history.response_id == r.id and history.items == own_items(r)
        page = await store.list_input_items(owner, r.id, order="asc")
        assert page.items == r.input_items and not page.has_more
        ResponseItemList.model_validate(item_list(page))

    run(store, scenario)


def test_a_12_turn_chain_reads_its_whole_history_in_order(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        expected: list[dict] = []
        history = None
        turns = []
        for n in range(12):
            r = turn(n, history, inputs=1 + n % 3)
            await store.put_response(owner, r)
            turns.append(r)
            expected += own_items(r)
            history = await store.get_history(owner, r.id)
            assert [i["id"] for i in history.items] == [i["id"] for i in expected]
            assert history.items == expected
        for r in turns:  # input_items: each response's own input only
            page = await store.list_input_items(owner, r.id, limit=100, order="asc")
            assert page.items == r.input_items

    run(store, scenario)


def test_branches_from_one_response_keep_separate_histories(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        root = turn(0)
        await store.put_response(owner, root)
        base = await store.get_history(owner, root.id)
        left, right = turn(1, base), turn(2, base)
        await store.put_response(owner, left)
        await store.put_response(owner, right)
        assert (await store.get_history(owner, left.id)).items == own_items(root) + own_items(left)
        assert (await store.get_history(owner, right.id)).items == own_items(root) + own_items(right)

    run(store, scenario)


def test_deleting_ancestors_never_breaks_a_descendant_and_the_last_delete_frees_everything(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        turns, history = [], None
        for n in range(5):
            r = turn(n, history)
            await store.put_response(owner, r)
            turns.append(r)
            history = await store.get_history(owner, r.id)
        everything = [i for r in turns for i in own_items(r)]
        for gone in (turns[1], turns[0], turns[3]):
            assert await store.delete_response(owner, gone.id) is True
            assert await store.delete_response(owner, gone.id) is False  # then it is gone
            assert await store.get_response(owner, gone.id) is None
            assert await store.get_history(owner, gone.id) is None
            assert await store.list_input_items(owner, gone.id) is None
            assert await store.get_items(owner, [i["id"] for i in own_items(gone)]) == {}
        assert (await store.get_history(owner, turns[4].id)).items == everything  # state is a promise
        assert (await store.get_history(owner, turns[2].id)).items == everything[: 3 * 3]
        sixth = turn(5, await store.get_history(owner, turns[4].id))
        await store.put_response(owner, sixth)
        assert (await store.get_history(owner, sixth.id)).items == everything + own_items(sixth)
        for r in (turns[4], turns[2], sixth):
            assert await store.delete_response(owner, r.id)
        return stored_rows(store)

    left = run(store, scenario)
    assert not any(left.values()), f"deleted responses left data behind: {left}"


def test_a_response_whose_predecessor_vanished_meanwhile_keeps_the_history_it_was_built_on(backend, store_factory):
    """The client saw the answer, so chaining from it must work even if its predecessor was
    deleted (or expired) while it was being generated."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        first = turn(0)
        await store.put_response(owner, first)
        second = turn(1, await store.get_history(owner, first.id))
        await store.put_response(owner, second)
        seen = await store.get_history(owner, second.id)  # read at the start of the third request…
        await store.delete_response(owner, second.id)  # … deleted while it is generated
        await store.delete_response(owner, first.id)
        third = turn(2, seen)
        await store.put_response(owner, third)
        assert (await store.get_history(owner, third.id)).items == seen.items + own_items(third)
        fourth = turn(3, await store.get_history(owner, third.id))
        await store.put_response(owner, fourth)
        assert (await store.get_history(owner, fourth.id)).items == seen.items + own_items(third) + own_items(fourth)

    run(store, scenario)


def test_a_compactions_response_stands_on_its_window_and_keeps_its_own_items(backend, store_factory):
    """A compaction's response (``window``) starts a chain of its own: chaining from it, or from
    one built on it, sees the window in place of what it was built on and of its own items, which
    it keeps all the same (listed, found by reference); its predecessor is not needed by it."""
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        first = turn(0)
        await store.put_response(owner, first)
        rid = new_id("resp")
        own = prepare_items([{"role": "user", "content": "compact, please"}])
        item = {"id": new_id("cmp"), "type": "compaction", "encrypted_content": "rpxc1.opaque"}
        window = [*prepare_items([{"role": "user", "content": "question 0.0"}]), own[0], item]
        compacted = NewResponse(rid, response_body(rid, [item], previous=first.id), own, [item], window=window)
        await store.put_response(owner, compacted)
        assert (await store.get_history(owner, rid)).items == window
        assert [i["id"] for i in (await store.list_input_items(owner, rid)).items] == [own[0]["id"]]
        assert await store.get_items(owner, [own[0]["id"], item["id"]]) == {own[0]["id"]: own[0], item["id"]: item}
        after = turn(1, await store.get_history(owner, rid))
        await store.put_response(owner, after)
        assert (await store.get_history(owner, after.id)).items == window + own_items(after)
        later = turn(2, await store.get_history(owner, after.id))
        await store.put_response(owner, later)
        assert (await store.get_history(owner, later.id)).items == window + own_items(after) + own_items(later)
        await store.delete_response(owner, first.id)  # (not its predecessor in the store)
        assert (await store.get_history(owner, later.id)).items == window + own_items(after) + own_items(later)
        for r in (compacted, after, later):
            assert await store.delete_response(owner, r.id)
        return stored_rows(store)

    left = run(store, scenario)
    assert not any(left.values()), f"deleted responses left data behind: {left}"


def test_input_items_pages_with_limit_order_and_after(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = turn(0, inputs=5)
        await store.put_response(owner, r)
        ids = [i["id"] for i in r.input_items]

        async def page(**kw):
            p = await store.list_input_items(owner, r.id, **kw)
            ResponseItemList.model_validate(item_list(p)) if p.items else None
            return [i["id"] for i in p.items], p.has_more

        assert await page() == (ids[::-1], False)  # default: desc, 20
        assert await page(order="asc", limit=5) == (ids, False)
        assert await page(order="asc", limit=4) == (ids[:4], True)
        assert await page(order="asc", limit=2, after=ids[1]) == (ids[2:4], True)
        assert await page(order="asc", limit=2, after=ids[2]) == (ids[3:], False)
        assert await page(order="desc", limit=2, after=ids[3]) == ([ids[2], ids[1]], True)
        assert await page(order="desc", limit=1, after=ids[0]) == ([], False)
        for after in ("msg_unknown", "msg_" + r.id):  # no item of this list: the client's error
            for order in ("asc", "desc"):
                with pytest.raises(CursorNotFound) as caught:
                    await page(order=order, after=after)
                assert caught.value.param == "after" and after in str(caught.value)
        assert await page(limit=1) == ([ids[-1]], True)
        assert item_list(await store.list_input_items(owner, r.id, order="asc", after=ids[-1])) == {
            "object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False
        }

    run(store, scenario)


def test_items_resolve_by_id_for_their_owner_only(backend, store_factory):
    store = store_factory(backend)
    alice, bob = store.owner_of("sk-alice"), store.owner_of("sk-bob")

    async def scenario(store):
        r = turn(0, inputs=2)
        await store.put_response(alice, r)
        conv = await store.create_conversation(alice, items=[{"role": "user", "content": "in a conversation"}])
        conv_item = (await store.conversation_context(alice, conv["id"])).items[0]
        wanted = [r.input_items[1]["id"], r.output_items[1]["id"], conv_item["id"], "msg_nowhere"]
        found = await store.get_items(alice, wanted)
        assert found == {
            r.input_items[1]["id"]: r.input_items[1], r.output_items[1]["id"]: r.output_items[1],
            conv_item["id"]: conv_item,
        }
        assert await store.get_items(bob, wanted) == {}
        assert await store.get_items(alice, []) == {}

    run(store, scenario)


def test_another_owner_can_neither_read_list_delete_nor_chain_from_a_response(backend, store_factory):
    store = store_factory(backend)
    alice, bob = store.owner_of("sk-alice"), store.owner_of("sk-bob")

    async def scenario(store):
        r = turn(0)
        await store.put_response(alice, r)
        assert await store.get_response(bob, r.id) is None
        assert await store.get_history(bob, r.id) is None
        assert await store.list_input_items(bob, r.id) is None
        assert await store.delete_response(bob, r.id) is False
        # chaining from a foreign id keeps nothing of it: only what the caller itself sent
        forged = turn(1, History(r.id, []))
        await store.put_response(bob, forged)
        assert (await store.get_history(bob, forged.id)).items == own_items(forged)
        assert await store.get_response(alice, r.id) == r.body  # untouched
        assert (await store.get_history(alice, r.id)).items == own_items(r)

    run(store, scenario)


def test_an_object_over_the_size_bound_is_refused_whole(backend, store_factory):
    store = store_factory(backend, max_object_bytes=4096)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = turn(0)
        big = NewResponse(r.id, r.body + b" " * 4096, r.input_items, r.output_items)
        with pytest.raises(ObjectTooLarge) as caught:
            await store.put_response(owner, big)
        assert caught.value.limit == 4096 and caught.value.size > 4096
        assert await store.get_response(owner, r.id) is None
        await store.put_response(owner, r)  # a small one still fits
        assert await store.get_response(owner, r.id) == r.body

    run(store, scenario)


@pytest.mark.slow
def test_ttl_expires_responses_but_descendants_keep_their_ancestors(backend, store_factory):
    store = store_factory(backend, ttl_secs=3)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        first = turn(0)
        await store.put_response(owner, first)
        first_done = time.monotonic()
        await _sleep(1.5)
        second = turn(1, await store.get_history(owner, first.id))
        second_started = time.monotonic()
        await store.put_response(owner, second)
        await _sleep(first_done + 3.3 - time.monotonic())
        assert time.monotonic() < second_started + 3, "the machine stalled too long for this check"
        assert await store.get_response(owner, first.id) is None  # its own TTL is over
        assert await store.get_history(owner, first.id) is None
        assert await store.get_items(owner, [first.input_items[0]["id"]]) == {}
        assert (await store.get_history(owner, second.id)).items == own_items(first) + own_items(second)
        if backend == "redis":
            with redis_client(store) as client:  # every key carries a TTL
                keys = list(client.scan_iter(match=store.prefix + "*"))
                assert keys and all(client.pttl(k) > 0 for k in keys)
        await _sleep(second_started + 3.3 - time.monotonic())
        assert await store.get_history(owner, second.id) is None
        if backend == "sqlite":
            assert await store.sweep(force=True) == 2
        return stored_rows(store)

    left = run(store, scenario)
    data = {kind: n for kind, n in left.items() if kind not in ("ix", "meta")}
    assert not any(data.values()), f"expired responses left data behind: {left}"
    assert left.get("ix", 0) == 0  # an item's holders expire with their longest-lived one


async def _sleep(secs: float) -> None:
    import asyncio

    await asyncio.sleep(max(0.0, secs))
