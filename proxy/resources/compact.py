"""Compaction at the edge: ``POST /v1/responses/compact`` and Codex's ``compaction_trigger``.

Both ask the backend one question — summarize this conversation — through an
ordinary ``Exchange`` (breaker, pool, deadline, failure taxonomy as any JSON
request), with the configured prompt (``COMPACTION_PROMPT``/``_FILE``, else
``proxy.translate.compaction.DEFAULT_PROMPT``) as the last user message and no
tools offered, then wrap the answer (``proxy.translate.compaction``):

- ``/responses/compact`` answers the SDK's ``CompactedResponse``: the
  conversation's user messages, then one ``compaction`` item, and the usage;
- a request whose last input is a ``compaction_trigger`` answers an ordinary
  Response (JSON, SSE, or WebSocket frames) whose single output is that item.

The summary is asked for before anything is sent, so a failure is answered like
any request that failed before its first byte (HTTP status, or a WebSocket
protocol error). ``previous_response_id`` and item references, on ``/compact`` and on
a trigger request, are resolved like any other (``proxy.state.stand``); a trigger's
response is stored like any other (unless ``store: false``), and a chain from it
stands on the conversation compacted: its user messages, then the compaction item.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
import orjson

from ..errors import invalid_request
from ..failures import Cause, Failure
from ..runtime import Runtime
from ..settings import Settings
from ..state import Standing, stand
from ..store import History, Store
from ..translate import compaction as cmp
from ..translate import validate as v
from ..translate.context import ResponseContext
from ..translate.history import input_items
from ..translate.request import translate_request
from ..translate.shapes import Usage
from ..translate.sse import DONE, encode_events
from .auth import upstream_key
from .responses import _SSE_HEADERS, _fail_request, _upstream_headers, read_request
from .scope import RequestScope

Watch = Callable[[], "asyncio.Future[None]"]


class Compaction:
    """Summaries from the backend, for every transport (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    @property
    def settings(self) -> Settings:
        return self._rt.settings

    @property
    def store(self) -> Store | None:
        return self._rt.store

    @property
    def prompt(self) -> str:
        return self._rt.settings.compaction_prompt or cmp.DEFAULT_PROMPT

    async def summarize(
        self, body: dict[str, Any], *, key: str, headers: dict[str, str], watch: Watch, stored_items: int = 0
    ) -> tuple[str, Usage | None]:
        """(summary, usage) of ``body``'s conversation. Raises ``ProxyError`` for bad input,
        ``Failure`` when the backend did not give a usable summary. ``watch()`` starts watching
        for the client to leave (called once the request is known to be valid)."""
        rt = self._rt
        chat, ctx = translate_request(cmp.summary_request(body, self.prompt), rt.policy, stored_items=stored_items)
        exchange = rt.exchange(
            chat=chat, ctx=ctx, headers=headers, secret=key, disconnected=watch(), emit_events=False
        )
        response = await exchange.run_to_end()
        summary = cmp.summary_of(response)
        if not summary:
            raise Failure(
                Cause.BACKEND_FAILED, "The backend answered the compaction request with no summary.",
                "empty_summary", kind="malformed",
            )
        return summary, response["usage"]

    async def answer_trigger(
        self, standing: Standing, *, key: str, headers: dict[str, str], watch: Watch
    ) -> tuple[ResponseContext, dict[str, Any], History]:
        """A request ending with a ``compaction_trigger``: its context, its finished Response, and
        what a chain from that stands on (``Standing.compacted``). Unless it said ``store: false``,
        the Response is stored as any other before it is sent — its input items (the trigger is
        none) and its one output, the ``compaction`` item — standing on that compacted history,
        and appended to its conversation, if it has one."""
        stripped = cmp.split_trigger(standing.body)
        assert stripped is not None, "answer_trigger needs a request ending with a compaction_trigger"
        # The request itself is validated and echoed as any other (its tools too);
        # only the summarizing call goes without them.
        stored = len(standing.context)
        _, ctx = translate_request(
            stripped, self._rt.policy,
            previous_response_id=standing.previous_response_id, conversation_id=standing.conversation_id,
            stored_items=stored,
        )
        standing.prepare(trigger=True)
        summary, usage = await self.summarize(stripped, key=key, headers=headers, watch=watch, stored_items=stored)
        item = cmp.compaction_item(summary)
        final = cmp.trigger_response(cmp.in_progress(ctx), item, usage, int(time.time()))
        window = standing.compacted(final)
        await standing.remember(final, window.items)
        return ctx, final, window

    async def respond_http(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, meta: RequestScope, body: dict, key: str
    ) -> None:
        """``POST /v1/responses`` ending with a ``compaction_trigger``: JSON, or SSE when ``stream`` is set.
        What it names in the store (``previous_response_id``, item references) is read first, as
        for any request, so the summary is of the whole conversation."""
        settings = self._rt.settings
        standing = await stand(self.store, key, body, request_id=meta.request_id)
        secret = upstream_key(key, settings)
        headers = _upstream_headers(req, secret, meta.request_id, settings.forward_headers)
        try:
            ctx, final, _ = await self.answer_trigger(
                standing, key=secret, headers=headers, watch=meta.watch_disconnect
            )
        except Failure as failure:
            _fail_request(meta, resp, failure, secret)
            return
        meta.model = ctx.model
        meta.status = final["status"]
        if not ctx.stream:
            resp.content_type = falcon.MEDIA_JSON
            resp.data = standing.stored_body or orjson.dumps(final)  # (what GET answers, byte for byte)
            return
        resp.content_type = "text/event-stream"
        resp.set_headers(_SSE_HEADERS)
        resp.data = encode_events(cmp.trigger_stream(ctx, final)) + DONE


class CompactResource:
    """``POST /v1/responses/compact``."""

    def __init__(self, compaction: Compaction) -> None:
        self._compaction = compaction

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        meta: RequestScope = req.context.meta
        settings = self._compaction.settings
        body, key = await read_request(req, meta, settings)
        v.model_name(body)
        standing = await stand(self._compaction.store, key, body, request_id=meta.request_id, chaining=True)
        body = standing.body
        if body.get("input") is None or not input_items(body):
            raise invalid_request(
                "Nothing to compact: send 'input' (the conversation) and/or 'previous_response_id'.", "input",
                "missing_required_parameter",
            )
        secret = upstream_key(key, settings)
        headers = _upstream_headers(req, secret, meta.request_id, settings.forward_headers)
        try:
            summary, usage = await self._compaction.summarize(
                body, key=secret, headers=headers, watch=meta.watch_disconnect, stored_items=len(standing.context)
            )
        except Failure as failure:
            _fail_request(meta, resp, failure, secret)
            return
        meta.status = "completed"
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(
            cmp.compacted_response(
                items=input_items(body), summary=summary, usage=usage, created_at=int(time.time())
            )
        )
