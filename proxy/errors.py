"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}``.

Every failure a client can see is a ``ProxyError``; the app's error handler turns
it into a response with the right status, so no code path builds error bodies
by hand.
"""
from __future__ import annotations

from typing import Any


class ProxyError(Exception):
    """An error that becomes an HTTP response with an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def type_for_status(status: int) -> str:
    """The ``type`` of an error whose body names none, by its status: OpenAI's 4xx say
    ``invalid_request_error`` (its 401, 403 and 404 too), 429 ``rate_limit_error``, 5xx ``server_error``."""
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    """A 400 ``invalid_request_error`` naming the offending ``param``."""
    return ProxyError(400, message, param=param, code=code)


def malformed_http() -> ProxyError:
    """What bytes that are not HTTP/1.1 get (``proxy.worker``): the parser's reason is not known there."""
    return ProxyError(
        400, "The request is not valid HTTP/1.1: its request line, a header or its body framing "
        "(Content-Length, Transfer-Encoding, a chunk size) could not be parsed.", code="invalid_http_request",
    )


def restarting() -> ProxyError:
    """What a stopping worker answers a new request it will not serve (a WebSocket handshake on a
    lingering connection, a ``response.create`` on a closing socket): retry on another worker."""
    return ProxyError(
        503, "This server is restarting; reconnect and send the request again.",
        type="server_error", code="service_unavailable", headers={"Retry-After": "1"},
    )
