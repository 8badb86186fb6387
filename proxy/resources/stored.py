"""Stored responses: ``GET``/``DELETE /v1/responses/{id}``, ``…/{id}/input_items``, ``…/{id}/cancel``,
and a background response's events again (``GET …/{id}?stream=true&starting_after=N``).

Thin over the store: the key names the owner, the store answers for that owner
only, and a foreign id is a missing id (404, never 403: ids leak nothing).
``GET`` answers the stored bytes as they are — the same JSON the client got.
Without a store (``RESPONSE_STORE_URL=none``) every id is unknown, and the 404
says why.

A cancel is answered as OpenAI answers it: a response already ``cancelled`` is returned unchanged
(idempotent), one that ended otherwise is a 400 ``Cannot cancel a completed response.`` (so a
cancel that lost the race with the job's end says so, rather than answering a ``completed``
Response as if it had cancelled it), and one created without ``background`` is a 400 ``Cannot
cancel a synchronous response.``
"""
from __future__ import annotations

import falcon
import falcon.asgi
import orjson

from ..background import Jobs, bodies, control
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

# OpenAI's refusals, word for word (the incomplete one follows their pattern: not seen verbatim).
_ENDED = {
    "completed": "Cannot cancel a completed response.",
    "failed": "Cannot cancel a failed response.",
    "incomplete": "Cannot cancel an incomplete response.",
}
_NOT_BACKGROUND = {
    "cancel": ("Cannot cancel a synchronous response.", "response_id"),
    "stream": ("This response cannot be streamed because it was not created with background=true.", "stream"),
}
# Past any sequence number a log can hold (the store's object bound keeps it to far fewer events),
# and exact as a Lua number: a larger N (SQLite refuses one past 2**63) is "after the last event" too.
MAX_STARTING_AFTER = 2**53 - 2


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
            raise await self._not_background(store, owner, response_id, "cancel")
        body, cancelled = found
        refusal = None if cancelled else _ENDED.get(bodies.parse(body).get("status", ""))
        if refusal is not None:
            raise invalid_request(refusal, "response_id")
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body

    async def _cancel(self, store: Store, owner: str, response_id: str) -> tuple[bytes, bool] | None:
        """The Response after a cancel and whether this call cancelled it (False: it had ended, and
        is unchanged); None: not a background one."""
        found = await control.cancel(store, owner, response_id)
        if found is not None and found[1]:
            self._rt.metrics.background_job("cancelled")
            if self._jobs is not None:
                self._jobs.stop(response_id, "cancelled")  # running here: stop it now
        return found

    async def _stream_again(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, store: Store, owner: str, response_id: str
    ) -> None:
        """``?stream=true[&starting_after=N]``: a background response's events after N, then live."""
        after = _starting_after(req.get_param("starting_after"))
        page = await store.read_events(owner, response_id, after)
        if page is None:
            raise await self._not_background(store, owner, response_id, "stream")
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

    async def _not_background(self, store: Store, owner: str, response_id: str, route: str) -> ProxyError:
        """A stored response with no job: it was not created in the background (else unknown: 404)."""
        if await store.get_response(owner, response_id) is None:
            return not_found(response_id)
        return invalid_request(*_NOT_BACKGROUND[route])


def _flag(req: falcon.asgi.Request, name: str) -> bool:
    value = req.get_param(name)
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise invalid_request(f"Invalid '{name}': expected true or false, got {value[:32]!r}.", name)


def _starting_after(value: str | None) -> int:
    """The sequence number to resume after (absent: every event, from ``response.created``; past
    ``MAX_STARTING_AFTER``: that, which no log reaches)."""
    if value is None or value == "":
        return -1
    after = query_int(value)
    if after is None:
        raise invalid_request(
            f"Invalid 'starting_after': expected a sequence number (an integer of 0 or more), got {value[:32]!r}.",
            "starting_after",
        )
    return min(after, MAX_STARTING_AFTER)
