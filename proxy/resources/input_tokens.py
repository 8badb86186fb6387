"""``POST /v1/responses/input_tokens``: how many input tokens a Responses request would use.

What the openai SDK's ``client.responses.input_tokens.count(...)`` calls. A chat backend has
no portable way to count without generating (vLLM's and llama.cpp's ``/tokenize`` differ, most
hosted backends have none), so the count is the backend's own answer to the same request cut
to one output token: ``usage.prompt_tokens`` of an ordinary ``Exchange`` (breaker, pool,
deadline, failure taxonomy as any JSON request), counted by the backend's tokenizer and chat
template — exact, where an estimate here would not be. It costs the backend a prefill and one
token (a prefix cache makes the real request after it cheaper); nothing is stored.
``previous_response_id`` and ``conversation`` are resolved from the store as for any request,
so the count covers the whole context the backend would see.
"""
from __future__ import annotations

import falcon
import falcon.asgi
import orjson

from ..failures import Cause, Failure
from ..runtime import Runtime
from ..state import stand
from ..translate import validate as v
from ..translate.context import ResponseContext
from ..translate.request import translate_request
from .auth import upstream_key
from .responses import _fail_request, _upstream_headers, read_request
from .scope import RequestScope

# What a count never asks for: an answer streamed, stored or run in the background.
_NOT_COUNTED = ("stream", "stream_options", "store", "background", "max_output_tokens", "include")


class InputTokensResource:
    """``POST /v1/responses/input_tokens`` (module doc)."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        meta: RequestScope = req.context.meta
        rt = self._rt
        body, key = await read_request(req, meta, rt.settings)
        v.model_name(body)
        for name in _NOT_COUNTED:
            body.pop(name, None)
        standing = await stand(rt.store, key, body, request_id=meta.request_id)
        chat, ctx = translate_request(standing.body, rt.policy, stored_items=len(standing.context))
        chat[rt.policy.max_tokens_field] = 1
        secret = upstream_key(key, rt.settings)
        headers = _upstream_headers(req, secret, meta.request_id, rt.settings.forward_headers)
        try:
            count = await self._count(chat, ctx, secret, headers, meta)
        except Failure as failure:
            _fail_request(meta, resp, failure, secret)
            return
        meta.status = "completed"
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"object": "response.input_tokens", "input_tokens": count})

    async def _count(
        self, chat: dict, ctx: ResponseContext, key: str, headers: dict[str, str], meta: RequestScope
    ) -> int:
        exchange = self._rt.exchange(
            chat=chat, ctx=ctx, headers=headers, secret=key, disconnected=meta.watch_disconnect(), emit_events=False
        )
        await exchange.run_to_end()
        usage = exchange.translator.chat_usage
        count = usage.get("prompt_tokens") if usage is not None else None
        if type(count) is not int:
            raise Failure(
                Cause.BACKEND_FAILED, "The backend reported no prompt token count (usage) to count the input with.",
                "backend_error", kind="malformed",
            )
        return count
