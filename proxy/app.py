"""The ASGI application: Falcon routes, error shapes, lifespan, and a thin shim.

``app`` is what gunicorn's Uvicorn workers serve (``conf/gunicorn.conf.py``
names it). Settings are read at import, i.e. once per worker.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi
import falcon.media
import orjson

from . import edge, logs
from . import settings as settings_mod
from .background import Jobs, jobs_for
from .errors import ProxyError, type_for_status
from .failures import Failure
from .resources.background import BackgroundMode
from .resources.compact import Compaction, CompactResource
from .resources.conversations import ConversationItemsResource, ConversationsResource
from .resources.health import HealthResource
from .resources.input_tokens import InputTokensResource
from .resources.metrics import MetricsMiddleware, MetricsResource
from .resources.models import ModelsResource
from .resources.responses import ResponsesResource
from .resources.scope import SCOPE_KEY, SERVER_ANSWERED, RequestIdMiddleware, RequestScope
from .resources.stored import StoredResponseResource
from .resources.websocket import ResponsesEndpoint, WebSocketMode
from .runtime import Runtime
from .state import refusal
from .store import StoreError
from .store.shapes import InvalidParam
from .translate.errors import InvalidRequest

log = logging.getLogger("proxy.app")

class _Lifespan:
    """Opens the worker's upstream pool at ASGI startup and closes it at shutdown; background jobs
    start their upkeep after it opened and finish (or fail) before it closes."""

    def __init__(self, runtime: Runtime, jobs: Jobs | None) -> None:
        self._runtime = runtime
        self._jobs = jobs

    async def process_startup(self, scope: dict, event: dict) -> None:
        await self._runtime.startup()
        if self._jobs is not None:
            await self._jobs.startup()

    async def process_shutdown(self, scope: dict, event: dict) -> None:
        if self._jobs is not None:
            await self._jobs.aclose()
        await self._runtime.shutdown()


async def _proxy_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: ProxyError, params: dict) -> None:
    resp.status = ex.status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(ex.body())
    for name, value in ex.headers.items():
        resp.set_header(name, value)


async def _failure(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Failure, params: dict[str, Any]) -> None:
    await _proxy_error(req, resp, ex.http_error(), params)


async def _invalid_request(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: InvalidRequest, params: dict[str, Any]
) -> None:
    """The translation core's refusal: an invalid_request_error, of its status (400 but rarely)."""
    await _proxy_error(req, resp, ProxyError(ex.status, ex.message, param=ex.param, code=ex.code), params)


async def _store_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: StoreError | InvalidParam, params: dict[str, Any]
) -> None:
    """The store's refusals and faults on the stored-object routes (``proxy.state.refusal``: faults
    are logged)."""
    meta = getattr(req.context, "meta", None)
    error = refusal(ex, getattr(meta, "request_id", "-"), f"{req.method} {req.path}: ")
    await _proxy_error(req, resp, error, params)


async def _unexpected(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: dict) -> None:
    if isinstance(ex, falcon.HTTPError):
        raise ex  # Falcon's own errors go through the serializer below.
    meta = getattr(req.context, "meta", None)
    log.exception("request_id=%s: unhandled error", getattr(meta, "request_id", "-"))
    await _proxy_error(
        req, resp, ProxyError(500, "Internal proxy error.", type="server_error", code="internal_error"), params
    )


def _serialize_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Falcon's own errors (404, 405, bad headers…) in the OpenAI shape."""
    status = exc.status_code
    if status == 404:
        message = f"Unknown path: {req.method} {req.path}."
        code: str | None = "not_found"
    elif status == 405:
        message = f"Method {req.method} is not allowed on {req.path}."
        code = "method_not_allowed"
    else:
        message = " ".join(p for p in (exc.title, exc.description) if p) or "Bad request."
        code = None
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": type_for_status(status),  # an unknown path: OpenAI's "Invalid URL" 404 type
                "param": None,
                "code": code,
            }
        }
    )


def _lean_log_records() -> None:
    """Every request writes one log line (``request_completed``); its record skips what no
    format of ours prints: the caller's file and line (a walk up the stack per record, the
    logging HOWTO's own advice for speed) and the thread's and process's names. The pid stays."""
    logging._srcfile = None  # the documented switch has a private name
    logging.logThreads = False
    logging.logMultiprocessing = False


