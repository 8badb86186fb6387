"""The upstream side: one httpx pool per worker, and opening a chat stream.

Everything that can go wrong before the first byte of a 200 answer becomes a
``ProxyError`` here, with the status a client should see; ``backend_failure``
says whether the circuit breaker should count it (client errors never do, so a
few bad keys cannot lock everyone out).
"""
from __future__ import annotations

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from .errors import ProxyError
from .settings import CONNECT_TIMEOUT_SECS, Settings

_ERROR_BODY_LIMIT = 64 * 1024


class UpstreamError(ProxyError):
    """A ``ProxyError`` that knows whether the backend itself failed."""

    def __init__(self, status: int, message: str, *, backend_failure: bool, **kw: object) -> None:
        super().__init__(status, message, **kw)  # type: ignore[arg-type]
        self.backend_failure = backend_failure


def create_client(settings: Settings) -> httpx.AsyncClient:
    """The worker's pool: 1024 connections, a connect timeout, and a *read* timeout
    that bounds the silence between chunks rather than the length of a stream.

    httpx is the API; aiohttp is the transport underneath. Measured side by side
    (loadtest/bench.py), it costs about half the CPU of httpx's own httpcore
    pool per request and per streamed chunk, and it keeps upstream connections
    alive without scanning the whole pool on every request. Must be called with
    the event loop running (ASGI lifespan startup).
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1024, limit_per_host=1024, keepalive_timeout=30.0),
        auto_decompress=False,
        trust_env=False,
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(client=session),
        timeout=httpx.Timeout(
            connect=CONNECT_TIMEOUT_SECS,
            read=settings.backend_idle_timeout_secs,
            write=settings.backend_idle_timeout_secs,
            pool=CONNECT_TIMEOUT_SECS,
        ),
        # Never follow a redirect with the client's key to another host.
        follow_redirects=False,
        trust_env=False,
    )


async def open_stream(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST the chat request and return the open 200 streaming response."""
    request = client.build_request("POST", url, content=body, headers=headers)
    try:
        response = await client.send(request, stream=True)
    except httpx.ConnectTimeout:
        raise UpstreamError(
            502, "The backend is unreachable (connect timed out).",
            type="server_error", code="backend_unreachable", backend_failure=True,
        ) from None
    except httpx.PoolTimeout:
        raise UpstreamError(
            503, "The proxy has no free upstream connection; retry shortly.",
            type="server_error", code="upstream_pool_exhausted", backend_failure=False,
            headers={"Retry-After": "1"},
        ) from None
    except httpx.TimeoutException as exc:
        raise UpstreamError(
            504, f"The backend did not answer in time ({type(exc).__name__}).",
            type="server_error", code="backend_timeout", backend_failure=True,
        ) from None
    except httpx.HTTPError as exc:
        raise UpstreamError(
            502, f"The backend is unreachable ({type(exc).__name__}).",
            type="server_error", code="backend_unreachable", backend_failure=True,
        ) from None
    if response.status_code == 200:
        return response
    try:
        raw = await _read_bounded(response)
    except httpx.HTTPError:
        raw = b""
    finally:
        await response.aclose()
    raise _status_error(response, raw)


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


def _status_error(response: httpx.Response, raw: bytes) -> UpstreamError:
    status = response.status_code
    message, err_type, param, code = _backend_error_fields(raw)
    headers: dict[str, str] = {}
    retry_after = response.headers.get("retry-after")
    if retry_after and retry_after.strip().isdigit():
        headers["Retry-After"] = retry_after.strip()
    if 400 <= status < 500:
        return UpstreamError(
            status,
            message or f"The backend refused the request (HTTP {status}).",
            type=err_type or ("rate_limit_error" if status == 429 else "invalid_request_error"),
            param=param,
            code=code,
            headers=headers,
            backend_failure=False,
        )
    return UpstreamError(
        502,
        f"The backend failed (HTTP {status})" + (f": {message}" if message else "."),
        type="server_error",
        code="backend_error",
        headers=headers,
        backend_failure=True,
    )


def _backend_error_fields(raw: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """Pull message/type/param/code out of whatever error body the backend sent."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return (text[:1000] or None), None, None, None
    err = doc.get("error", doc) if isinstance(doc, dict) else None
    if isinstance(err, str):
        return err[:1000], None, None, None
    if not isinstance(err, dict):
        return None, None, None, None

    def text(key: str) -> str | None:
        value = err.get(key)
        return str(value)[:1000] if value is not None else None

    return text("message") or text("detail"), text("type"), text("param"), text("code")
