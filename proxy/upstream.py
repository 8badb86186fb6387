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


# Upstream requests one worker keeps in flight; past it new requests get a
# retryable 503 at once (see Upstream.open), never a wait that looks like a
# backend timeout.
POOL_SIZE = 1024
# Idle upstream connections are dropped after this long: shorter than the
# 5 s keep-alive of uvicorn-based backends (vLLM, SGLang), so we never send on
# a connection the backend is closing.
KEEPALIVE_EXPIRY_SECS = 4.0


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
        connector=aiohttp.TCPConnector(
            limit=POOL_SIZE, limit_per_host=POOL_SIZE, keepalive_timeout=KEEPALIVE_EXPIRY_SECS
        ),
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


class Upstream:
    """The worker's upstream: its httpx client and the requests it has in flight."""

    def __init__(self, client: httpx.AsyncClient, url: str, limit: int = POOL_SIZE) -> None:
        self.client = client
        self.url = url
        self.limit = limit
        self.in_flight = 0

    async def open(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """The open 200 streaming response; the slot it takes is freed when it is closed."""
        if self.in_flight >= self.limit:
            raise UpstreamError(
                503, "The proxy has no free upstream connection; retry shortly.",
                type="server_error", code="upstream_pool_exhausted", backend_failure=False,
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        try:
            response = await open_stream(self.client, self.url, body, headers)
        except BaseException:
            self.in_flight -= 1
            raise
        response.stream = _Slot(response.stream, self)  # type: ignore[assignment]
        return response

    async def aclose(self) -> None:
        await self.client.aclose()


class _Slot(httpx.AsyncByteStream):
    """A response body that gives its in-flight slot back when it is closed."""

    __slots__ = ("_inner", "_owner")

    def __init__(self, inner: httpx.AsyncByteStream, owner: Upstream) -> None:
        self._inner = inner
        self._owner: Upstream | None = owner

    def __aiter__(self):  # the inner iterator itself: no extra layer per chunk
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._owner is not None:
                self._owner.in_flight -= 1
                self._owner = None


async def open_stream(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST the chat request and return the open 200 streaming response."""
    request = client.build_request("POST", url, content=body, headers=headers)
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    except aiohttp.ClientError as exc:
        # Errors the transport does not map: a bad status line, a reply that is not HTTP…
        raise UpstreamError(
            502, f"The backend sent an invalid HTTP response ({type(exc).__name__}).",
            type="server_error", code="backend_error", backend_failure=True,
        ) from None
    if response.status_code == 200:
        return response
    try:
        raw = await _read_bounded(response)
    except (httpx.HTTPError, aiohttp.ClientError):
        raw = b""
    finally:
        await response.aclose()
    raise _status_error(response, raw)


def _transport_error(exc: httpx.HTTPError) -> UpstreamError:
    """Unreachable (502) or too slow (504); always the backend's failure."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        message, status, code = "The backend closed the connection before answering.", 502, "backend_error"
    elif isinstance(exc, httpx.ConnectTimeout):
        # The aiohttp transport also reports other dropped connections this way.
        message, status, code = "The backend is unreachable (no connection).", 502, "backend_unreachable"
    elif isinstance(exc, httpx.TimeoutException):
        message, status, code = f"The backend did not answer in time ({type(exc).__name__}).", 504, "backend_timeout"
    else:
        message, status, code = f"The backend is unreachable ({type(exc).__name__}).", 502, "backend_unreachable"
    return UpstreamError(status, message, type="server_error", code=code, backend_failure=True)


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
    if retry_after and retry_after.strip().isascii() and retry_after.strip().isdigit():
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
