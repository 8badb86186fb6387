"""WebSocket mode: ``GET /v1/responses`` (and ``/responses``) upgraded, on the same app and port.

The handshake is authenticated exactly as ``POST`` is (``client_key``: the
client's key forwarded, or operator mode with ``PROXY_API_KEYS``; the same
``FORWARD_HEADERS`` checks), then ``proxy.resources.ws_connection`` runs the
connection: ``response.create`` frames in, every event of each response out as
one text message, its responses on their lanes (``stream_id``, ``proxy.resources.ws_lanes``).

A refused handshake is accepted and then answered, at the client's first
message, with a protocol ``error`` event carrying the HTTP status and the same
OpenAI-shaped error a ``POST`` gets (401 ``missing_api_key`` / ``invalid_api_key``),
and closed with code 1008 and the error code as the reason. That is the clearest
refusal for every client we serve: a 401 *before* the upgrade reaches the openai
SDK and the Agents SDK (``websockets``) only as "server rejected WebSocket
connection: HTTP 401" — the message is lost — whereas the ``error`` event is what
their WebSocket types parse and print, and Codex maps an ``error`` event's
``status`` exactly as it maps an HTTP status (``codex-api``'s
``responses_websocket.rs``). Waiting for the first message matters to Codex: it
sends its request before reading, and a close that arrived first would hide the
reason behind "failed to send websocket request".
"""
from __future__ import annotations

import asyncio
import logging
import time

import falcon.asgi
from falcon.errors import PayloadTypeError, WebSocketDisconnected

from ..drain import stopping_future
from ..errors import ProxyError
from ..logs import request_completed
from ..runtime import Runtime
from ..translate.ws_frames import encode
from .auth import client_key, upstream_key
from .compact import Compaction
from .responses import ResponsesResource, _upstream_headers
from .scope import new_request_id
from .ws_connection import Connection
from .ws_response import protocol_error

log = logging.getLogger("proxy.websocket")

# How long a refused client has to send its first message before the refusal is sent anyway.
REFUSAL_WAIT_SECS = 10.0


class ResponsesEndpoint:
    """``/v1/responses``: ``POST`` through the HTTP transports, the upgrade through WebSocket mode."""

    def __init__(self, http: ResponsesResource, websocket: WebSocketMode) -> None:
        self._http = http
        self._websocket = websocket

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._http.on_post(req, resp)

    async def on_websocket(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        await self._websocket.serve(req, ws)


class WebSocketMode:
    """Authenticates a handshake and runs the connection (see the module docstring)."""

    def __init__(self, runtime: Runtime, compaction: Compaction) -> None:
        self._rt = runtime
        self._compaction = compaction

    async def serve(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        settings = self._rt.settings
        try:
            key = client_key(req, settings)
            secret = upstream_key(key, settings)
            headers = _upstream_headers(req, secret, "-", settings.forward_headers)
        except ProxyError as refusal:
            await _refuse(ws, refusal)
            return
        connection = Connection(
            self._rt, self._compaction, ws, key=key, upstream_key=secret, headers=headers,
            stopping=stopping_future(req.scope),
        )
        try:
            await ws.accept()
            await connection.run()
        except WebSocketDisconnected:
            pass  # gone during the handshake, or while we were closing
        except Exception:  # a bug of ours: this connection ends, the worker goes on
            log.exception("unhandled error on a WebSocket connection")
            try:
                await ws.close(1011, "internal_error")
            except Exception:
                pass


async def _refuse(ws: falcon.asgi.WebSocket, refusal: ProxyError) -> None:
    """Answer a refused handshake (see the module docstring); one metrics line, as a refused POST has."""
    started = time.perf_counter()
    await ws.accept()
    try:
        await asyncio.wait_for(_first_message(ws), REFUSAL_WAIT_SECS)
    except (TimeoutError, WebSocketDisconnected):
        pass
    try:
        await ws.send_text(encode(protocol_error(refusal)))
        await ws.close(1008, refusal.code or "refused")
    except WebSocketDisconnected:
        pass
    request_completed(
        model="-", duration_ms=(time.perf_counter() - started) * 1000.0, status="error",
        http_status=refusal.status, key="-", request_id=new_request_id(),
    )


async def _first_message(ws: falcon.asgi.WebSocket) -> None:
    """Wait for one message of any kind (its content is not read: the client is not authenticated)."""
    try:
        await ws.receive_text()
    except PayloadTypeError:
        pass  # a binary message: it still is the client's first message
