"""Conversations, one suite for both backends: the objects and their lifecycle, item pages,
single items, the size bound, owners kept apart, two processes appending at once, and responses
built on a conversation."""
from __future__ import annotations

import multiprocessing

import orjson
import pytest
from openai.types.conversations import Conversation, ConversationItemList

from proxy.store import CursorNotFound, DuplicateItem, HistoryIncomplete, NewResponse, ObjectTooLarge, prepare_items
from proxy.store.shapes import item_list
from proxy.translate.ids import new_id
from tests.store_kit import BACKENDS, from_spec, run, spec, stored_rows


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def messages(*texts: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def test_a_conversation_lives_until_deleted(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        conv = await store.create_conversation(owner, metadata={"topic": "weather"}, items=messages("hi", "hello"))
        Conversation.model_validate(conv)
        cid = conv["id"]
        assert cid.startswith("conv_") and conv["metadata"] == {"topic": "weather"}
        assert await store.get_conversation(owner, cid) == conv
        updated = await store.update_conversation(owner, cid, {"topic": "rain"})
        assert updated == {**conv, "metadata": {"topic": "rain"}}
        assert await store.get_conversation(owner, cid) == updated
        ctx = await store.conversation_context(owner, cid)
        assert [i["content"][0]["text"] for i in ctx.items] == ["hi", "hello"] and ctx.seq == 2
        ConversationItemList.model_validate(item_list(await store.list_conversation_items(owner, cid)))
        assert await store.delete_conversation(owner, cid) is True
        assert await store.delete_conversation(owner, cid) is False
        assert await store.get_conversation(owner, cid) is None
        assert await store.update_conversation(owner, cid, {}) is None
        assert await store.conversation_context(owner, cid) is None
        assert await store.list_conversation_items(owner, cid) is None
        assert await store.append_conversation_items(owner, cid, messages("again")) is None
        assert await store.get_items(owner, [i["id"] for i in ctx.items]) == {}
        empty = await store.create_conversation(owner)
        assert empty["metadata"] == {} and (await store.conversation_context(owner, empty["id"])).items == []
        await store.delete_conversation(owner, empty["id"])
        return stored_rows(store)

    left = run(store, scenario)
    assert not any(left.values()), f"a deleted conversation left data behind: {left}"


def test_conversation_items_page_like_the_api(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        conv = await store.create_conversation(owner, items=messages("a", "b", "c"))
        added = await store.append_conversation_items(owner, conv["id"], messages("d", "e", "f", "g"))
        assert [i["content"][0]["text"] for i in added] == ["d", "e", "f", "g"]
        ids = [i["id"] for i in (await store.conversation_context(owner, conv["id"])).items]
        assert len(ids) == 7

        async def page(**kw):
            p = await store.list_conversation_items(owner, conv["id"], **kw)
            if p.items:
                ConversationItemList.model_validate(item_list(p))
            return [i["id"] for i in p.items], p.has_more

        assert await page() == (ids[::-1], False)
        assert await page(limit=3) == (ids[:-4:-1], True)
        assert await page(limit=3, after=ids[4]) == ([ids[3], ids[2], ids[1]], True)
        assert await page(limit=3, after=ids[3]) == ([ids[2], ids[1], ids[0]], False)
        assert await page(order="asc", limit=7) == (ids, False)
        assert await page(order="asc", limit=6) == (ids[:6], True)
        assert await page(order="asc", limit=2, after=ids[4]) == (ids[5:], False)
        assert await page(order="asc", after=ids[6]) == ([], False)
        # An ``after`` naming no item of this conversation (unknown, another conversation's, deleted
        # from it) is the client's error, not an empty page that ends a pager without a word.
        other = await store.create_conversation(owner, items=messages("elsewhere"))
        elsewhere = (await store.conversation_context(owner, other["id"])).items[0]["id"]
        await store.delete_conversation_item(owner, conv["id"], ids[1])
        for after in ("msg_elsewhere", elsewhere, ids[1]):
            for order in ("asc", "desc"):
                with pytest.raises(CursorNotFound) as caught:
                    await page(order=order, after=after)
                assert caught.value.param == "after" and after in str(caught.value)

    run(store, scenario)


def test_single_items_read_and_delete(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        conv = await store.create_conversation(owner, items=messages("keep", "drop", "keep too"))
        other = await store.create_conversation(owner, items=messages("elsewhere"))
        items = (await store.conversation_context(owner, conv["id"])).items
        foreign_item = (await store.conversation_context(owner, other["id"])).items[0]
        assert await store.get_conversation_item(owner, conv["id"], items[1]["id"]) == items[1]
        assert await store.get_conversation_item(owner, conv["id"], foreign_item["id"]) is None
        assert await store.delete_conversation_item(owner, conv["id"], items[1]["id"]) == conv
        assert await store.delete_conversation_item(owner, conv["id"], items[1]["id"]) is None
        assert await store.delete_conversation_item(owner, conv["id"], foreign_item["id"]) is None
        assert await store.get_conversation_item(owner, conv["id"], items[1]["id"]) is None
        assert (await store.conversation_context(owner, conv["id"])).items == [items[0], items[2]]
        assert await store.get_items(owner, [items[1]["id"], items[2]["id"]]) == {items[2]["id"]: items[2]}

    run(store, scenario)


def test_appends_are_bounded_atomic_and_idempotent(backend, store_factory):
    store = store_factory(backend, max_object_bytes=2000)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        conv = await store.create_conversation(owner, items=messages("x" * 600))
        cid = conv["id"]
        await store.append_conversation_items(owner, cid, messages("y" * 600))
        with pytest.raises(ObjectTooLarge):  # the total would pass the bound: nothing of the batch is added
            await store.append_conversation_items(owner, cid, messages("small", "z" * 600))
        assert len((await store.conversation_context(owner, cid)).items) == 2
        with pytest.raises(ObjectTooLarge):
            await store.create_conversation(owner, items=messages("w" * 2100))
        again = prepare_items(messages("retried"))
        await store.append_conversation_items(owner, cid, again)
        # An id is in a conversation once: a later batch with one it holds, or a batch with one
        # twice, is refused whole (nothing of it kept) — never answered as added while nothing is.
        fresh = prepare_items(messages("fresh"))
        for batch, param, held in ((fresh + again, "items[1]", True), (fresh + fresh, "items[1]", False)):
            with pytest.raises(DuplicateItem) as caught:
                await store.append_conversation_items(owner, cid, batch)
            assert caught.value.param == param and caught.value.item_id == batch[1]["id"]
            assert ("already holds" in str(caught.value)) is held and "Duplicate item found" in str(caught.value)
        # … unless told to skip what it holds (a response's items after its answer): the rest goes in.
        added = await store.append_conversation_items(owner, cid, again + fresh + fresh, skip_held=True)
        assert added == fresh
        assert await store.append_conversation_items(owner, cid, again, skip_held=True) == []
        items = (await store.conversation_context(owner, cid)).items
        assert [i["id"] for i in items] == [items[0]["id"], items[1]["id"], again[0]["id"], fresh[0]["id"]]
        with pytest.raises(DuplicateItem) as caught:
            await store.create_conversation(owner, items=fresh + fresh)
        assert caught.value.param == "items[1]"
        await store.delete_conversation_item(owner, cid, fresh[0]["id"])
        await store.delete_conversation_item(owner, cid, items[0]["id"])  # deleting frees room
        await store.append_conversation_items(owner, cid, messages("v" * 500))

    run(store, scenario)


def test_another_owner_can_neither_read_change_nor_append_to_a_conversation(backend, store_factory):
    store = store_factory(backend)
    alice, bob = store.owner_of("sk-alice"), store.owner_of("sk-bob")

    async def scenario(store):
        conv = await store.create_conversation(alice, metadata={"k": "v"}, items=messages("secret"))
        cid = conv["id"]
        item = (await store.conversation_context(alice, cid)).items[0]
        assert await store.get_conversation(bob, cid) is None
        assert await store.update_conversation(bob, cid, {"k": "bob"}) is None
        assert await store.delete_conversation(bob, cid) is False
        assert await store.append_conversation_items(bob, cid, messages("bob was here")) is None
        assert await store.conversation_context(bob, cid) is None
        assert await store.list_conversation_items(bob, cid) is None
        assert await store.get_conversation_item(bob, cid, item["id"]) is None
        assert await store.delete_conversation_item(bob, cid, item["id"]) is None
        assert await store.get_items(bob, [item["id"]]) == {}
        assert await store.get_conversation(alice, cid) == conv
        assert (await store.conversation_context(alice, cid)).items == [item]

    run(store, scenario)


def test_a_response_built_on_a_conversation_chains_with_what_it_saw(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")

    def response(n: int, **built_on) -> NewResponse:
        rid = new_id("resp")
        out = [{"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": f"answer {n}", "annotations": []}]}]
        return NewResponse(rid, orjson.dumps({"id": rid}), prepare_items(f"question {n}"), out, **built_on)

    async def scenario(store):
        conv = await store.create_conversation(owner, items=messages("hello", "hi there"))
        cid = conv["id"]
        ctx = await store.conversation_context(owner, cid)
        r = response(1, conversation=ctx)
        await store.put_response(owner, r)
        await store.append_conversation_items(owner, cid, r.input_items + r.output_items)
        await store.append_conversation_items(owner, cid, messages("later, elsewhere"))
        seen = ctx.items + r.input_items + r.output_items
        assert (await store.get_history(owner, r.id)).items == seen
        r2 = response(2, previous=await store.get_history(owner, r.id))
        await store.put_response(owner, r2)
        assert (await store.get_history(owner, r2.id)).items == seen + r2.input_items + r2.output_items
        # a conversation deleted under a response built on it while that was generated: copied
        late_ctx = await store.conversation_context(owner, cid)
        await store.delete_conversation(owner, cid)
        r3 = response(3, conversation=late_ctx)
        await store.put_response(owner, r3)
        assert (await store.get_history(owner, r3.id)).items == late_ctx.items + r3.input_items + r3.output_items
        # … but one deleted later leaves its responses' history incomplete, and says so
        with pytest.raises(HistoryIncomplete) as caught:
            await store.get_history(owner, r2.id)
        assert caught.value.conversation_id == cid  # (the client's doing: the edge answers a 400)

    run(store, scenario)


def _append_batches(described: tuple, cid: str, worker: int, batches: int, start) -> None:
    """A second process appending ``batches`` batches of 5 items to the conversation."""

    async def work(store):
        owner = store.owner_of("sk-alice")
        start.wait(30)
        for b in range(batches):
            batch = [{"id": f"msg_w{worker}_b{b}_i{i}", "role": "user", "content": f"{worker}/{b}/{i}"} for i in range(5)]
            assert await store.append_conversation_items(owner, cid, batch) is not None

    run(from_spec(described), work)


def test_two_processes_appending_at_once_lose_nothing_and_keep_each_batch_contiguous(backend, store_factory):
    store = store_factory(backend)
    owner = store.owner_of("sk-alice")
    cid = run(store, lambda s: s.create_conversation(owner))["id"]
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    workers = [
        ctx.Process(target=_append_batches, args=(spec(store), cid, w, 40, start)) for w in range(2)
    ]
    for w in workers:
        w.start()
    try:
        for w in workers:
            w.join(120)
            assert w.exitcode == 0
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
    items = run(store_factory(backend), lambda s: s.conversation_context(owner, cid)).items
    ids = [i["id"] for i in items]
    assert len(ids) == 2 * 40 * 5 and len(set(ids)) == len(ids)
    for k in range(0, len(ids), 5):  # every batch is five neighbours, in order
        head = ids[k].rsplit("_i", 1)[0]
        assert ids[k : k + 5] == [f"{head}_i{i}" for i in range(5)]
