"""A backend that resets the connection after reading the request (a pooled keep-alive connection
it had closed, a crash mid-request) is a failed backend, not a slow one: 502 ``backend_error``
kind ``disconnected``, never the timeout's 504. Real loopback servers, the worker's own client."""
from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from proxy.failures import Failure
from proxy.settings import Settings
from proxy.upstream import Upstream, create_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    # SO_LINGER 0: close() sends a RST instead of a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _close_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def _failure_from(handler: Handler) -> Failure:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    upstream = Upstream(create_client(Settings()), url)
    try:
        with pytest.raises(Failure) as caught:
            await upstream.open(b"{}", {"content-type": "application/json"})
        return caught.value
    finally:
        await upstream.aclose()
        server.close()


@pytest.mark.parametrize("handler", [_reset_after_request, _close_after_request], ids=["reset", "closed"])
def test_a_connection_cut_after_the_request_is_a_failed_backend_not_a_timeout(handler: Handler) -> None:
    failure = asyncio.run(_failure_from(handler))
    assert failure.kind == "disconnected", (failure.kind, failure.message)
    assert failure.code == "backend_error"
    assert "in time" not in failure.message
