"""The relay alone on paced chunks: CPU per upstream read, in one process, for any checkout.

A loopback server answers with ``--chunks`` SSE chunks, each its own network write a fraction of a
millisecond apart (as a real backend streams tokens), and the proxy's own relay, translator and
upstream client read them; the process's CPU time (server included: the same for every checkout)
is divided by the batches the relay yielded, i.e. by its reads. Run it from the checkout to
measure::

    cd /path/to/checkout && PYTHONPATH=. /work/main/.venv/bin/python -m loadtest.relay_micro

(2026-12-01, this machine shared: the relay as of main 579f0ae 80-88 µs per read, 1,334 reads for
2,000 chunks; with the transport's Body read under an Interrupt 29-41 µs per read, 2,001 reads.)
"""
from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import uvloop

from proxy.relay import KEEPALIVE, Outcome, relay
from proxy.settings import Settings
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.stream import StreamTranslator
from proxy.upstream import Upstream, create_client


def _serve(chunks: int, gap_secs: float):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        for i in range(chunks):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "ab"},
                                  "finish_reason": "stop" if i == chunks - 1 else None}]}
            data = b"data: " + orjson.dumps(chunk) + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(gap_secs)
        data = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        await writer.drain()
        writer.close()

    return serve


async def _main(chunks: int, rounds: int, gap_secs: float) -> None:
    server = await asyncio.start_server(_serve(chunks, gap_secs), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    upstream = Upstream(create_client(Settings()), url)
    _, ctx = translate_request({"model": "m", "input": "hi", "stream": True}, TranslationPolicy())
    for n in range(rounds):
        response = await upstream.open(b"{}", {"content-type": "application/json"})
        translator = StreamTranslator(ctx, emit_events=True)
        disconnected = asyncio.get_running_loop().create_future()
        reads = 0
        cpu0 = time.process_time()
        async for batch in relay(response, translator, Outcome(), disconnected=disconnected, keepalive_secs=15.0,
                                 deadline=None, max_event_bytes=1 << 20, idle_timeout_secs=60.0,
                                 redact=lambda payload: payload):
            reads += batch is not KEEPALIVE
        cpu = time.process_time() - cpu0
        await response.aclose()
        print(f"round {n}: {reads} reads for {chunks} chunks, {cpu / reads * 1e6:.1f} µs CPU per read "
              f"({cpu / chunks * 1e6:.1f} per chunk)", flush=True)
    await upstream.aclose()
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m loadtest.relay_micro", description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gap-ms", type=float, default=0.3, help="pause between the server's writes")
    args = ap.parse_args()
    uvloop.run(_main(args.chunks, args.rounds, args.gap_ms / 1000))


if __name__ == "__main__":
    main()
