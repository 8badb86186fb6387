"""The upstream side: one httpx pool per worker, and opening a chat stream.

Everything that can go wrong before the first byte of a 200 answer becomes a
``Failure`` here (``proxy.failures``): its cause says what the client sees and
what the circuit breaker learns — a backend's 4xx is the backend answering (a
few bad keys must not lock everyone out), a refused connection says nothing
about any one model, a 5xx says the model failed.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
import orjson

from .errors import type_for_status
from .failures import Cause, Failure
from .settings import CONNECT_TIMEOUT_SECS, Settings
from .transport import ChatTransport, PoolClient

_ERROR_BODY_LIMIT = 64 * 1024


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

    httpx is the API; aiohttp is the transport underneath (``proxy.transport``).
    Measured side by side (loadtest/bench.py), it costs about half the CPU of
    httpx's own httpcore pool per request and per streamed chunk, and it keeps
    upstream connections alive without scanning the whole pool on every
    request. Must be called with the event loop running (ASGI lifespan startup).
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=POOL_SIZE, limit_per_host=POOL_SIZE, keepalive_timeout=KEEPALIVE_EXPIRY_SECS
        ),
        auto_decompress=False,
        trust_env=False,
        # The pool serves every client: a backend's Set-Cookie must never ride along on another
        # client's request (aiohttp's default jar replays it for a named host), and no jar to
        # filter and update saves its work on every request.
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    return PoolClient(
        transport=ChatTransport(session),
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
    """The worker's upstream: its httpx client and the requests it has in flight.

    A chat request is built once, as an ``httpx.Request`` sent with
    ``client.send(request, stream=True)``: the URL parsed once, the timeouts
    made once, the client's own headers merged once (``client.build_request``
    redid all three for every request: 9% of a JSON request's CPU). Its body is
    given as a ``ByteStream`` with the two headers httpx would have added (host,
    content-length): ``content=`` would rebuild every header twice more (30 µs).
    """

    def __init__(self, client: httpx.AsyncClient, url: str, limit: int = POOL_SIZE) -> None:
        self.client = client
        self.url = url
        self.limit = limit
        self.in_flight = 0
        self._url = httpx.URL(url)
        # What build_request would merge in under ours: the host, the client's user-agent
        # (and its connection: keep-alive); accept and accept-encoding are always ours.
        self._base_headers = {"host": self._url.netloc.decode("ascii"), **client.headers}
        self._extensions: dict[float | None, dict[str, dict[str, float | None]]] = {}
        # The worker's pool sends straight to its transport (PoolClient); any other client, or
        # a URL with credentials (httpx turns them into basic auth), through client.send.
        self._send: Callable[[httpx.Request], Awaitable[httpx.Response]] = (
            client.chat.handle_async_request if isinstance(client, PoolClient) and not self._url.userinfo
            else self._client_send
        )

    async def _client_send(self, request: httpx.Request) -> httpx.Response:
        return await self.client.send(request, stream=True)

    def _request(self, body: bytes, headers: dict[str, str], read_timeout: float | None) -> httpx.Request:
        extensions = self._extensions.get(read_timeout)
        if extensions is None:
            timeout = self.client.timeout if read_timeout is None else httpx.Timeout(
                connect=CONNECT_TIMEOUT_SECS, read=read_timeout, write=read_timeout, pool=CONNECT_TIMEOUT_SECS
            )
            extensions = self._extensions[read_timeout] = {"timeout": timeout.as_dict()}
        request = httpx.Request(
            "POST", self._url, headers={**self._base_headers, "content-length": str(len(body)), **headers},
            stream=httpx.ByteStream(body), extensions=extensions,
        )
        request.read()  # its content is then the body itself, as with content=
        return request

    async def open(self, body: bytes, headers: dict[str, str], read_timeout: float | None = None) -> httpx.Response:
        """The open 200 streaming response; the slot it takes is freed when it is closed.

        ``read_timeout`` replaces the pool's idle read timeout for this request
        (a non-streamed answer is silent until it is complete).
        """
        if self.in_flight >= self.limit:
            raise Failure(
                Cause.OVERLOADED, "The proxy has no free upstream connection; retry shortly.",
                "upstream_pool_exhausted", headers={"Retry-After": "1"},
            )
        if self.client.is_closed:
            raise RuntimeError("The upstream client is closed.")  # as client.send says it
        self.in_flight += 1
        try:
            response = await open_stream(self._send, self._request(body, headers, read_timeout))
        except BaseException:
            self.in_flight -= 1
            raise
        # An AsyncClient's responses always carry an AsyncByteStream.
        response.stream = _Slot(response.stream, self)  # type: ignore[arg-type]  # httpx types it as sync or async
        return response

    async def aclose(self) -> None:
        await self.client.aclose()


class _Slot(httpx.AsyncByteStream):
    """A response body that gives its in-flight slot back when it is closed.

    Closed, it lets go of the body it wrapped: sent through ``client.send``, httpx's
    ``BoundAsyncStream`` and its ``Response`` hold each other, a cycle only the garbage collector would
    free (with the aiohttp response and the headers it holds); dropped here, the
    ``Response`` goes when its owner lets go of it, and the collector runs less often.
    """

    __slots__ = ("_inner", "_owner")

    def __init__(self, inner: httpx.AsyncByteStream, owner: Upstream) -> None:
        self._inner = inner
        self._owner: Upstream | None = owner

    def __aiter__(self) -> AsyncIterator[bytes]:  # the inner iterator itself: no extra layer per chunk
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._inner = _CLOSED
            if self._owner is not None:
                self._owner.in_flight -= 1
                self._owner = None


_CLOSED = httpx.ByteStream(b"")  # what a closed _Slot holds (httpx reads no closed response)


async def open_stream(
    send: Callable[[httpx.Request], Awaitable[httpx.Response]], request: httpx.Request
) -> httpx.Response:
    """Send the chat request with ``send`` and return the open 200 streaming response."""
    try:
        response = await send(request)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    if response.status_code == 200:
        return response
    try:
        raw = await _read_bounded(response)
    except httpx.HTTPError:
        raw = b""
    finally:
        await response.aclose()
    raise _status_error(response, raw)


def _transport_error(exc: httpx.HTTPError) -> Failure:
    """Unreachable (502, the host's failure), too slow (504), cut off or not HTTP (502).

    By the httpx exception alone (``proxy.transport`` names aiohttp's failures so): no
    connection says nothing about a model; a connection that broke or a reply that is
    not HTTP is the backend failing.
    """
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return Failure(
            Cause.BACKEND_UNREACHABLE, f"The backend is unreachable (connect timeout, {name}).",
            "backend_unreachable", kind="unreachable",
        )
    if isinstance(exc, (httpx.ConnectError, httpx.UnsupportedProtocol)):
        return Failure(
            Cause.BACKEND_UNREACHABLE, f"The backend is unreachable ({name}).", "backend_unreachable",
            kind="unreachable",
        )
    if isinstance(exc, httpx.TimeoutException):
        return Failure(
            Cause.BACKEND_TIMEOUT, f"The backend did not answer in time ({name}).", "backend_timeout",
            kind="timeout",
        )
    if isinstance(exc, httpx.ReadError):  # closed, reset: cut, not slow
        return Failure(
            Cause.BACKEND_FAILED, "The backend closed the connection before answering.", "backend_error",
            kind="disconnected",
        )
    if isinstance(exc, httpx.RemoteProtocolError):  # a bad status line, a reply that is not HTTP…
        return Failure(
            Cause.BACKEND_FAILED, f"The backend sent an invalid HTTP response ({name}).",
            "backend_error", kind="malformed",
        )
    return Failure(
        Cause.BACKEND_FAILED, f"The backend connection failed before an answer ({name}).", "backend_error",
        kind="disconnected",
    )


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


def _status_error(response: httpx.Response, raw: bytes) -> Failure:
    status = response.status_code
    message, err_type, param, code = _backend_error_fields(raw)
    headers: dict[str, str] = {}
    retry_after = response.headers.get("retry-after")
    if retry_after and retry_after.strip().isascii() and retry_after.strip().isdigit():
        headers["Retry-After"] = retry_after.strip()
    if 400 <= status < 500:
        return Failure(
            Cause.BACKEND_REJECTED,
            message or f"The backend refused the request (HTTP {status}).",
            code,
            kind=f"status_{status}",
            status=status,
            error_type=err_type or type_for_status(status),  # (a body without one: FastAPI's {"detail"}, text)
            param=param,
            headers=headers,
        )
    return Failure(
        Cause.BACKEND_FAILED,
        f"The backend failed (HTTP {status})" + (f": {message}" if message else "."),
        "backend_error",
        kind="status_5xx",
        headers=headers,
    )


def _backend_error_fields(raw: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """Pull message/type/param/code out of whatever error body the backend sent."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        plain = raw.decode("utf-8", "replace").strip()
        return (plain[:1000] or None), None, None, None
    err = doc.get("error", doc) if isinstance(doc, dict) else None
    if isinstance(err, str):
        return err[:1000], None, None, None
    if not isinstance(err, dict):
        return None, None, None, None

    def text(key: str) -> str | None:
        value = err.get(key)
        return str(value)[:1000] if value is not None else None

    return text("message") or text("detail"), text("type"), text("param"), text("code")
