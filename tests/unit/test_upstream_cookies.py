"""The upstream pool serves every client, so it must keep no cookie: a backend's ``Set-Cookie`` on
one client's answer must never ride along on the next client's request (aiohttp's own jar would
replay it for a named host such as ``localhost``). A real loopback server, the worker's own client."""
from __future__ import annotations

import asyncio

from proxy.settings import Settings
from proxy.upstream import Upstream, create_client


async def _cookie_headers_seen() -> list[bytes | None]:
    seen: list[bytes | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = head.split(b"\r\n")
            headers = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
            headers = {k.lower(): v for k, v in headers.items()}
            await reader.readexactly(int(headers.get(b"content-length", b"0")))
            seen.append(headers.get(b"cookie"))
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"set-cookie: session=of-the-first-client; Path=/\r\n"
                         b"content-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://localhost:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    upstream = Upstream(create_client(Settings()), url)
    try:
        for _ in range(2):
            response = await upstream.open(b"{}", {"content-type": "application/json"})
            await response.aread()
            await response.aclose()
    finally:
        await upstream.aclose()
        server.close()
    return seen


def test_a_backend_cookie_is_never_sent_on_a_later_request() -> None:
    seen = asyncio.run(_cookie_headers_seen())
    assert seen == [None, None], seen
