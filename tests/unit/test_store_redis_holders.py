"""The Redis key of an item's holders (``P ix:O:<item id>``, ``redis_lua``) on a real redis-server:
its TTL is its longest-lived holder's, and the one-holder pointers the code before it wrote
(``P i:O:<item id>``) stay readable and are removed with their holder, so items stored before an
upgrade — or by the old workers still running during a rolling one — stay referenceable.

What the old code wrote for a response or a conversation is what this code writes, but for the
item pointer: so the old state is made by storing with this code and then swapping its ``ix:``
entries for the pointer the old code set (``SET i:… <pos>:<response id> | c:<conversation id>``,
with the holder's expiry)."""
from __future__ import annotations

import asyncio
import time

import pytest

from proxy.store import prepare_items
from proxy.store.redis_store import RedisStore
from tests.store_kit import redis_client, run
from tests.unit.test_store_item_holders import response


def key(store: RedisStore, kind: str, owner: str, item_id: str) -> str:
    return f"{store.prefix}{kind}:{owner}:{item_id}"


def as_old_code_stored(store: RedisStore, owner: str, item_id: str, holder: str, expires_ms: int) -> None:
    """Replace the item's ``ix:`` entries with the pointer the code before them wrote."""
    with redis_client(store) as client:
        assert client.delete(key(store, "ix", owner, item_id)) == 1
        client.set(key(store, "i", owner, item_id), holder, pxat=expires_ms)


def expiry(store: RedisStore, kind: str, owner: str, item_id: str) -> int:
    with redis_client(store) as client:
        return client.pexpiretime(key(store, kind, owner, item_id))


def test_items_pointed_at_by_the_code_before_are_found_and_their_pointer_goes_with_the_holder(store_factory):
    store = store_factory("redis")
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        a = response(prepare_items("stored before the upgrade"))
        await store.put_response(owner, a)
        x, out = a.input_items[0], a.output_items[0]
        until = expiry(store, "r", owner, a.id)
        as_old_code_stored(store, owner, x["id"], f"0:{a.id}", until)
        as_old_code_stored(store, owner, out["id"], f"1:{a.id}", until)
        cid = (await store.create_conversation(owner, items=[{"role": "user", "content": "in the conversation"}]))["id"]
        [conv_item] = (await store.conversation_context(owner, cid)).items
        as_old_code_stored(store, owner, conv_item["id"], f"c:{cid}", expiry(store, "ix", owner, conv_item["id"]))
        wanted = [x["id"], out["id"], conv_item["id"]]
        assert await store.get_items(owner, wanted) == {x["id"]: x, out["id"]: out, conv_item["id"]: conv_item}
        assert await store.get_items(store.owner_of("sk-bob"), wanted) == {}

        b = response([x], "stored again after the upgrade")  # the newer holder, in ix:
        await store.put_response(owner, b)
        assert await store.delete_response(owner, b.id)
        assert expiry(store, "i", owner, x["id"]) == until  # not b's: left as it was
        assert await store.get_items(owner, [x["id"]]) == {x["id"]: x}  # found through the old pointer

        assert await store.delete_response(owner, a.id)
        assert expiry(store, "i", owner, x["id"]) == -2 and expiry(store, "i", owner, out["id"]) == -2
        assert await store.delete_conversation_item(owner, cid, conv_item["id"]) is not None
        assert expiry(store, "i", owner, conv_item["id"]) == -2
        assert await store.get_items(owner, wanted) == {}

    run(store, scenario)


def test_a_deleted_conversation_takes_the_old_pointers_to_it(store_factory):
    store = store_factory("redis")
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        cid = (await store.create_conversation(owner, items=[{"role": "user", "content": "old"}]))["id"]
        [item] = (await store.conversation_context(owner, cid)).items
        as_old_code_stored(store, owner, item["id"], f"c:{cid}", expiry(store, "c", owner, cid))
        assert await store.get_items(owner, [item["id"]]) == {item["id"]: item}
        assert await store.delete_conversation(owner, cid)
        assert expiry(store, "i", owner, item["id"]) == -2
        assert await store.get_items(owner, [item["id"]]) == {}

    run(store, scenario)


