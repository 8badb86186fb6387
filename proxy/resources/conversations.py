"""The Conversations API: what ``client.conversations.*`` and the Agents SDK's
``OpenAIConversationsSession`` call.

``POST /v1/conversations`` (optional ``items``, ``metadata``); ``GET``, ``POST``
(metadata update) and ``DELETE /v1/conversations/{id}``; ``POST``/``GET
/v1/conversations/{id}/items``; ``GET``/``DELETE …/items/{item_id}``. Objects
are shaped by ``proxy.store.shapes`` (checked against the openai SDK's types);
ownership as for stored responses: another key's conversation is a missing one.
A response joins a conversation through ``conversation`` on ``POST
/v1/responses`` (``proxy.state``).
"""
from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import orjson

from ..errors import ProxyError, invalid_request
from ..runtime import Runtime
from ..state import with_references
from ..store import Store, prepare_items
from ..store.base import ItemPage
from ..store.items import check_unique, listed, referenced_ids
from ..store.shapes import (
    MAX_ITEMS_PER_CREATE,
    check_metadata,
    conversation_deleted,
    item_list,
    list_params,
)
from ..translate.messages import check_items
from .auth import client_key
from .responses import read_request


def _not_found(conversation_id: str) -> ProxyError:
    return ProxyError(
        404, f"Conversation with id '{conversation_id[:256]}' not found.", param="conversation_id", code="not_found"
    )


def _item_not_found(item_id: str) -> ProxyError:
    return ProxyError(404, f"Item with id '{item_id[:256]}' not found.", param="item_id", code="not_found")


async def _items(store: Store, owner: str, body: dict[str, Any], *, required: bool) -> list[dict[str, Any]]:
    """The items to add, prepared; references (input items like any other) resolved to the stored items."""
    raw = body.get("items")
    if raw is None:
        if required:
            raise invalid_request("Missing required parameter: 'items'.", "items", "missing_required_parameter")
        return []
    if not isinstance(raw, list):
        raise invalid_request("Invalid 'items': expected an array of items.", "items")
    if len(raw) > MAX_ITEMS_PER_CREATE:
        raise invalid_request(
            f"Invalid 'items': at most {MAX_ITEMS_PER_CREATE} items at a time, got {len(raw)}.", "items"
        )
    refs = referenced_ids(raw)
    if refs:
        raw = await with_references(store, owner, raw, refs, "items")
    # Each a later response's input: refused now, as input would be, and by the same checks first
    # (the store's preparation names only what it needs: an id given as 7 was 'items[1]', not '.id').
    check_items(raw, "items")
    items = prepare_items(raw, "items")
    check_unique(items, "items")
    return items


async def _missing(store: Store, owner: str, conversation_id: str, item_id: str) -> ProxyError:
    """Which of the two is not there (looked up only once the item was not found)."""
    if await store.get_conversation(owner, conversation_id) is None:
        return _not_found(conversation_id)
    return _item_not_found(item_id)


def _json(resp: falcon.asgi.Response, doc: Any) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(doc)


class _Base:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def _body_and_owner(self, req: falcon.asgi.Request) -> tuple[dict[str, Any], Store, str]:
        body, key = await read_request(req, req.context.meta, self._rt.settings)
        store, owner = self._owner_of(key)
        return body, store, owner

    def _owner(self, req: falcon.asgi.Request) -> tuple[Store, str]:
        return self._owner_of(client_key(req, self._rt.settings))

    def _owner_of(self, key: str) -> tuple[Store, str]:
        store = self._rt.store
        if store is None:
            raise ProxyError(
                404, "Conversations need a store: this proxy runs with RESPONSE_STORE_URL=none.", code="not_found"
            )
        return store, store.owner_of(key)


class ConversationsResource(_Base):
    """``/v1/conversations`` and ``/v1/conversations/{conversation_id}``."""

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body, store, owner = await self._body_and_owner(req)
        metadata = check_metadata(body.get("metadata"))
        items = await _items(store, owner, body, required=False)
        _json(resp, await store.create_conversation(owner, metadata=metadata, items=items))

    async def on_get_one(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, conversation_id: str) -> None:
        store, owner = self._owner(req)
        found = await store.get_conversation(owner, conversation_id)
        if found is None:
            raise _not_found(conversation_id)
        _json(resp, found)

    async def on_post_one(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, conversation_id: str) -> None:
        body, store, owner = await self._body_and_owner(req)
        if "metadata" not in body:
            raise invalid_request("Missing required parameter: 'metadata'.", "metadata", "missing_required_parameter")
        updated = await store.update_conversation(owner, conversation_id, check_metadata(body["metadata"]))
        if updated is None:
            raise _not_found(conversation_id)
        _json(resp, updated)

    async def on_delete_one(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, conversation_id: str) -> None:
        store, owner = self._owner(req)
        if not await store.delete_conversation(owner, conversation_id):
            raise _not_found(conversation_id)
        _json(resp, conversation_deleted(conversation_id))


class ConversationItemsResource(_Base):
    """``/v1/conversations/{conversation_id}/items`` and ``…/items/{item_id}``."""

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, conversation_id: str) -> None:
        body, store, owner = await self._body_and_owner(req)
        items = await _items(store, owner, body, required=True)
        added = await store.append_conversation_items(owner, conversation_id, items)
        if added is None:
            raise _not_found(conversation_id)
        _json(resp, item_list(ItemPage(added)))

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, conversation_id: str) -> None:
        store, owner = self._owner(req)
        p = list_params(req.get_param("limit"), req.get_param("order"), req.get_param("after"))
        page = await store.list_conversation_items(
            owner, conversation_id, limit=p.limit, order=p.order, after=p.after
        )
        if page is None:
            raise _not_found(conversation_id)
        _json(resp, item_list(page))

    async def on_get_one(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, conversation_id: str, item_id: str
    ) -> None:
        store, owner = self._owner(req)
        item = await store.get_conversation_item(owner, conversation_id, item_id)
        if item is None:
            raise await _missing(store, owner, conversation_id, item_id)
        _json(resp, listed(item))

    async def on_delete_one(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, conversation_id: str, item_id: str
    ) -> None:
        store, owner = self._owner(req)
        conversation = await store.delete_conversation_item(owner, conversation_id, item_id)
        if conversation is None:
            raise await _missing(store, owner, conversation_id, item_id)
        _json(resp, conversation)
