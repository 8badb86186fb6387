"""The mock's raw ASGI app: routing, recording, and replaying a ``Plan``.

No framework on purpose: the mock must never be the bottleneck of a load test,
so the hot path is one dict lookup, one orjson parse and (usually) one write.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import orjson

from proxy.mock import models
from proxy.mock.scripts import (
    JSON_CONTENT_TYPE,
    Plan,
    build_plan,
    builtin_script,
    compaction_script,
    error_body,
    is_compaction,
)
from proxy.mock.state import MockState

state = MockState()

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODELS_PATHS = ("/v1/models", "/models")


class DropConnection(Exception):
    """Raised after a partial body: uvicorn then closes the socket without ending the body."""


class _QuietDrops(logging.Filter):
    """Keep the deliberate ``drop_after`` aborts out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DropConnection)


_filter_installed = False


def _install_log_filter() -> None:
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
        _filter_installed = True


async def _send_json(send: Any, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(obj)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", JSON_CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    })
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes | None:
    """The whole request body, or ``None`` when the client left first."""
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Watch:
    """Watches ``receive`` for ``http.disconnect`` while a plan waits, so a departed client stops the mock."""

    __slots__ = ("gone", "finished", "record", "_task")

    def __init__(self, receive: Any, record: dict[str, Any]) -> None:
        self.gone = asyncio.Event()
        self.finished = False
        self.record = record
        self._task = asyncio.get_running_loop().create_task(self._run(receive))

    async def _run(self, receive: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                # uvicorn also reports "disconnect" once the response is complete.
                if not self.finished:
                    self.record["disconnected"] = True
                self.gone.set()
                return

    async def sleep(self, seconds: float) -> bool:
        """Sleep; True if the client left meanwhile."""
        try:
            await asyncio.wait_for(self.gone.wait(), seconds)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self._task.cancel()


async def _replay(plan: Plan, send: Any, record: dict[str, Any], watch: _Watch | None) -> None:
    if plan.first_byte_delay > 0 and watch is not None and await watch.sleep(plan.first_byte_delay):
        return
    if plan.hang:
        if watch is not None:
            await watch.gone.wait()
        return
    headers = plan.headers
    pieces = plan.pieces
    drop = plan.drop_after is not None
    if plan.coalesce and not drop:
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if plan.sized:
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": plan.status, "headers": headers})
        _finish(record, watch)
        await send({"type": "http.response.body", "body": body})
        return

    await send({"type": "http.response.start", "status": plan.status, "headers": headers})
    if drop:
        pieces = pieces[: plan.drop_after]
    if plan.coalesce:
        pieces = [b"".join(pieces)]
    for i, piece in enumerate(pieces):
        if i and plan.delay > 0 and watch is not None and await watch.sleep(plan.delay):
            return
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    if drop:
        _install_log_filter()
        raise DropConnection("drop_after")
    _finish(record, watch)
    await send({"type": "http.response.body", "body": b""})


def _finish(record: dict[str, Any], watch: _Watch | None) -> None:
    record["completed"] = True
    if watch is not None:
        watch.finished = True


async def _chat(scope: dict[str, Any], receive: Any, send: Any) -> None:
    record = _record(scope, None)
    try:
        raw = await _read_body(receive)
        if raw is None:
            record["disconnected"] = True
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            await _send_json(send, 400, error_body(400, {"message": "request body is not a JSON object"}))
            record["completed"] = True
            return
        record["body"] = body
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        record["model"] = model
        script: dict[str, Any] | None
        if is_compaction(body):  # never takes the model's own scripts (see the package docstring)
            script = state.next_script("compaction:" + model, wildcard=False) or compaction_script(body)
        else:
            script = state.next_script(model)
        if script is None:
            script = builtin_script(model, body)
        try:
            plan = build_plan(script, body, model or "mock-echo")
        except Exception as exc:  # a malformed script is the test's bug: say so instead of a bare 500
            err = {"message": f"bad mock script: {exc!r}", "type": "mock_script_error"}
            await _send_json(send, 500, error_body(500, err))
            record["completed"] = True
            return
        await _replay_watched(plan, receive, send, record)
    finally:
        record["ended_at"] = time.time()


async def _replay_watched(plan: Plan, receive: Any, send: Any, record: dict[str, Any]) -> None:
    """Replay ``plan``, watching for the client leaving only if the plan waits."""
    watch = _Watch(receive, record) if plan.needs_watcher else None
    try:
        await _replay(plan, send, record, watch)
    finally:
        if watch is not None:
            watch.close()


def _record(scope: dict[str, Any], model: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "model": model,
        "path": scope["path"],
        # The caller's (host, port): the same port twice means a reused connection.
        "client": list(scope["client"]) if scope.get("client") else None,
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        "body": None,
        "disconnected": False,
        "completed": False,
        "started_at": time.time(),
        "ended_at": None,
    }
    state.records.append(record)
    return record


def _model_id(path: str) -> str | None:
    """``None`` for the list, the id for one model, ``""`` for a path that is neither."""
    for prefix in MODELS_PATHS:
        if path == prefix:
            return None
        if path.startswith(prefix + "/"):
            return path[len(prefix) + 1 :]
    return ""


async def _models(scope: dict[str, Any], receive: Any, send: Any, model_id: str | None) -> None:
    record = _record(scope, model_id)
    try:
        plan = models.build_models_plan(state.next_script(models.QUEUE, wildcard=False), model_id)
        await _replay_watched(plan, receive, send, record)
    finally:
        record["ended_at"] = time.time()


async def _control(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    method = scope["method"]
    if path == "/_mock/health":
        await _send_json(send, 200, {"status": "ok"})
        return
    if path == "/_mock/requests" and method == "GET":
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        model = qs["model"][0] if "model" in qs else None
        await _send_json(send, 200, state.list_records(model))
        return
    if method != "POST" or path not in ("/_mock/script", "/_mock/reset", "/_mock/models"):
        await _send_json(send, 404, error_body(404, {"message": f"no route {method} {path}"}))
        return
    raw = await _read_body(receive)
    if raw is None:
        return
    if path == "/_mock/reset":
        state.reset()
        await _send_json(send, 200, {"ok": True})
        return
    try:
        payload = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        payload = None
    if path == "/_mock/models" and isinstance(payload, dict):
        payload = {**payload, "model": models.QUEUE}
    ok = (
        isinstance(payload, dict)
        and isinstance(payload.get("model"), str)
        and isinstance(payload.get("responses"), list)
        and all(isinstance(r, dict) for r in payload["responses"])
    )
    if not ok:
        msg = 'expected {"model": str, "responses": [object, ...], "replace"?: bool}'
        await _send_json(send, 400, error_body(400, {"message": msg}))
        return
    n = state.add_scripts(payload["model"], payload["responses"], bool(payload.get("replace")))
    await _send_json(send, 200, {"queued": n})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI entry point."""
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path in CHAT_PATHS:
            if scope["method"] == "POST":
                await _chat(scope, receive, send)
            else:
                await _send_json(send, 405, error_body(405, {"message": "use POST"}))
        elif (model_id := _model_id(path)) != "":
            if scope["method"] == "GET":
                await _models(scope, receive, send, model_id)
            else:
                await _send_json(send, 405, error_body(405, {"message": "use GET"}))
        elif path.startswith("/_mock/"):
            await _control(scope, receive, send)
        else:
            await _send_json(send, 404, error_body(404, {"message": f"no route {scope['method']} {path}"}))
    elif kind == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
