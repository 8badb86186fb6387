"""CPU per paced streamed chunk for a ladder of relays, from a C byte relay up to the proxy.

Usage::

    python -m loadtest.chunk_floor [--rounds 5] [--duration 3] [--conc 16] [--only c,uvloop,asyncio,http,floor,proxy]

Issue 14 asks for at most 15 µs of CPU per paced chunk (a chunk that arrives from the backend
on its own, so it costs a socket read, its handling and a socket write). To tell the machine's
own cost from the stack's, every rung runs in a process of its own and is measured alone:

- ``c``: a C epoll relay (compiled with ``cc`` into a temp dir), read → write: kernel and syscalls;
- ``uvloop``: a Python ``asyncio.Protocol`` on uvloop, ``data_received`` → ``transport.write``;
- ``asyncio``: the same Protocol on asyncio's default loop;
- ``http``: the uvloop relay parsing the upstream's HTTP chunked framing with httptools and
  framing each body piece again (the HTTP cost);
- ``floor`` / ``proxy``: ``loadtest/floor.py`` and this proxy, one gunicorn+uvicorn worker each.

Rungs a-d are fed by one paced sender (its own process: every ``--gap`` ms it writes one
~150-byte SSE event in chunked framing to each of ``--conc`` open streams) and drained by one
reader (its own process, counting bytes). Per chunk = (relay process CPU over the window − its
idle CPU over as long) / (chunks the reader got in the window). The floor and the proxy need
requests, so they get ``bench``'s mock (``mock-slow-1``) through ``paced50`` and ``paced3``,
and their per chunk is ``bench``'s (paced50 − paced3) / 47 of worker CPU per request. Rounds
are interleaved (a, b, ... f, a, b, ...); printed: median, mean and IQR over the rounds, user
and system apart, and the load average. The machine is shared: read the ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson
import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest import bench  # noqa: E402
from loadtest.client import LoadProcs, LoadSpec  # noqa: E402

HOST = "127.0.0.1"
_EVENT = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
          b'"choices":[{"index":0,"delta":{"content":"tok"}}]}\n\n')
_EVENT = _EVENT.ljust(150, b" ")  # ~150 bytes, as an SSE chunk of a chat-completions stream
FRAME = b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT)
HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
PACED_EXTRA_CHUNKS = 47  # paced50 minus paced3, as bench's "µs CPU per paced chunk"

C_RELAY = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
/* relay LISTEN_PORT UPSTREAM_PORT: each accepted connection gets its own upstream; bytes
   read on one side are written to the other, nothing else. */
static int peer[65536];
int main(int argc, char **argv) {
    int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0}, up = {0};
    a.sin_family = up.sin_family = AF_INET;
    a.sin_addr.s_addr = up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(atoi(argv[1])); up.sin_port = htons(atoi(argv[2]));
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 128)) { perror("bind"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept(ls, NULL, NULL), u = socket(AF_INET, SOCK_STREAM, 0);
                if (c < 0) continue;
                if (connect(u, (struct sockaddr *)&up, sizeof up)) { close(c); close(u); continue; }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                peer[c] = u; peer[u] = c;
                ev.data.fd = c; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                ev.data.fd = u; epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) { close(peer[fd]); close(fd); continue; }
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(peer[fd], buf + off, r - off);
                if (w <= 0) break;
                off += w;
            }
        }
    }
}
"""


# --- the paced sender and the reader ------------------------------------------------------------


def _sender(port: int, gap: float, ready: mp.synchronize.Event) -> None:
    """Every ``gap`` seconds one frame to every open connection, each its own socket write."""
    uvloop.install()

    async def run() -> None:
        conns: list[asyncio.StreamWriter] = []

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(HEAD)
            conns.append(writer)
            try:
                await reader.read()  # until the relay hangs up
            except OSError:
                pass
            finally:
                conns.remove(writer)
                writer.close()

        server = await asyncio.start_server(accept, HOST, port)
        ready.set()
        loop = asyncio.get_running_loop()
        tick = loop.time()
        async with server:
            while True:
                for w in conns:
                    if not w.is_closing():
                        w.write(FRAME)
                tick += gap
                await asyncio.sleep(max(0.0, tick - loop.time()))

    asyncio.run(run())


