"""What lies under the worker's ``httpx.AsyncClient``: an aiohttp transport with less per request.

httpx stays the API of every upstream request (``AsyncClient.send``, its
``Response``, its exceptions); this module is the layer beneath it, in place
of httpx-aiohttp's ``AiohttpTransport`` (the same aiohttp session). Measured with py-spy under load
(loadtest/bench.py --profile), the layers around aiohttp's own work cost more
CPU than translating a JSON answer; this one removes what we never use:

- aiohttp's ``ClientTimeout`` and the target URL are built once, not per request;
- the response body is a ``Body`` whose ``read()`` is one cancel-safe
  coroutine per network read, handed to the relay as the response extension
  ``READER``: the relay reads it without httpx's four generator layers per
  chunk, and awaits it in its own task, interrupted when the client leaves or
  a timer falls due (``proxy.interrupt``), instead of racing a task per read;
- the client keeps no cookies (``PoolClient``): the pool serves every client,
  so a backend's ``Set-Cookie`` must never ride along on another client's
  request (httpx's jar would have replayed it), and parsing it cost 4% of a request;
- aiohttp's exceptions become the httpx exception that says what failed
  (``_mapped``): httpx-aiohttp's mapping named every ``ClientConnectionError``
  (a refused connect, a reset, a server closing mid-stream) ``ConnectTimeout``,
  so its callers had to read the chained aiohttp exception to tell them apart.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

READER = "proxy.reader"
"""The ``httpx.Response.extensions`` key of the response's ``Body`` (absent on other transports)."""

_HTTP11 = b"HTTP/1.1"


class Body(httpx.AsyncByteStream):
    """An upstream response body, read one network read at a time."""

    __slots__ = ("_response", "_content")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._content = response.content

    async def read(self) -> bytes:
        """What arrived since the last read, ``b""`` at the end of the body.

        Safe to cancel: aiohttp's ``StreamReader.readany`` takes bytes out of its
        buffer only after its wait returned, so a read cancelled while it waits
        (or whose wake-up a cancellation overtakes) leaves them for the next read
        (tests/unit/test_interrupt.py proves it on a real connection). Errors
        are httpx's (``_mapped``).
        """
        try:
            return await self._content.readany()
        except _RAISED as exc:
            raise _mapped(exc) from exc

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._response.__aexit__(None, None, None)
        except _RAISED as exc:
            raise _mapped(exc) from exc


class ChatTransport(httpx.AsyncBaseTransport):
    """httpx requests over one aiohttp session: HTTP/1.1, no proxy (``trust_env`` is off
    everywhere), no redirects or decompression by aiohttp (httpx decides both)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._timeouts: dict[tuple[Any, Any, Any], aiohttp.ClientTimeout] = {}
        self._last: tuple[httpx.URL, URL] | None = None  # the chat URL: one object, sent again and again

    def _timeout(self, spec: dict[str, Any]) -> aiohttp.ClientTimeout:
        key = (spec.get("connect"), spec.get("read"), spec.get("pool"))
        found = self._timeouts.get(key)
        if found is None:
            if len(self._timeouts) > 64:  # a caller varying its timeouts: no unbounded cache
                self._timeouts.clear()
            # As httpx-aiohttp maps an httpx.Timeout: connect, read silence, pool wait.
            found = self._timeouts[key] = aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
        return found

    def _url(self, url: httpx.URL) -> URL:
        last = self._last
        if last is not None and last[0] is url:
            return last[1]
        found = URL(str(url), encoded=True)  # httpx has percent-encoded it
        self._last = (url, found)
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        extensions = request.extensions
        data: bytes | httpx.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # type: ignore[assignment]  # an async request's stream is async
            request.headers.pop("transfer-encoding", None)  # aiohttp frames it
        try:
            response = await self.session.request(
                request.method, self._url(request.url), headers=_headers(request.headers), data=data,
                allow_redirects=False, auto_decompress=False, compress=False,
                timeout=self._timeout(extensions.get("timeout", {})),
                server_hostname=extensions.get("sni_hostname"),
            )
        except _RAISED as exc:  # mapped only when raised: no context manager per request
            raise _mapped(exc) from exc
        body = Body(response)
        out_ext: dict[str, Any] = {"http_version": _HTTP11, READER: body}
        if response.reason:
            out_ext["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status, headers=response.raw_headers, stream=body, request=request,
            extensions=out_ext,
        )

    async def aclose(self) -> None:
        await self.session.close()


_RAISED = (aiohttp.ClientError, asyncio.TimeoutError)
"""What aiohttp raises for a failed request or read (its timeouts are ``asyncio.TimeoutError`` too)."""

# In order, the first match wins: aiohttp's classes overlap (ServerTimeoutError is a
# ServerConnectionError and an asyncio.TimeoutError; ClientSSLError is a ClientConnectorError).
_MAPPING: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], type[httpx.TransportError]], ...] = (
    # aiohttp names every timeout of connecting (pool wait included) ConnectionTimeoutError...
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    # ...so any other (SocketTimeoutError: sock_read; a bare ServerTimeoutError) is silence after it.
    (asyncio.TimeoutError, httpx.ReadTimeout),
    # No connection: refused, DNS, TLS handshake or certificate (ClientSSLError's kin), proxy, socket path.
    ((aiohttp.ClientConnectorError, aiohttp.ServerFingerprintMismatch), httpx.ConnectError),
    ((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), httpx.UnsupportedProtocol),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.UploadAbortedError, httpx.WriteError),
    # The connection ended or broke before the message did: the server closing (ServerDisconnectedError),
    # a reset or broken pipe (ClientOSError, ClientConnectionResetError), a body cut short or its framing
    # broken (ClientPayloadError). ReadError, not httpcore's RemoteProtocolError for a close, because
    # RemoteProtocolError says the bytes that did come are not HTTP (below): one is cut, the other malformed.
    ((aiohttp.ClientConnectionError, aiohttp.ClientPayloadError), httpx.ReadError),
)


def _mapped(exc: BaseException) -> httpx.TransportError:
    """The httpx exception that names what failed (raise it ``from exc``: logs keep aiohttp's).

    Anything not in ``_MAPPING`` is a reply aiohttp could not parse (ClientResponseError
    carrying the parser's error: a bad status line, headers or chunk size): RemoteProtocolError.
    """
    for raised, mapped in _MAPPING:
        if isinstance(exc, raised):
            return mapped(str(exc))
    return httpx.RemoteProtocolError(str(exc))


def _headers(headers: httpx.Headers) -> CIMultiDict[str]:
    """The request's headers as aiohttp keeps them, decoded once (as ``Headers.items()`` would
    decode them, without the merging of repeated names and the encoding test per item)."""
    encoding = headers.encoding
    return CIMultiDict([(name.decode(encoding), value.decode(encoding)) for name, value in headers.raw])


class _NoCookies(httpx.Cookies):
    """A jar that never takes a cookie (see the module docstring)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_NO_COOKIES = _NoCookies()


class PoolClient(httpx.AsyncClient):
    """The worker's ``httpx.AsyncClient``; it keeps no cookies (see the module docstring).

    ``chat`` is its ``ChatTransport``: ``proxy.upstream`` sends a chat request built in full
    (URL, headers, timeouts) to it directly, without the client's layers around it (auth and
    redirect flows, a context manager, a log call and the response's elapsed-time wrapper:
    about 14 µs of a request, none of which such a request uses).
    """

    def __init__(self, *, transport: ChatTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self.chat = transport

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("the upstream pool keeps no cookies")
