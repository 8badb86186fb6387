"""Stored responses: ``GET``/``DELETE /v1/responses/{id}``, ``…/{id}/input_items``, ``…/{id}/cancel``.

Thin over the store: the key names the owner, the store answers for that owner
only, and a foreign id is a missing id (404, never 403: ids leak nothing).
``GET`` answers the stored bytes as they are — the same JSON the client got.
Without a store (``RESPONSE_STORE_URL=none``) every id is unknown, and the 404
says why.
"""
from __future__ import annotations

import falcon
import falcon.asgi
import orjson

from ..errors import ProxyError, invalid_request
from ..runtime import Runtime
from ..store import Store
from ..store.shapes import item_list, list_params, response_deleted
from .auth import client_key

# OpenAI endpoints that share the /v1/responses/{id} shape but are not ids.
_OTHER_ENDPOINTS = frozenset({"input_tokens"})


def not_found(response_id: str, stateless: bool = False) -> ProxyError:
    why = " (this proxy runs without a store: RESPONSE_STORE_URL=none)" if stateless else ""
    return ProxyError(
        404, f"No response found with id '{response_id[:256]}'{why}.", param="response_id", code="not_found"
    )


class StoredResponseResource:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def _owned(self, req: falcon.asgi.Request, response_id: str) -> tuple[Store, str]:
        """The store and the caller's owner id; 404 when there is no store."""
        key = client_key(req, self._rt.settings)
        store = self._rt.store
        if response_id in _OTHER_ENDPOINTS:
            raise ProxyError(404, f"{req.method} {req.path} is not supported by this proxy.", code="not_found")
        if store is None:
            raise not_found(response_id, stateless=True)
        return store, store.owner_of(key)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        store, owner = self._owned(req, response_id)
        body = await store.get_response(owner, response_id)
        if body is None:
            raise not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        store, owner = self._owned(req, response_id)
        if not await store.delete_response(owner, response_id):
            raise not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(response_deleted(response_id))

    async def on_get_action(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str, action: str
    ) -> None:
        if action != "input_items":
            raise _unknown_path(req)
        store, owner = self._owned(req, response_id)
        p = list_params(req.get_param("limit"), req.get_param("order"), req.get_param("after"))
        page = await store.list_input_items(owner, response_id, limit=p.limit, order=p.order, after=p.after)
        if page is None:
            raise not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(item_list(page))

    async def on_post_action(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str, action: str
    ) -> None:
        if action != "cancel":
            raise _unknown_path(req)
        store, owner = self._owned(req, response_id)
        if await store.get_response(owner, response_id) is None:
            raise not_found(response_id)
        raise invalid_request(
            f"Response '{response_id[:256]}' was not created with background=true: only background "
            "responses can be cancelled.",
            "response_id",
        )


def _unknown_path(req: falcon.asgi.Request) -> ProxyError:
    return ProxyError(404, f"Unknown path: {req.method} {req.path}.", code="not_found")