def _reader(port: int, conc: int, got: mp.sharedctypes.Synchronized, stop: mp.synchronize.Event) -> None:
    """``conc`` connections to the relay; every byte received is added to ``got``."""
    uvloop.install()

    class Count(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.value += len(data)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        transports = [(await loop.create_connection(Count, HOST, port))[0] for _ in range(conc)]
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for t in transports:
            t.close()

    asyncio.run(run())


# --- the Python relays (each run in a process of its own) ---------------------------------------


class _Upstream(asyncio.Protocol):
    """The relay's connection to the sender: hands what it reads to ``on_data``."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self.on_data = on_data

    def data_received(self, data: bytes) -> None:
        self.on_data(data)


class _Relay(asyncio.Protocol):
    """Per client connection: opens an upstream connection and writes what it reads to the client."""

    upstream_port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.upstream: asyncio.Transport | None = None
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.upstream, _ = await loop.create_connection(lambda: _Upstream(self.forward()), HOST, self.upstream_port)

    def forward(self) -> Callable[[bytes], None]:
        return self.client.write

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


class _HttpRelay(_Relay):
    """Parses the upstream's chunked response with httptools and frames each body piece again."""

    def forward(self) -> Callable[[bytes], None]:
        import httptools

        write = self.client.write

        class Callbacks:
            def on_headers_complete(self) -> None:
                write(HEAD)

            def on_body(self, body: bytes) -> None:
                write(b"%x\r\n%s\r\n" % (len(body), body))

        return httptools.HttpResponseParser(Callbacks()).feed_data


def _python_relay(kind: str, port: int, upstream_port: int) -> None:
    if kind != "asyncio":
        uvloop.install()
    cls = _HttpRelay if kind == "http" else _Relay
    cls.upstream_port = upstream_port

    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(cls, HOST, port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Sample:
    user: float  # µs per chunk
    system: float
    rate: float  # chunks per second relayed

    @property
    def total(self) -> float:
        return self.user + self.system


def _times(p: psutil.Process) -> tuple[float, float]:
    t = p.cpu_times()
    return t.user, t.system


class RawRung:
    """A relay process fed by the paced sender; idle CPU rate taken once, before any traffic."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes] | mp.Process, port: int) -> None:
        self.name, self.port = name, port
        assert proc.pid is not None
        self.proc = proc
        self.ps = psutil.Process(proc.pid)
        time.sleep(0.5)
        u0, s0 = _times(self.ps)
        time.sleep(2.0)
        u1, s1 = _times(self.ps)
        self.idle = ((u1 - u0) / 2.0, (s1 - s0) / 2.0)

    def measure(self, conc: int, duration: float) -> Sample:
        got = mp.Value("q", 0, lock=False)
        stop = mp.Event()
        reader = mp.Process(target=_reader, args=(self.port, conc, got, stop), daemon=True)
        reader.start()
        time.sleep(1.0)  # connections open, streams flowing
        b0, (u0, s0), t0 = got.value, _times(self.ps), time.monotonic()
        time.sleep(duration)
        b1, (u1, s1), t1 = got.value, _times(self.ps), time.monotonic()
        stop.set()
        reader.join(10)
        chunks = max((b1 - b0) / len(FRAME), 1.0)
        span = t1 - t0
        return Sample((u1 - u0 - self.idle[0] * span) / chunks * 1e6, (s1 - s0 - self.idle[1] * span) / chunks * 1e6,
                      chunks / span)

    def stop(self) -> None:
        if isinstance(self.proc, subprocess.Popen):
            self.proc.terminate()
        else:
            self.proc.kill()


class ServiceRung:
    """The floor or the proxy, one worker, on bench's mock: (paced50 − paced3) / 47 per request."""

    def __init__(self, service: bench.Proc) -> None:
        self.name, self.service = service.name, service

    def _per_request(self, workload: str, conc: int, duration: float) -> tuple[float, float]:
        body = orjson.dumps(bench.WORKLOADS[workload])
        headers = (("Authorization", f"Bearer {bench.API_KEY}"),)
        start = time.time() + 1.0
        end = start + duration
        load = LoadProcs(LoadSpec(bench.HOST, self.service.port, "POST", "/v1/responses", body,
                                  "responses-stream", conc, start, end, headers=headers), 1)
        worker = self.service.workers()[0]
        bench.sleep_until(start)
        u0, s0 = _times(worker)
        bench.sleep_until(end)
        u1, s1 = _times(worker)
        result = load.join(timeout=duration + 120)
        if result.errors:
            print(f"{self.name} {workload}: {result.errors} errors, e.g. {result.error_samples[:2]}")
        n = max(result.ok, 1)
        return (u1 - u0) / n, (s1 - s0) / n

    def measure(self, conc: int, duration: float) -> Sample:
        long_u, long_s = self._per_request("paced50", conc, duration)
        short_u, short_s = self._per_request("paced3", conc, duration)
        k = 1e6 / PACED_EXTRA_CHUNKS
        return Sample((long_u - short_u) * k, (long_s - short_s) * k, 0.0)

    def stop(self) -> None:
        self.service.stop()


def _report(samples: dict[str, list[Sample]]) -> None:
    base = samples.get("uvloop") or next(iter(samples.values()))
    print(f"{'relay':8} {'median':>7} {'mean':>7} {'IQR':>13} {'user':>6} {'sys':>6} {'x uvloop':>8}  rounds (µs)")
    for name, rows in samples.items():
        tot = [s.total for s in rows]
        lo, hi = bench.quartiles(tot)
        ratio = statistics.median(t / b.total if b.total else float("nan") for t, b in zip(tot, base))
        print(f"{name:8} {statistics.median(tot):7.1f} {statistics.mean(tot):7.1f} {lo:6.1f}-{hi:<6.1f} "
              f"{statistics.median(s.user for s in rows):6.1f} {statistics.median(s.system for s in rows):6.1f} "
              f"{ratio:8.2f}  {[round(t, 1) for t in tot]}", flush=True)


def _c_relay(tmp: Path) -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, exe = tmp / "relay.c", tmp / "relay"
    src.write_text(C_RELAY)
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.chunk_floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="c,uvloop,asyncio,http,floor,proxy", help="comma-separated rungs")
    ap.add_argument("--conc", type=int, default=16, help="streams per rung")
    ap.add_argument("--gap", type=float, default=1.0, help="ms between a stream's chunks")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per round and rung")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    wanted = args.only.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="chunk-floor-"))
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    sender_port = bench.devtools.free_port()
    ready = mp.Event()
    sender = mp.Process(target=_sender, args=(sender_port, args.gap / 1000, ready), daemon=True)
    sender.start()
    ready.wait(10)
    rungs: list[RawRung | ServiceRung] = []
    mock = None
    try:
        for name in wanted:
            if name in ("floor", "proxy"):
                if mock is None:
                    mock = bench.start_mock(1, tmp)
                backend = mock.url + "/v1"
                svc = (bench.start_floor(backend, 1, tmp) if name == "floor"
                       else bench.start_proxy("proxy", ROOT, backend, 1, {}, tmp))
                rungs.append(ServiceRung(svc))
                continue
            port = bench.devtools.free_port()
            if name == "c":
                exe = _c_relay(tmp)
                if exe is None:
                    print("c: no cc here, skipped")
                    continue
                proc: subprocess.Popen[bytes] | mp.Process = subprocess.Popen([str(exe), str(port), str(sender_port)])
            else:
                proc = mp.Process(target=_python_relay, args=(name, port, sender_port), daemon=True)
                proc.start()
            rungs.append(RawRung(name, proc, port))
        samples: dict[str, list[Sample]] = {r.name: [] for r in rungs}
        for i in range(args.rounds):
            for r in rungs:
                samples[r.name].append(r.measure(args.conc, args.duration))
            cells = (f"{n} {s[-1].total:.1f} ({s[-1].rate:.0f}/s)" for n, s in samples.items())
            print(f"round {i + 1}: " + "  ".join(cells), flush=True)
        print(f"-- µs CPU per paced chunk, {args.conc} streams, a chunk every {args.gap:g} ms, {args.rounds} x "
              f"{args.duration:g} s per rung, idle subtracted; floor/proxy: (paced50 - paced3) / 47 per request")
        _report(samples)
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        for r in rungs:
            r.stop()
        if mock is not None:
            mock.stop()
        sender.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
