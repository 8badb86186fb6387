"""Continuous client load for the deployment tests.

Several threads send requests until stopped, each cycling through the request
kinds it is given and recording one ``Outcome`` per request. Even threads keep
one HTTP client (keep-alive, like the SDKs); odd threads open a new connection
per request (unless ``all_keepalive``). Every request carries its own ``X-Request-ID``, which HAProxy logs
and the proxy uses as its request id, so a test can tell where each one went.

The kinds, ``KINDS`` among them, are in ``tests/deploy/kinds.py``.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from tests.deploy.kinds import KINDS, Kind
from tests.http import wait_for

CLIENT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome:
    request_id: str
    kind: str
    keepalive: bool
    started: float  # epoch seconds, when the client began sending
    ended: float
    status: int | None  # None: no HTTP answer at all
    ok: bool
    detail: str

    def describe(self) -> str:
        conn = "keep-alive" if self.keepalive else "new conn"
        return f"{self.request_id} {self.kind} ({conn}) {self.started:.3f}-{self.ended:.3f}: {self.detail}"


class Load:
    """``threads`` clients sending ``kinds`` to ``url`` from ``__enter__`` to ``__exit__``."""

    def __init__(
        self, url: str, kinds: dict[str, Kind] | None = None, threads: int = 6, all_keepalive: bool = False
    ) -> None:
        self.url = url
        self.all_keepalive = all_keepalive
        self.kinds = list((kinds or KINDS).items())
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True) for i in range(threads)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._ids = itertools.count()
        self.prefix = "ld" + os.urandom(3).hex()

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(CLIENT_TIMEOUT + 10)

    def _clients(self, keepalive: bool) -> Iterator[httpx.Client]:
        if keepalive:
            with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
                while True:
                    yield client
        while True:
            with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
                yield client

    def _run(self, index: int) -> None:
        keepalive = self.all_keepalive or index % 2 == 0
        clients = self._clients(keepalive)
        kinds = itertools.islice(itertools.cycle(self.kinds), index, None)
        while not self._stop.is_set():
            name, kind = next(kinds)
            client = next(clients)
            request_id = f"{self.prefix}-{next(self._ids)}"
            started = time.time()
            try:
                status, ok, detail = kind(client, self.url, request_id)
            except httpx.HTTPError as exc:
                status, ok, detail = None, False, f"{type(exc).__name__}: {exc}"
            outcome = Outcome(request_id, name, keepalive, started, time.time(), status, ok, detail)
            with self._lock:
                self._outcomes.append(outcome)
        clients.close()

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes() if not o.ok]

    def wait_until(self, predicate: Callable[[list[Outcome]], bool], timeout: float, what: str) -> None:
        """Poll the outcomes so far until ``predicate`` holds."""
        wait_for(lambda: predicate(self.outcomes()), timeout, interval=0.05, what=what)