def test_the_holders_key_lives_as_long_as_its_longest_lived_holder(store_factory):
    store = store_factory("redis", ttl_secs=600)
    brief = store_factory("redis", ttl_secs=60)  # (the same key prefix)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        try:
            a = response(prepare_items("long-lived"))
            await store.put_response(owner, a)
            x = a.input_items[0]
            long = expiry(store, "r", owner, a.id)
            assert expiry(store, "ix", owner, x["id"]) == long
            await brief.put_response(owner, response([x]))  # a shorter-lived holder never shortens it
            assert expiry(store, "ix", owner, x["id"]) == long
            b = response(prepare_items("short-lived first"))
            await brief.put_response(owner, b)
            y = b.input_items[0]
            short = expiry(store, "ix", owner, y["id"])
            assert 0 < short < long
            c = response([y])
            await store.put_response(owner, c)  # … a longer-lived one extends it
            assert expiry(store, "ix", owner, y["id"]) == expiry(store, "r", owner, c.id) > short
        finally:
            await brief.aclose()

    run(store, scenario)


@pytest.mark.slow
def test_a_conversation_renews_the_old_pointers_of_its_items_as_its_own_holders(store_factory):
    """A conversation's item pointers are renewed once per TTL (``touch_conv``), the old code's
    ones too: an item appended before the upgrade stays referenceable while its conversation is."""
    store = store_factory("redis", ttl_secs=2)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        cid = (await store.create_conversation(owner, items=[{"role": "user", "content": "old"}]))["id"]
        [old] = (await store.conversation_context(owner, cid)).items
        kept = expiry(store, "ix", owner, old["id"])
        as_old_code_stored(store, owner, old["id"], f"c:{cid}", kept)
        await store.append_conversation_items(owner, cid, [{"role": "user", "content": "new"}])
        [_, new] = (await store.conversation_context(owner, cid)).items
        for _ in range(3):  # written to within its TTL, past the pointers' first renewal
            await asyncio.sleep(0.9)
            await store.update_conversation(owner, cid, {"n": "1"})
        assert expiry(store, "i", owner, old["id"]) > kept
        assert expiry(store, "i", owner, old["id"]) == expiry(store, "ix", owner, new["id"])
        await asyncio.sleep(max(0.0, (kept + 300) / 1000 - time.time()))
        found = await store.get_items(owner, [old["id"], new["id"]])
        assert found == {old["id"]: old, new["id"]: new}

    run(store, scenario)


@pytest.mark.slow
def test_an_item_stored_again_and_again_keeps_about_its_live_holders_only(store_factory):
    """Expired holders leave their member behind (nothing deletes it) while a longer-lived holder
    keeps the key: the next holders stored drop them, two at a time, so a conversation item that
    every turn stores again does not grow a set of dead responses."""
    store = store_factory("redis")
    brief = store_factory("redis", ttl_secs=1)  # (the same key prefix)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        try:
            cid = (await store.create_conversation(owner, items=prepare_items("kept")))["id"]
            [x] = (await store.conversation_context(owner, cid)).items
            for _ in range(3):
                await brief.put_response(owner, response([x]))
            with redis_client(store) as client:
                assert client.zcard(key(store, "ix", owner, x["id"])) == 4
                await asyncio.sleep(1.3)  # the three responses expired, the conversation holds on
                last = response([x])
                await brief.put_response(owner, last)
                members = {m.decode() for m in client.zrange(key(store, "ix", owner, x["id"]), 0, -1)}
                assert len(members) == 3 and {f"c:{cid}", f"0:{last.id}"} <= members
                await brief.put_response(owner, response([x]))
                assert client.zcard(key(store, "ix", owner, x["id"])) == 3  # c, last, and the new one
            assert await store.get_items(owner, [x["id"]]) == {x["id"]: x}
        finally:
            await brief.aclose()

    run(store, scenario)
