"""``proxy.transport`` names each way an upstream request fails with the httpx exception that says
what failed: no connection (``ConnectError``), no connection in time (``ConnectTimeout``), silence
after it (``ReadTimeout``), a connection that closed or broke (``ReadError``), bytes that are not
HTTP (``RemoteProtocolError``). ``proxy.upstream`` and ``proxy.relay`` classify by these alone,
so each is driven here for real: loopback listeners that refuse, never accept, close, reset, fall
silent, cut a body or answer garbage, read by the worker's own client
(``proxy.upstream.create_client``) through its transport, on asyncio's loop and on uvloop (the
workers' loop). httpx-aiohttp's mapping named most of these ``ConnectTimeout``.
"""
from __future__ import annotations

import asyncio
import select
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
import pytest
import uvloop

from proxy.devtools import free_port
from proxy.settings import Settings
from proxy.transport import READER, Body
from proxy.upstream import create_client

RUNNERS: dict[str, Callable[[Awaitable[Any]], Any]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}
GENEROUS = 60.0  # any wait a case does not mean to exhaust (a shared, loaded machine)
SHORT = 0.5  # the one wait a timeout case means to exhaust

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Event], Awaitable[None]]
_CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                 b"a\r\ndata: {}\n\n\r\n")  # one whole chunk (10 bytes): the answer has begun


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, not a FIN (SO_LINGER 0)."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _backend(reply: bytes = b"", *, mid_body: bytes | None = None,
             then: Callable[[asyncio.StreamWriter], None] | None = None) -> Handler:
    """Reads the request's head and writes ``reply``; with ``mid_body``, writes that once the client
    holds the answer (``answered``: the failure is then a body read's); then does ``then`` (a close,
    a reset) and waits for the client to go, so no task is left for the loop's end to cancel."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: asyncio.Event) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
            if mid_body is not None:
                await answered.wait()
                writer.write(mid_body)
                await writer.drain()
            if then is not None:
                then(writer)
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


async def _plain_http_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: asyncio.Event) -> None:
    """Speaks plain HTTP before any request: a TLS client's handshake fails on it."""
    try:
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()


# name: (listener, scheme, the httpx exception, raised by the request (send) or a body read (read),
#        read timeout)
CASES: dict[str, tuple[Handler | None, str, type[httpx.TransportError], str, float]] = {
    "refused": (None, "http", httpx.ConnectError, "send", GENEROUS),
    "tls-handshake-fails": (_plain_http_at_once, "https", httpx.ConnectError, "send", GENEROUS),
    "closed-before-answering": (_backend(then=_close), "http", httpx.ReadError, "send", GENEROUS),
    "reset-before-answering": (_backend(then=_reset), "http", httpx.ReadError, "send", GENEROUS),
    "never-answers": (_backend(), "http", httpx.ReadTimeout, "send", SHORT),
    "not-http": (_backend(b"garbage\r\n\r\n"), "http", httpx.RemoteProtocolError, "send", GENEROUS),
    "bad-chunk-with-the-head": (_backend(_CHUNKED_HEAD + b"zz\r\nnot a chunk\r\n"), "http",
                                httpx.RemoteProtocolError, "send", GENEROUS),
    "closed-mid-body": (_backend(_CHUNKED_HEAD, mid_body=b"", then=_close), "http", httpx.ReadError, "read", GENEROUS),
    "reset-mid-body": (_backend(_CHUNKED_HEAD, mid_body=b"", then=_reset), "http", httpx.ReadError, "read", GENEROUS),
    "silent-mid-body": (_backend(_CHUNKED_HEAD), "http", httpx.ReadTimeout, "read", SHORT),
}
# Not here: a broken chunk size after the answer's head. aiohttp 3.14 then wakes no read (it hangs
# until the relay's own idle timer ends it: tests/integration/test_edge_review.py), so there is no
# exception to map; in the same read as the head it is "bad-chunk-with-the-head".


async def _failure(
    url: str, connect: float, read: float, answered: asyncio.Event | None = None
) -> tuple[BaseException, str]:
    """What the worker's transport raised for one POST to ``url``, and whether sending or reading
    raised it; ``answered`` is set once the answer's head is in."""
    client = create_client(Settings())
    request = httpx.Request(
        "POST", url, content=b"{}", headers={"content-type": "application/json"},
        extensions={"timeout": httpx.Timeout(connect=connect, read=read, write=read, pool=connect).as_dict()},
    )
    try:
        try:
            response = await client.chat.handle_async_request(request)  # type: ignore[attr-defined]  # a PoolClient
        except Exception as exc:
            return exc, "send"
        if answered is not None:
            answered.set()
        body = response.extensions[READER]
        assert isinstance(body, Body)
        try:
            while await body.read():
                pass
        except Exception as exc:
            return exc, "read"
        finally:
            await response.aclose()
        raise AssertionError(f"{url}: the answer ended without a failure")
    finally:
        await client.aclose()


async def _served(handler: Handler | None, scheme: str, read: float) -> tuple[BaseException, str]:
    if handler is None:  # nobody listens on a port just freed
        return await _failure(f"{scheme}://127.0.0.1:{free_port()}/v1/chat/completions", GENEROUS, read)
    answered = asyncio.Event()
    server = await asyncio.start_server(lambda r, w: handler(r, w, answered), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        return await _failure(f"{scheme}://127.0.0.1:{port}/v1/chat/completions", GENEROUS, read, answered)
    finally:
        server.close()


def _check(exc: BaseException, phase: str, expected: type[httpx.TransportError], expected_phase: str) -> None:
    assert (type(exc), phase) == (expected, expected_phase), f"{type(exc).__name__} ({phase}): {exc}"
    # The aiohttp exception stays chained, for the logs.
    assert isinstance(exc.__cause__, (aiohttp.ClientError, asyncio.TimeoutError)), repr(exc.__cause__)


@pytest.mark.parametrize("loop", sorted(RUNNERS))
@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_is_the_httpx_exception_that_names_it(case: str, loop: str) -> None:
    handler, scheme, expected, expected_phase, read = CASES[case]
    exc, phase = RUNNERS[loop](_served(handler, scheme, read))
    _check(exc, phase, expected, expected_phase)


@contextmanager
def _full_backlog() -> Iterator[int]:
    """A listener that never accepts, its accept queue full: the kernel drops further SYNs, so a
    connect to it neither succeeds nor fails until the client's connect timeout. Yields its port."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(64):
            filler = socket.socket()
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex(address)
            _, done, _ = select.select([], [filler], [], 1.0)  # a loopback handshake takes microseconds
            if not done:  # this one's SYN was dropped: the queue is full
                break
        else:
            raise AssertionError("the listener's accept queue never filled")
        yield address[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_a_connect_that_never_completes_is_connect_timeout(loop: str) -> None:
    with _full_backlog() as port:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        exc, phase = RUNNERS[loop](_failure(url, SHORT, GENEROUS))
    _check(exc, phase, httpx.ConnectTimeout, "send")


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_a_name_that_does_not_resolve_is_connect_error(loop: str) -> None:
    """``.invalid`` never resolves (RFC 6761); the wait for the resolver is generous."""
    exc, phase = RUNNERS[loop](_failure("http://backend.invalid/v1/chat/completions", GENEROUS, GENEROUS))
    _check(exc, phase, httpx.ConnectError, "send")
    assert isinstance(exc.__cause__, aiohttp.ClientConnectorDNSError), repr(exc.__cause__)
