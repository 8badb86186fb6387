"""``MockBackend``: run ``python -m proxy.mock`` in a subprocess and script it from tests.

A subprocess (not an in-process server) so the mock has its own event loop and a
``drop_after`` really breaks a TCP connection, exactly as a failing backend would.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
READY_PREFIX = "mock backend listening on "


class MockBackend:
    """A mock backend subprocess on a loopback port, plus its control API."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._client: httpx.Client | None = None

    def start(self, port: int | None = None, workers: int = 1, timeout: float = 15.0) -> str:
        """Start the mock (``port=None``: a free port) and return its base URL once healthy."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.mock", "--host", "127.0.0.1", "--port", str(port or 0), "--workers", str(workers)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self._proc, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        while self.url is None:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mock backend exited with {self._proc.returncode}")
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("mock backend did not print its ready line in time") from None
            if line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].strip()
        self._client = httpx.Client(base_url=self.url, timeout=10.0)
        while True:
            try:
                if self._client.get("/_mock/health").status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mock backend never became healthy")
            time.sleep(0.02)

    @staticmethod
    def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        # Keep draining stdout so the child never blocks on a full pipe.
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    def stop(self) -> None:
        """Stop the subprocess (SIGTERM, then SIGKILL after 5 s)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("MockBackend not started")
        return self._client

    def script(self, model: str, *responses: dict[str, Any], replace: bool = False) -> None:
        """Queue ``responses`` for requests with this ``model`` (``"*"``: any model)."""
        r = self.client.post("/_mock/script", json={"model": model, "responses": list(responses), "replace": replace})
        r.raise_for_status()

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Recorded chat requests in arrival order."""
        r = self.client.get("/_mock/requests", params={"model": model} if model is not None else None)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        self.client.post("/_mock/reset").raise_for_status()

    def __enter__(self) -> MockBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
