"""A lean closed-loop HTTP/1.1 load generator: asyncio + uvloop on raw sockets.

Why not httpx or Locust for the numbers: their per-request CPU (0.3-1 ms) is the
same order as what we measure in the proxy, and on a 2-core machine the load
generator shares cores with the system under test. This client does the minimum:
one pre-built request, keep-alive connections, a hand-rolled response parser
(``Content-Length`` or ``chunked``), and one success check per answer. Its
ceiling is shown in every bench run by driving the mock backend directly.

``run_load(spec)`` runs ``spec.connections`` connections in one process, each
sending requests back to back until ``spec.t_end``; only requests that *finish*
inside ``[t_start, t_end]`` (wall clock, shared across processes) are recorded,
so a caller can snapshot server CPU at exactly those instants and divide by the
count. ``run_load_procs`` splits the connections over several processes.
"""
from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field

try:
    import uvloop
except ImportError:  # pragma: no cover - the runtime requirements include it
    uvloop = None

from loadtest.checks import COMPLETED_TAIL, json_failure, stream_failure


def chat_stream_failure(status: int, content_type: str, body: bytes) -> str | None:
    """A direct chat-completions stream is complete when it ends with ``[DONE]``."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if not body.endswith(COMPLETED_TAIL):
        return f"chat stream does not end with [DONE]: {body[-200:]!r}"
    return None


def data_only_stream_failure(status: int, content_type: str, body: bytes) -> str | None:
    """A Responses stream without ``event:`` lines (LiteLLM's): its last data is ``response.completed``."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if not body.endswith(COMPLETED_TAIL):
        return f"stream does not end with [DONE]: ...{body[-200:]!r}"
    last = body[: -len(COMPLETED_TAIL)].rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    if b'"type":"response.completed"' not in last[:40].replace(b" ", b"") and not last.startswith(
        b"event: response.completed\n"
    ):
        return f"last event is not response.completed: {last[:200]!r}"
    return None


def health_failure(status: int, content_type: str, body: bytes) -> str | None:
    return None if status == 200 else f"HTTP {status}: {body[:200]!r}"


CHECKS: dict[str, Callable[[int, str, bytes], str | None]] = {
    "responses-stream": stream_failure,
    "responses-json": lambda status, ctype, body: json_failure(status, body),
    "responses-stream-data": data_only_stream_failure,
    "chat-stream": chat_stream_failure,
    "health": health_failure,
}


@dataclass(slots=True)
class LoadSpec:
    host: str
    port: int
    method: str
    path: str
    body: bytes
    check: str  # a key of CHECKS
    connections: int
    t_start: float  # wall-clock (time.time()) start of the measured window
    t_end: float  # end of the window; no request starts after it
    headers: tuple[tuple[str, str], ...] = (("Authorization", "Bearer sk-bench"),)
    requests_per_connection: int | None = None  # None: loop until t_end
    connect_spread: float = 0.0  # open the connections over this many seconds
    think: float = 0.0  # pause between a connection's requests (probes), seconds
    interval: float = 0.0  # a connection starts a request every `interval` s (a fixed rate); 0: when answered
    keep_samples: bool = True


@dataclass(slots=True)
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, request sent → body complete
    ttfb: list[float] = field(default_factory=list)  # seconds, request sent → first body byte
    ok: int = 0  # successes finished inside the window
    errors: int = 0  # failures anywhere (inside the window or not)
    error_samples: list[str] = field(default_factory=list)
    completed_total: int = 0  # successes, window or not
    cpu_window: float = 0.0  # this process's CPU-seconds inside the window

    def merge(self, other: LoadResult) -> None:
        self.latencies += other.latencies
        self.ttfb += other.ttfb
        self.ok += other.ok
        self.errors += other.errors
        self.error_samples += other.error_samples[: max(0, 5 - len(self.error_samples))]
        self.completed_total += other.completed_total
        self.cpu_window += other.cpu_window


def build_request(spec: LoadSpec) -> bytes:
    lines = [f"{spec.method} {spec.path} HTTP/1.1", f"Host: {spec.host}:{spec.port}"]
    lines += [f"{k}: {v}" for k, v in spec.headers]
    if spec.method in ("POST", "PUT"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(spec.body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (spec.body if spec.method in ("POST", "PUT") else b"")


class BadResponse(Exception):
    pass


async def read_response(reader: asyncio.StreamReader, sent: float) -> tuple[int, str, bytes, float, bool]:
    """(status, content-type, body, seconds to first body byte, keep-alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    first = time.perf_counter() - sent
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise BadResponse(f"bad status line {lines[0]!r}") from None
    length = None
    chunked = False
    ctype = ""
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "content-type":
            ctype = value.strip()
        elif name == "connection":
            keep_alive = value.strip().lower() != "close"
    if chunked:
        parts: list[bytes] = []
        first_body = None
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
            if first_body is None:
                first_body = time.perf_counter() - sent
        return status, ctype, b"".join(parts), first_body or first, keep_alive
    if length is not None:
        body = await reader.readexactly(length) if length else b""
        return status, ctype, body, first, keep_alive
    body = await reader.read()  # until close
    return status, ctype, body, first, False


async def _connection(spec: LoadSpec, request: bytes, result: LoadResult, delay: float) -> None:
    check = CHECKS[spec.check]
    if delay:
        await asyncio.sleep(delay)
    writer = None
    sent_count = 0
    next_at = time.perf_counter()
    while time.time() < spec.t_end:
        if spec.interval:  # the rate does not follow the answers: a slower one waits less after it
            next_at += spec.interval
            pause = next_at - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
        if spec.requests_per_connection is not None and sent_count >= spec.requests_per_connection:
            break
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
            sent = time.perf_counter()
            writer.write(request)
            sent_count += 1
            status, ctype, body, first, keep_alive = await read_response(reader, sent)
            elapsed = time.perf_counter() - sent
            why = check(status, ctype, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BadResponse, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            keep_alive = False
        now = time.time()
        if why is not None:
            result.errors += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(why[:300])
            if writer is not None:
                writer.close()
                writer = None
            await asyncio.sleep(0.01)
            continue
        result.completed_total += 1
        if spec.t_start <= now <= spec.t_end:
            result.ok += 1
            if spec.keep_samples:
                result.latencies.append(elapsed)
                result.ttfb.append(first)
        if not keep_alive:
            writer.close()
            writer = None
        if spec.think:
            await asyncio.sleep(spec.think)
    if writer is not None:
        writer.close()


async def _run(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    request = build_request(spec)
    loop = asyncio.get_running_loop()
    cpu: dict[str, float] = {}

    def mark(name: str) -> None:
        cpu[name] = time.process_time()

    loop.call_later(max(0.0, spec.t_start - time.time()), mark, "start")
    loop.call_later(max(0.0, spec.t_end - time.time()), mark, "end")
    n = spec.connections
    tasks = [
        asyncio.create_task(_connection(spec, request, result, spec.connect_spread * i / n if n > 1 else 0.0))
        for i in range(n)
    ]
    await asyncio.gather(*tasks)
    if "end" not in cpu:
        mark("end")
    result.cpu_window = cpu["end"] - cpu.get("start", cpu["end"])
    return result


def run_load(spec: LoadSpec) -> LoadResult:
    """Run one process's share of a load phase (blocking)."""
    if uvloop is not None:
        return uvloop.run(_run(spec))
    return asyncio.run(_run(spec))


def _child(spec: LoadSpec, conn) -> None:
    try:
        conn.send(run_load(spec))
    except BaseException as exc:  # report instead of hanging the parent
        conn.send(exc)
    finally:
        conn.close()


class LoadProcs:
    """``spec.connections`` split over ``procs`` forked processes; ``join()`` merges their results."""

    def __init__(self, spec: LoadSpec, procs: int) -> None:
        ctx = multiprocessing.get_context("fork")
        procs = max(1, min(procs, spec.connections))
        self._children = []
        base, extra = divmod(spec.connections, procs)
        for i in range(procs):
            share = base + (1 if i < extra else 0)
            part = dataclasses.replace(spec, connections=share)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(part, child), daemon=True)
            proc.start()
            child.close()
            self._children.append((proc, parent))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self._children]

    def join(self, timeout: float | None = None) -> LoadResult:
        merged = LoadResult()
        for proc, conn in self._children:
            if not conn.poll(timeout):
                proc.kill()
                raise TimeoutError("load process did not finish")
            out = conn.recv()
            proc.join()
            if isinstance(out, BaseException):
                raise out
            merged.merge(out)
        return merged
