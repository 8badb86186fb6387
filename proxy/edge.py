"""What the server answers outside the app, in the app's shape, and the metrics line it writes.

Some requests never reach Falcon: bytes httptools cannot parse (uvicorn's plain-text 400), a
request head that does not arrive within ``BODY_READ_TIMEOUT_SECS`` (``proxy.stalled``: uvicorn
has no header timeout), a WebSocket handshake the ``websockets`` library refuses (a bad
``Sec-WebSocket-Key`` or ``Sec-WebSocket-Version``: its plain-text 400 or 426), one to a path
without WebSocket mode (a 404 here, where uvicorn answered a bodiless 403) and uvicorn's
WebSocket 500 (an exception before the handshake was accepted). ``proxy.worker``'s protocols answer
them with the OpenAI-shaped error every other answer of the proxy has, built here, and write
the ``request_completed`` line
every request writes (``logs.request_completed``), with the masked key and the request id when
the head had come that far. Nothing here runs for a request the app serves.
"""
from __future__ import annotations

import email.utils
import http
import time
from collections.abc import Callable
from functools import cache
from urllib.parse import unquote

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from .errors import ProxyError, type_for_status
from .logs import mask_key, request_completed
from .resources.scope import SERVER_ANSWERED, new_request_id, sane_request_id

__all__ = [
    "SERVER_ANSWERED", "WEBSOCKET_PATHS", "JsonRejections", "count_refused_with", "head_timeout_tail", "json_tail",
    "log_refused",
]


def json_tail(error: ProxyError) -> bytes:
    """The end of a raw HTTP/1.1 answer carrying ``error`` (after its status line and the server's
    own ``date`` and ``server`` headers), closing the connection."""
    body = orjson.dumps(error.body())
    return b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


@cache
def head_timeout_tail(timeout_secs: float) -> bytes:
    """What a request whose head stalled gets (one per worker: the timeout is fixed)."""
    return json_tail(ProxyError(
        408, f"The request headers did not arrive within {timeout_secs:g} s.", code="request_timeout",
    ))


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:  # (lower-cased by uvicorn)
        if key == name:
            return value.decode("latin-1")
    return None


def _key_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key as ``resources.auth.presented_key`` reads it (unchecked: it is only masked)."""
    auth = _header(headers, b"authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return (_header(headers, b"x-api-key") or "").strip() or None


# The worker's request counter for these (``Metrics.request_refused``), set by the app it serves
# (``proxy.app.create_app``): the protocols that refuse them are built by uvicorn, not by the app.
_count: Callable[[int], None] | None = None


def count_refused_with(counter: Callable[[int], None] | None) -> None:
    global _count
    _count = counter


def log_refused(headers: list[tuple[bytes, bytes]] | None, http_status: int, started: float | None) -> None:
    """The ``request_completed`` line of a request answered by the server itself, and its count:
    ``headers`` are those parsed so far (``None``: not even a request line), ``started`` its
    ``perf_counter`` start when known (a request refused in the read that brought it: 0 ms)."""
    if _count is not None:
        _count(http_status)
    headers = headers or []
    request_id = sane_request_id(_header(headers, b"x-request-id")) or new_request_id()
    request_completed(
        model="-", duration_ms=0.0 if started is None else (time.perf_counter() - started) * 1000.0,
        status="error", http_status=http_status, key=mask_key(_key_of(headers)), request_id=request_id,
    )


# --------------------------------------------------------------------------- WebSocket handshakes

WEBSOCKET_PATHS = ("/v1/responses", "/responses")  # where WebSocket mode is served (proxy.app's routes)


# uvicorn's 403, when the app closed the handshake before accepting it (a path without a WebSocket
# route is refused before that, with a 404: ``JsonRejections.accept``).
_SERVED_AT = "WebSocket mode is served at GET /v1/responses."
_REFUSED = f"The WebSocket handshake was refused: {_SERVED_AT}"
_WS_CODES = {
    400: "invalid_websocket_handshake", 403: "websocket_refused", 404: "not_found", 426: "websocket_upgrade_required",
}


class JsonRejections(ServerProtocol):
    """The ``websockets`` server protocol, but every handshake it refuses is answered as JSON.

    ``reject`` is the one place that builds a refusal: ``accept`` calls it for a handshake it
    cannot accept (400, 426 — it then adds ``Upgrade: websocket`` —, 403, 500), and uvicorn calls
    it for its 500 (the app failed before accepting) and its 403 (the app closed before
    accepting). The library's reason (``invalid Sec-WebSocket-Key header: …``) becomes the
    message; a 500's is not the client's to read (the server log has it).

    ``accept`` refuses a handshake to a path without WebSocket mode itself, with a 404, as RFC 6455
    asks for a resource that is not available (4.2.2), so it is answered like every refusal here:
    before any app task, with the ``request_completed`` line and count ``proxy.worker`` writes for
    them. Left to the app, Falcon would close it (code 3404, which uvicorn does not hand on) and
    uvicorn would answer 403 — "not allowed", of a path that does not exist — with an error logged."""

    def accept(self, request: Request) -> Response:
        path = request.path.partition("?")[0]
        if (unquote(path).rstrip("/") or "/") not in WEBSOCKET_PATHS:
            return self.reject(404, f"Unknown path for a WebSocket connection: {path}. {_SERVED_AT}")
        return super().accept(request)

    def reject(self, status: http.HTTPStatus | int, text: str) -> Response:
        status = http.HTTPStatus(status)
        if status >= 500:
            error = ProxyError(
                status, "Internal proxy error while opening the WebSocket connection.",
                type="server_error", code="internal_error",
            )
        else:
            reason = text.strip().split("\n", 1)[0] or _REFUSED
            error = ProxyError(status, reason, type=type_for_status(status), code=_WS_CODES.get(status))
        body = orjson.dumps(error.body())
        headers = Headers([
            ("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
            ("Content-Length", str(len(body))), ("Content-Type", "application/json"),
        ])
        return Response(status.value, status.phrase, headers, body)
