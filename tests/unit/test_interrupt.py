"""``proxy.interrupt`` and the reads it interrupts, on real loopback connections.

The relay awaits each upstream read in its own task and cancels that task when
the client leaves or a keepalive/idle/total time falls due. That is only correct
if an interrupted read loses no byte: these tests read real HTTP responses
through the worker's own client (``proxy.upstream.create_client``, aiohttp under
httpx) from a server on loopback that writes when the test says, interrupt reads
while they wait and while their wake-up is pending, and check every byte arrives
once, in order; and that an interruption never swallows a cancellation from
elsewhere nor leaves one behind. Each runs on asyncio's loop and on uvloop (the
workers' loop).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import uvloop

from proxy.interrupt import Interrupt, Interrupted
from proxy.relay import KEEPALIVE, Outcome, relay
from proxy.settings import Settings
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.stream import StreamTranslator
from proxy.transport import READER, Body
from proxy.upstream import Upstream, create_client

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    return RUNNERS[request.param]  # type: ignore[return-value]


class Server:
    """An HTTP/1.1 server on loopback whose one answer's chunks the test writes (``send``)."""

    def __init__(self, content_type: str = "text/event-stream") -> None:
        self.content_type = content_type
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def send(self, data: bytes | None) -> None:
        """Write ``data`` as one chunk (``None``: end the body)."""
        self.chunks.put_nowait(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + self.content_type.encode()
                     + b"\r\ntransfer-encoding: chunked\r\n\r\n")
        while (data := await self.chunks.get()) is not None:
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()


async def _open(server: Server) -> tuple[Upstream, httpx.Response]:
    upstream = Upstream(create_client(Settings()), server.url)
    response = await upstream.open(b"{}", {"content-type": "application/json"})
    return upstream, response


def _body(response: httpx.Response) -> Body:
    body = response.extensions[READER]
    assert isinstance(body, Body)
    return body


def test_a_read_interrupted_while_it_waits_loses_nothing(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> bytes:
        async with Server() as server:
            upstream, response = await _open(server)
            body, got = _body(response), b""
            disconnected = asyncio.get_running_loop().create_future()
            interrupt = Interrupt(disconnected)
            for i in range(20):
                with pytest.raises(Interrupted):  # nothing sent yet: the read waits, then its due time passes
                    await interrupt.wait(body.read(), time.monotonic() + 0.01)
                server.send(b"part %d;" % i)
                got += await interrupt.wait(body.read(), time.monotonic() + 30)
            server.send(None)
            assert await interrupt.wait(body.read(), time.monotonic() + 30) == b""
            interrupt.close()
            await response.aclose()
            assert upstream.in_flight == 0
            await upstream.aclose()
            return got

    assert run(main()) == b"".join(b"part %d;" % i for i in range(20))


def test_a_cancellation_that_overtakes_the_reads_wake_up_loses_nothing(run: Callable[[Awaitable[Any]], Any]) -> None:
    """The bytes arrived and the read's task is due to wake up with them when the interrupt
    lands in the same loop iteration: the read raises, the bytes stay for the next read."""

    async def main() -> list[bytes]:
        async with Server() as server:
            upstream, response = await _open(server)
            body = _body(response)
            content = response.extensions[READER]._content  # the aiohttp StreamReader the protocol feeds
            server.send(b"first")  # the body's framing begins on the wire (aiohttp insists)
            kept = [await body.read()]
            disconnected = asyncio.get_running_loop().create_future()
            interrupt = Interrupt(disconnected)
            reading = asyncio.ensure_future(interrupt.wait(body.read()))
            for _ in range(5):
                await asyncio.sleep(0)  # the read is now waiting for bytes
            assert not reading.done()
            # In one loop iteration the client leaves, then the bytes come (feed_data is what
            # the protocol does with them): the interrupt runs before the read's wake-up.
            disconnected.set_result(None)
            content.feed_data(b"arrived")
            with pytest.raises(Interrupted):
                await reading
            interrupt.close()
            kept.append(await body.read())
            server.send(b"later")
            kept.append(await body.read())
            await response.aclose()
            await upstream.aclose()
            return kept

    assert run(main()) == [b"first", b"arrived", b"later"]


def test_an_interruption_neither_swallows_nor_leaves_a_cancellation(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        disconnected = loop.create_future()
        interrupt = Interrupt(disconnected)
        # Interrupted by its due time: the task carries no cancellation afterwards.
        with pytest.raises(Interrupted):
            await interrupt.wait(asyncio.sleep(30), time.monotonic() + 0.01)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.01)  # no stray CancelledError at the next await

        # Cancelled from elsewhere while the interrupt fires as well: CancelledError, not Interrupted.
        # Both in one callback, so that no loop iteration separates them however loaded the machine
        # (two timers 1 ms apart let the task wake up in between, and the test fail: a flake in CI).
        gone = loop.create_future()
        both = Interrupt(gone)

        async def waiter() -> None:
            await both.wait(asyncio.sleep(30))

        waiting = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.01)

        def fire_and_cancel() -> None:
            gone.set_result(None)  # the interrupt fires (its callback runs next)
            waiting.cancel()

        loop.call_soon(fire_and_cancel)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert waiting.cancelled()
        both.close()

        # A result that is ready wins; a due time that passed while nothing waited fires nothing.
        assert await interrupt.wait(asyncio.sleep(0, "ready"), time.monotonic() + 0.05) == "ready"
        await asyncio.sleep(0.08)  # (its timer falls due meanwhile: a margin a loaded machine cannot eat)
        assert await interrupt.wait(asyncio.sleep(0.01, "late"), time.monotonic() + 30) == "late"

        # The client gone: every wait is interrupted, at once.
        disconnected.set_result(None)
        for _ in range(2):
            with pytest.raises(Interrupted):
                await interrupt.wait(asyncio.sleep(300))
        interrupt.close()

    run(main())


def test_the_relay_keeps_every_chunk_through_many_keepalives(run: Callable[[Awaitable[Any]], Any]) -> None:
    """Chunks 30 ms apart, keepalives every 5 ms: each read is interrupted several times; the
    answer is whole, in order, and the keepalives came between its chunks."""
    words = [f"w{i} " for i in range(15)]

    async def main() -> tuple[str, int]:
        async with Server() as server:
            upstream, response = await _open(server)
            _, ctx = translate_request({"model": "m", "input": "hi", "stream": True}, TranslationPolicy())
            translator = StreamTranslator(ctx, emit_events=True)
            disconnected = asyncio.get_running_loop().create_future()

            async def backend() -> None:
                for i, word in enumerate(words):
                    await asyncio.sleep(0.03)
                    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                             "choices": [{"index": 0, "delta": {"content": word},
                                          "finish_reason": "stop" if i == len(words) - 1 else None}]}
                    server.send(b"data: " + orjson.dumps(chunk) + b"\n\n")
                server.send(b"data: [DONE]\n\n")
                server.send(None)

            sending = asyncio.ensure_future(backend())
            keepalives = 0
            async for batch in relay(
                response, translator, Outcome(), disconnected=disconnected, keepalive_secs=0.005,
                deadline=None, max_event_bytes=1 << 20, idle_timeout_secs=30.0, redact=lambda p: p,
            ):
                keepalives += batch is KEEPALIVE
            await sending
            await response.aclose()
            await upstream.aclose()
            text = translator.response["output"][0]["content"][0]["text"]
            return text, keepalives

    text, keepalives = run(main())
    assert text == "".join(words)
    assert keepalives >= len(words)  # the reads really were interrupted, again and again
