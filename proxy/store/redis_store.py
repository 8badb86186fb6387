"""``Store`` on Redis, shared by every worker of every instance that names the same server and db.

Each operation is one Lua script (``redis_scripts``) over this worker's own connections
(``redis_link``): atomic, one round trip, its TTLs set in the same step as its data. A write is
on the server when the call returns (no pipeline or queue in between), so any instance reads it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from ..translate.ids import new_id
from . import redis_conversation_scripts as conv_lua
from . import redis_scripts as lua
from .base import (
    DEFAULT_MAX_OBJECT_BYTES,
    DEFAULT_TIMEOUT_SECS,
    DEFAULT_TTL_SECS,
    ConversationContext,
    CursorNotFound,
    DuplicateItem,
    History,
    HistoryIncomplete,
    Item,
    ItemPage,
    NewResponse,
    ObjectTooLarge,
    ResponsePending,
    StoreBase,
    StoreError,
)
from .items import (
    check_page_args,
    decode_arrays,
    decode_objects,
    encode_items,
    encoded_items,
    paginate,
    response_parts,
)
from .redis_jobs import RedisJobs
from .redis_link import RedisLink, Script
from .shapes import conversation

DEFAULT_PREFIX = "rp:"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _refused(reply: list[Any], encoded: Sequence[tuple[str, bytes]], limit: int) -> None:
    """Raise what a conversation script's ``reply`` refused its items for, if it did."""
    if reply[0] == b"too_large":
        raise ObjectTooLarge(int(reply[1]), limit)
    if reply[0] == b"duplicate":
        k = int(reply[1])
        raise DuplicateItem(encoded[k][0], "items", k, held=reply[2] == b"held")