def create_app(settings: settings_mod.Settings | None = None) -> Callable[..., Awaitable[None]]:
    """Build the ASGI callable for one worker."""
    settings = settings or settings_mod.load()
    logs.configure(settings.log_level, settings.log_format)
    _lean_log_records()
    runtime = Runtime.build(settings)
    edge.count_refused_with(runtime.metrics.request_refused)
    jobs = jobs_for(settings, runtime.store, runtime.metrics)  # background mode: only with a store
    # Falcon types a middleware list by one protocol per hook; ours mix hooks.
    middleware: list[Any] = [_Lifespan(runtime, jobs), RequestIdMiddleware(), MetricsMiddleware(runtime.metrics)]
    falcon_app = falcon.asgi.App(middleware=middleware)
    json_handler = falcon.media.JSONHandler(dumps=lambda o: orjson.dumps(o).decode(), loads=orjson.loads)
    falcon_app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    falcon_app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    # POST, its WebSocket mode and Codex's compaction trigger on one path; compaction beside it.
    compaction = Compaction(runtime)
    background = BackgroundMode(runtime, jobs) if jobs is not None else None
    responses = ResponsesEndpoint(
        ResponsesResource(runtime, compaction, background), WebSocketMode(runtime, compaction)
    )
    for path in edge.WEBSOCKET_PATHS:  # (a WebSocket handshake to any other path: edge.JsonRejections' 404)
        falcon_app.add_route(path, responses)
    falcon_app.add_route("/v1/responses/compact", CompactResource(compaction))
    falcon_app.add_route("/responses/compact", CompactResource(compaction))
    input_tokens = InputTokensResource(runtime)
    falcon_app.add_route("/v1/responses/input_tokens", input_tokens)
    falcon_app.add_route("/responses/input_tokens", input_tokens)
    stored = StoredResponseResource(runtime, jobs)
    conversations = ConversationsResource(runtime)
    items = ConversationItemsResource(runtime)
    for prefix in ("/v1", ""):
        falcon_app.add_route(prefix + "/responses/{response_id}", stored)
        falcon_app.add_route(prefix + "/responses/{response_id}/input_items", stored, suffix="input_items")
        falcon_app.add_route(prefix + "/responses/{response_id}/cancel", stored, suffix="cancel")
        falcon_app.add_route(prefix + "/conversations", conversations)
        falcon_app.add_route(prefix + "/conversations/{conversation_id}", conversations, suffix="one")
        falcon_app.add_route(prefix + "/conversations/{conversation_id}/items", items)
        falcon_app.add_route(prefix + "/conversations/{conversation_id}/items/{item_id}", items, suffix="one")
    falcon_app.add_route("/health", HealthResource(runtime))
    falcon_app.add_route("/metrics", MetricsResource(runtime))
    models = ModelsResource(runtime)
    for prefix in ("/v1/models", "/models"):
        falcon_app.add_route(prefix, models)
        falcon_app.add_route(prefix + "/{model_id:path}", models, suffix="model")
    # `/v1/responses/` is `/v1/responses`, not a response with an empty id.
    falcon_app.req_options.strip_url_path_trailing_slash = True
    falcon_app.add_error_handler(Exception, _unexpected)
    falcon_app.add_error_handler(ProxyError, _proxy_error)
    falcon_app.add_error_handler(Failure, _failure)
    falcon_app.add_error_handler(InvalidRequest, _invalid_request)
    falcon_app.add_error_handler(StoreError, _store_error)
    falcon_app.add_error_handler(InvalidParam, _store_error)
    falcon_app.set_error_serializer(_serialize_http_error)

    async def asgi(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            await falcon_app(scope, receive, send)
            return
        # The request's scope owns what it opens and releases it once the app is
        # done with the request, on every path. It also hands resources the
        # `receive` channel (Falcon keeps it private) to notice a client leaving.
        request = scope[SCOPE_KEY] = RequestScope(receive)
        try:
            await falcon_app(scope, receive, send)
        finally:
            try:
                if SERVER_ANSWERED in scope:  # the worker answered it itself and wrote its line (proxy.edge)
                    request.quiet = True
                await request.close()
            finally:
                # The ASGI scope holds the RequestScope, which holds `receive`, which holds the
                # scope: a cycle only the garbage collector would free, broken here.
                del scope[SCOPE_KEY]

    return asgi


app = create_app()
