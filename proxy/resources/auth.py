"""Which key a request carries, which key goes upstream, and keeping keys out of answers.

Shared by every resource that calls the backend (``POST /v1/responses``,
``GET /v1/models``): the client's own key is forwarded, or, in operator mode
(``BACKEND_API_KEY``), the client must present one of ``PROXY_API_KEYS`` and
the operator's key goes upstream instead.
"""
from __future__ import annotations

import hmac

import falcon.asgi

from ..errors import ProxyError
from ..logs import hold_key, mask_key
from ..settings import Settings

__all__ = ["client_key", "is_header_safe", "presented_key", "scrub", "upstream_key"]


def client_key(req: falcon.asgi.Request, settings: Settings) -> str:
    """The key the client presented, checked against ``PROXY_API_KEYS`` in operator mode; else 401.
    From here on no log line of the request shows it (``logs.hold_key``)."""
    key = presented_key(req)
    if key is not None:
        hold_key(key)
    if settings.backend_api_key:
        if key is None or not any(
            hmac.compare_digest(key.encode(), allowed.encode()) for allowed in settings.proxy_api_keys
        ):
            raise ProxyError(401, "Incorrect or missing API key for this proxy.", code="invalid_api_key")
        return key
    if key is None:
        raise ProxyError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
        )
    return key


def upstream_key(client: str, settings: Settings) -> str:
    """The key the backend gets: the operator's in operator mode, else the client's own."""
    return settings.backend_api_key or client


def presented_key(req: falcon.asgi.Request) -> str | None:
    """The client's key from ``Authorization: Bearer …`` or ``x-api-key``.

    A key must be printable ASCII: anything else cannot be sent upstream in a
    header, so it is refused here as an invalid key (401), not a crash; and one
    token, without spaces or commas (two headers, or two keys in one).
    """
    key: str | None = None
    auth = req.get_header("Authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            key = token
    if key is None:
        key = (req.get_header("X-Api-Key") or "").strip() or None
    if key is not None and not is_header_safe(key):
        raise ProxyError(401, "The API key must be printable ASCII.", code="invalid_api_key")
    if key is not None and (" " in key or "," in key):
        # Two such headers reach us joined with "," (one value per name): forwarded, that sends
        # both keys upstream as one, and the stored objects would belong to the pair.
        raise ProxyError(
            401, "Send one API key, in one 'Authorization: Bearer <key>' or 'X-Api-Key' header.",
            code="invalid_api_key",
        )
    return key


def is_header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def scrub(message: str, key: str | None) -> str:
    """``message`` with ``key`` masked: a backend may echo the key it was given."""
    if key and len(key) >= 4 and key in message:
        return message.replace(key, mask_key(key))
    return message