class RedisStore(RedisJobs, StoreBase):
    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        ttl_secs: int = DEFAULT_TTL_SECS,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        timeout_secs: float = DEFAULT_TIMEOUT_SECS,
        owner_secret: bytes | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_connections: int = 64,
    ) -> None:
        super().__init__(ttl_secs, max_object_bytes, owner_secret)
        self.url = url
        self.prefix = prefix
        self._link = RedisLink(url, timeout_secs, max_connections)
        self._init_jobs(url, timeout_secs)

    async def _run(self, script: Script, owner: str, *args: Any) -> Any:
        return await self._link.run(script, self.prefix, owner, *args)

    # ------------------------------------------------------------------ responses

    async def put_response(self, owner: str, response: NewResponse) -> None:
        compacted = "1" if response.window is not None else ""
        await self._put(owner, response, lua.PUT_RESPONSE, (compacted,), lambda reply: reply == 0)

    async def _put(
        self, owner: str, response: NewResponse, script: Script, tail: Sequence[Any], vanished: Callable[[Any], bool]
    ) -> Any:
        """Run a script that stores ``response`` (``put_response`` in Lua, then ``tail``'s args);
        if what it was built on vanished meanwhile, run it again with the history it saw, copied."""
        blob, ids, size, window = response_parts(response)  # (a compaction's window: its ``:s``)
        self._check_size(size)
        prev, conv = response.previous, response.conversation
        args = [
            response.id, response.body, blob, len(response.input_items), orjson.dumps(ids), self._ttl_ms,
            prev.response_id if prev else "", conv.conversation_id if conv else "", conv.seq if conv else 0,
        ]
        reply = await self._run(script, owner, *args, window or b"", *tail)
        if not vanished(reply):
            return reply
        snapshot = encode_items(prev.items if prev else conv.items if conv else [])
        self._check_size(size + len(snapshot))
        args[6:9] = ["", "", 0]
        reply = await self._run(script, owner, *args, snapshot, *tail)
        if vanished(reply):
            raise StoreError(f"could not store response {response.id}")
        return reply

    async def get_response(self, owner: str, response_id: str) -> bytes | None:
        found = await self._run(lua.READ_RESPONSE, owner, response_id, "b")
        return None if found is None else found[0]

    async def get_history(self, owner: str, response_id: str) -> History | None:
        found = await self._run(lua.HISTORY, owner, response_id)
        if found is None:
            return None
        if found[0] == b"pending":
            raise ResponsePending(response_id)
        if found[0] != b"ok":
            raise HistoryIncomplete(response_id, _text(found[1]), _text(found[2]) if len(found) > 2 else None)
        n_conv = int(found[1])  # conversation items (objects) first, then stored arrays
        items = decode_objects(found[2 : 2 + n_conv]) if n_conv else []
        return History(response_id, items + decode_arrays(found[2 + n_conv :]))

    async def delete_response(self, owner: str, response_id: str) -> bool:
        return bool(await self._run(lua.DELETE_RESPONSE, owner, response_id))

    async def list_input_items(
        self, owner: str, response_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> ItemPage | None:
        check_page_args(limit, order)
        found = await self._run(lua.READ_RESPONSE, owner, response_id, "d", "n")
        if found is None or found[0] is None:  # (its chain's hash evicted: nothing to list)
            return None
        return paginate(decode_arrays([found[0]])[: int(found[1])], limit, order, after)

    async def get_items(self, owner: str, item_ids: Sequence[str]) -> dict[str, Item]:
        if not item_ids:
            return {}
        flat = await self._run(lua.GET_ITEMS, owner, *item_ids)
        found: dict[str, Item] = {}
        decoded: dict[bytes, list[Item]] = {}
        for i in range(0, len(flat), 4):
            item_id, pos, where, data = flat[i : i + 4]
            if pos == b"-1":
                found[_text(item_id)] = orjson.loads(data)
                continue
            if data:
                decoded[where] = decode_arrays([data])
            items = decoded[where]
            if int(pos) < len(items):
                found[_text(item_id)] = items[int(pos)]
        return found

    # ------------------------------------------------------------------ conversations

    async def create_conversation(
        self, owner: str, *, metadata: dict[str, str] | None = None, items: Sequence[Item] = ()
    ) -> dict[str, Any]:
        _, encoded, size = encoded_items(items, "items")
        self._check_size(size)
        conv_id, created_at, meta = new_id("conv"), int(time.time()), metadata or {}
        pairs = [part for pair in encoded for part in pair]
        done = await self._run(
            conv_lua.CREATE_CONVERSATION, owner, conv_id, created_at, orjson.dumps(meta), self._ttl_ms,
            self.max_object_bytes, *pairs,
        )
        _refused(done, encoded, self.max_object_bytes)
        return conversation(conv_id, created_at, meta)

    async def get_conversation(self, owner: str, conversation_id: str) -> dict[str, Any] | None:
        found = await self._run(conv_lua.GET_CONVERSATION, owner, conversation_id)
        return None if found is None else conversation(conversation_id, int(found[0]), orjson.loads(found[1]))

    async def update_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> dict[str, Any] | None:
        meta = orjson.dumps(metadata)
        found = await self._run(conv_lua.UPDATE_CONVERSATION, owner, conversation_id, meta, self._ttl_ms)
        return None if found is None else conversation(conversation_id, int(found[0]), orjson.loads(found[1]))

    async def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        return bool(await self._run(conv_lua.DELETE_CONVERSATION, owner, conversation_id))

    async def append_conversation_items(
        self, owner: str, conversation_id: str, items: Sequence[Item], *, skip_held: bool = False
    ) -> list[Item] | None:
        prepared, encoded, size = encoded_items(items, "items")
        self._check_size(size)
        pairs = [part for pair in encoded for part in pair]
        done = await self._run(
            conv_lua.APPEND_ITEMS, owner, conversation_id, self._ttl_ms, self.max_object_bytes,
            "1" if skip_held else "0", *pairs,
        )
        if done[0] == b"missing":
            return None
        _refused(done, encoded, self.max_object_bytes)
        return [prepared[int(k)] for k in done[1:]]

    async def conversation_context(self, owner: str, conversation_id: str) -> ConversationContext | None:
        found = await self._run(conv_lua.CONVERSATION_CONTEXT, owner, conversation_id)
        if found is None:
            return None
        bodies = found[1:]
        return ConversationContext(conversation_id, decode_objects(bodies), int(found[0]), sum(map(len, bodies)))

    async def list_conversation_items(
        self, owner: str, conversation_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> ItemPage | None:
        check_page_args(limit, order)
        found = await self._run(conv_lua.LIST_ITEMS, owner, conversation_id, limit, order, after or "")
        if found is None:
            return None
        if found[0] == b"after":
            raise CursorNotFound(after or "")
        return ItemPage(decode_objects(found[1:]), found[0] == b"1")

    async def get_conversation_item(self, owner: str, conversation_id: str, item_id: str) -> Item | None:
        found = await self._run(conv_lua.GET_ITEM, owner, conversation_id, item_id)
        return None if found is None else orjson.loads(found)

    async def delete_conversation_item(
        self, owner: str, conversation_id: str, item_id: str
    ) -> dict[str, Any] | None:
        found = await self._run(conv_lua.DELETE_ITEM, owner, conversation_id, item_id, self._ttl_ms)
        return None if found is None else conversation(conversation_id, int(found[0]), orjson.loads(found[1]))

    async def aclose(self) -> None:
        await self._link.aclose()
        await self._close_jobs()
