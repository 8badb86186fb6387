"""Stored responses: ``GET``/``DELETE /v1/responses/{id}``, ``…/{id}/input_items``, ``…/{id}/cancel``,
and a background response's events again (``GET …/{id}?stream=true&starting_after=N``).

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

from ..background import Jobs, control
from ..background.replay import replay
from ..errors import ProxyError, invalid_request
from ..runtime import Runtime
from ..store import Store
from ..store.shapes import item_list, list_params, query_int, response_deleted
from .auth import client_key
from .background import SSE_HEADERS
from .sse_body import ClosingStream

# OpenAI endpoints that share the /v1/responses/{id} shape but are not ids.
_OTHER_ENDPOINTS = frozenset({"input_tokens"})


def not_found(response_id: str, stateless: bool = False) -> ProxyError:
    why = " (this proxy runs without a store: RESPONSE_STORE_URL=none)" if stateless else ""
    return ProxyError(
        404, f"No response found with id '{response_id[:256]}'{why}.", param="response_id", code="not_found"
    )


class StoredResponseResource:
    def __init__(self, runtime: Runtime, jobs: Jobs | None = None) -> None:
        self._rt = runtime
        self._jobs = jobs

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
        if _flag(req, "stream"):
            await self._stream_again(req, resp, store, owner, response_id)
            return
        body = await store.get_response(owner, response_id)
        if body is None:
            raise not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        store, owner = self._owned(req, response_id)
        if self._jobs is not None:  # a running background response is cancelled first: nobody could fetch it
            await self._cancel(store, owner, response_id)
        if not await store.delete_response(owner, response_id):
            raise not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(response_deleted(response_id))

    async def on_get_input_items(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        store, owner = self._owned(req, response_id)
        p = list_params(req.get_param("limit"), req.get_param("order"), req.get_param("after"))
        page = await store.list_input_items(owner, response_id, limit=p.limit, order=p.order, after=p.after)
        if page is None:
            raise not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(item_list(page))

    async def on_post_cancel(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str) -> None:
        store, owner = self._owned(req, response_id)
        found = await self._cancel(store, owner, response_id)
        if found is None:
            raise await self._not_background(store, owner, response_id, "cancelled")
        resp.content_type = falcon.MEDIA_JSON
        resp.data = found

    async def _cancel(self, store: Store, owner: str, response_id: str) -> bytes | None:
        """The Response after a cancel (unchanged if it had ended); None: not a background one."""
        found = await control.cancel(store, owner, response_id)
        if found is None:
            return None
        body, cancelled = found
        if cancelled:
            self._rt.metrics.background_job("cancelled")
            if self._jobs is not None:
                self._jobs.stop(response_id, "cancelled")  # running here: stop it now
        return body

    async def _stream_again(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, store: Store, owner: str, response_id: str
    ) -> None:
        """``?stream=true[&starting_after=N]``: a background response's events after N, then live."""
        after = _starting_after(req.get_param("starting_after"))
        page = await store.read_events(owner, response_id, after)
        if page is None:
            raise await self._not_background(store, owner, response_id, "streamed")
        if not page.logged:
            raise invalid_request(
                f"Response '{response_id[:256]}' was created without stream=true, so its events were not "
                "kept; retrieve it without stream.",
                "stream",
            )
        resp.content_type = "text/event-stream"
        resp.set_headers(SSE_HEADERS)
        events = replay(store, owner, response_id, page, after, keepalive_secs=self._rt.settings.keepalive_secs)
        # Falcon types `stream` as an iterator or a readable; it calls close() on either.
        resp.stream = ClosingStream(events)  # type: ignore[assignment]  # an async iterator Falcon closes

    async def _not_background(self, store: Store, owner: str, response_id: str, verb: str) -> ProxyError:
        if await store.get_response(owner, response_id) is None:
            return not_found(response_id)
        return invalid_request(
            f"Response '{response_id[:256]}' was not created with background=true: only background "
            f"responses can be {verb}.",
            "response_id",
        )


def _flag(req: falcon.asgi.Request, name: str) -> bool:
    value = req.get_param(name)
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise invalid_request(f"Invalid '{name}': expected true or false, got {value[:32]!r}.", name)


def _starting_after(value: str | None) -> int:
    """The sequence number to resume after (absent: every event, from ``response.created``)."""
    if value is None or value == "":
        return -1
    after = query_int(value)
    if after is None:
        raise invalid_request(
            f"Invalid 'starting_after': expected a sequence number (an integer of 0 or more), got {value[:32]!r}.",
            "starting_after",
        )
    return after
