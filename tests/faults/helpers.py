"""Tools for driving the real process tree into faults and observing the outcome.

* ``worker_pids`` / ``wait_workers``: the gunicorn workers (children of the master).
* ``only_worker``: SIGSTOP every other worker so the next *new* connection is
  accepted by the chosen one (they share one listening socket; a stopped
  process never calls ``accept``). That makes "this request ran on worker X"
  deterministic instead of left to the kernel.
* ``completed_lines``: the ``request_completed`` metrics lines of a proxy log,
  with the pid of the worker that wrote them.
* ``stream``: a raw SSE request with the timing of each read (plain HTTP
  helpers — ``post``, ``error_of``, ``wait_for`` … — are in ``tests/http.py``).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import psutil

from proxy.devtools import Service
from tests.conftest import API_KEY
from tests.deploy.tools import running
from tests.http import auth, wait_for

TERMINAL = ("response.completed", "response.incomplete", "response.failed")

_COMPLETED = re.compile(
    r"\[(?P<pid>\d+)\] proxy\.metrics: request_completed: model=(?P<model>.*?), duration_ms=(?P<duration_ms>\d+), "
    r"status=(?P<status>[^,]*), http_status=(?P<http_status>\d+), key=(?P<key>\S+), request_id=(?P<request_id>\S+)"
)


# --------------------------------------------------------------------------- workers


def worker_pids(service: Service) -> list[int]:
    """Live worker pids (children of the gunicorn master), oldest first."""
    try:
        children = psutil.Process(service.pid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            if running(child.pid):  # (a zombie whose threads still exit still holds the listener)
                out.append((child.create_time(), child.pid))
        except psutil.NoSuchProcess:
            pass
    return [pid for _, pid in sorted(out)]


def reload_worker(service: Service) -> int:
    """SIGHUP a one-worker service (gunicorn starts a new worker, the old one stops gracefully) and
    return once the old worker has begun shutting down (its "Shutting down" line): its pid."""
    (old,) = worker_pids(service)
    service.signal(signal.SIGHUP)
    wait_for(lambda: f"[{old}] [INFO] Shutting down" in service.log_text(), 30, what="the old worker's shutdown")
    return old


def wait_workers(service: Service, count: int = 2, exclude: set[int] = frozenset(), timeout: float = 20.0) -> list[int]:
    """Wait until ``count`` workers not in ``exclude`` exist and each answers /health."""
    pids = wait_for(
        lambda: (lambda p: p if len(p) == count and not set(p) & set(exclude) else None)(worker_pids(service)),
        timeout, what=f"{count} workers (excluding {sorted(exclude)})",
    )
    for pid in pids:
        with only_worker(service, pid):
            httpx.get(service.url + "/health", timeout=timeout)
    return pids


@contextlib.contextmanager
def only_worker(service: Service, pid: int) -> Iterator[None]:
    """Stop every other worker while the body runs, so new connections go to ``pid``."""
    others = [p for p in worker_pids(service) if p != pid]
    assert pid in worker_pids(service), f"worker {pid} is not alive"
    stopped = []
    try:
        for other in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(other, signal.SIGSTOP)
                stopped.append(other)
        yield
    finally:
        for other in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(other, signal.SIGCONT)


# --------------------------------------------------------------------------- logs


@dataclass(frozen=True)
class Completed:
    pid: int
    model: str
    duration_ms: int
    status: str
    http_status: int
    request_id: str


def completed_lines(service: Service) -> list[Completed]:
    out = []
    for m in _COMPLETED.finditer(service.log_text()):
        out.append(
            Completed(
                int(m["pid"]), m["model"], int(m["duration_ms"]), m["status"], int(m["http_status"]), m["request_id"]
            )
        )
    return out


def completed_for(service: Service, request_id: str, timeout: float = 5.0, settle: float = 0.3) -> list[Completed]:
    """The metrics lines of one request: waits for the first, then a little longer for a duplicate."""
    wait_for(
        lambda: [c for c in completed_lines(service) if c.request_id == request_id],
        timeout, what=f"request_completed line for {request_id}",
    )
    time.sleep(settle)
    return [c for c in completed_lines(service) if c.request_id == request_id]


def split_sse(raw: bytes) -> tuple[list[dict], int, bool]:
    """(events, keep-alive comment count, ends with [DONE]) without asserting the grammar."""
    events: list[dict] = []
    keepalives = 0
    done = False
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        lines = block.split(b"\n")
        if all(line.startswith(b":") for line in lines):
            keepalives += 1
            continue
        for line in lines:
            if line == b"data: [DONE]":
                done = True
            elif line.startswith(b"data: "):
                events.append(orjson.loads(line[6:]))
    return events, keepalives, done


def terminal_problems(events: list[dict], done: bool) -> list[str]:
    """What is wrong with a finished stream's ending (empty list: nothing)."""
    problems = []
    types = [e.get("type") for e in events]
    terminals = [i for i, t in enumerate(types) if t in TERMINAL]
    if len(terminals) != 1:
        problems.append(f"{len(terminals)} terminal events")
    elif terminals[0] != len(events) - 1:
        problems.append("terminal event is not the last event")
    if not done:
        problems.append("no data: [DONE]")
    if [e.get("sequence_number") for e in events] != list(range(len(events))):
        problems.append("sequence numbers not 0..n-1")
    if types and types[-1] == "response.failed" and (len(types) < 2 or types[-2] != "error"):
        problems.append("response.failed not preceded by an error event")
    if types[:2] != ["response.created", "response.in_progress"]:
        problems.append(f"stream starts with {types[:2]}")
    return problems


@dataclass
class StreamResult:
    status: int
    raw: bytes
    events: list[dict]
    keepalives: int
    done: bool
    arrivals: list[tuple[float, bytes]]  # (monotonic time, chunk) as read from the socket


def stream(base: str, body: dict, *, key: str | None = API_KEY, headers: dict | None = None, timeout: float = 30.0) -> StreamResult:
    """Read a whole SSE response on a new connection, timing each network read."""
    h = auth(key)
    h.update(headers or {})
    arrivals: list[tuple[float, bytes]] = []
    with httpx.Client(timeout=timeout) as client:
        with client.stream("POST", base + "/v1/responses", json={**body, "stream": True}, headers=h) as r:
            for chunk in r.iter_raw():
                arrivals.append((time.monotonic(), chunk))
            status = r.status_code
    raw = b"".join(c for _, c in arrivals)
    events, keepalives, done = split_sse(raw) if status == 200 else ([], 0, False)
    return StreamResult(status, raw, events, keepalives, done, arrivals)


def raw_request(port: int, head: bytes, body: bytes = b"", *, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request with verbatim header bytes (what ``httpx`` refuses to send); returns (status, raw answer)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n" + head + b"\r\n" + body
        )
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data
