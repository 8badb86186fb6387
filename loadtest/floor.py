"""The floor: the least Responses-to-Chat bridge this stack allows, to measure the proxy against.

Falcon ASGI under the same gunicorn + Uvicorn worker class as the proxy
(``proxy.worker.Worker``), one pooled upstream call over the same httpx +
aiohttp transport, orjson; no validation, no state machine, no store, no
breaker, no metrics, no logging. JSON: the chat answer's text (and tool
calls) wrapped in a minimal Responses-shaped object. Stream: each upstream
chunk's deltas re-wrapped as minimal events, then ``response.completed`` and
``[DONE]`` (what the bench's success check needs). It is not a proxy anyone
should deploy: it is what any proxy on this stack costs at least.

Started by ``loadtest/bench.py`` (``--floor``)::

    FLOOR_BACKEND_URL=http://127.0.0.1:9100/v1 gunicorn -k proxy.worker.Worker -w 2 \\
        -b 127.0.0.1:8383 loadtest.floor:app
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import falcon
import falcon.asgi
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

URL = os.environ.get("FLOOR_BACKEND_URL", "http://127.0.0.1:9100/v1") + "/chat/completions"


class _Client:
    """The worker's pool, opened at lifespan startup (it needs the running loop)."""

    http: httpx.AsyncClient

    async def process_startup(self, scope: dict, event: dict) -> None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, limit_per_host=1024, keepalive_timeout=4.0),
            auto_decompress=False, trust_env=False,
        )
        self.http = httpx.AsyncClient(transport=AiohttpTransport(client=session), timeout=60.0, trust_env=False)

    async def process_shutdown(self, scope: dict, event: dict) -> None:
        await self.http.aclose()


def _chat(body: dict[str, Any]) -> dict[str, Any]:
    text = body["input"] if isinstance(body["input"], str) else orjson.dumps(body["input"]).decode()
    chat: dict[str, Any] = {"model": body["model"], "messages": [{"role": "user", "content": text}],
                            "stream": bool(body.get("stream"))}
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        chat["tools"] = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
                         for t in body["tools"]]
    return chat


def _event(kind: str, data: dict[str, Any]) -> bytes:
    data["type"] = kind
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Responses:
    def __init__(self, client: _Client) -> None:
        self._client = client

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = orjson.loads(await req.stream.read())
        chat = _chat(body)
        http = self._client.http
        upstream = await http.send(
            http.build_request("POST", URL, content=orjson.dumps(chat), headers={
                "authorization": req.get_header("Authorization") or "", "content-type": "application/json"}),
            stream=True,
        )
        if not chat["stream"]:
            doc = orjson.loads(await upstream.aread())
            await upstream.aclose()
            message = doc["choices"][0]["message"]
            text = message.get("content") or ""
            output: list[dict[str, Any]] = [{"type": "message", "role": "assistant", "status": "completed",
                                             "content": [{"type": "output_text", "text": text}]}]
            output += [{"type": "function_call", "call_id": c["id"], "name": c["function"]["name"],
                        "arguments": c["function"]["arguments"]} for c in message.get("tool_calls") or ()]
            resp.data = orjson.dumps({"id": "resp_floor", "object": "response", "status": "completed",
                                      "model": body["model"], "output": output, "usage": doc.get("usage")})
            resp.content_type = falcon.MEDIA_JSON
            return
        resp.content_type = "text/event-stream"
        resp.stream = _events(upstream, body["model"])


async def _events(upstream: httpx.Response, model: str) -> AsyncIterator[bytes]:
    try:
        yield _event("response.created", {"response": {"id": "resp_floor", "status": "in_progress", "model": model}})
        rest = b""
        async for data in upstream.aiter_bytes():
            *blocks, rest = (rest + data).split(b"\n\n")
            out = []
            for block in blocks:
                payload = block[6:]  # "data: "
                if not payload or payload == b"[DONE]":
                    continue
                for choice in orjson.loads(payload).get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        out.append(_event("response.output_text.delta", {"delta": delta["content"]}))
                    if delta.get("reasoning_content"):
                        out.append(_event("response.reasoning_text.delta", {"delta": delta["reasoning_content"]}))
                    for call in delta.get("tool_calls") or ():
                        out.append(_event("response.function_call_arguments.delta",
                                          {"delta": (call.get("function") or {}).get("arguments") or ""}))
            if out:
                yield b"".join(out)
        yield _event("response.completed", {"response": {"id": "resp_floor", "status": "completed"}})
        yield b"data: [DONE]\n\n"
    finally:
        await upstream.aclose()


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.data = b'{"status":"ok"}'


_client = _Client()
app = falcon.asgi.App(middleware=[_client])
app.add_route("/v1/responses", Responses(_client))
app.add_route("/health", Health())
