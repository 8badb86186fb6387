"""A real ``redis-server`` on a free loopback port, for tests that need Redis or must break it.

The session's shared server is CI's (``TEST_REDIS_URL``, started by ``.ci/run``) or one started
here; tests that stop, pause or fill Redis start their own with ``RedisServer`` and stop it in
a ``finally`` (or use it as a context manager).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from proxy.devtools import free_port


def redis_binary() -> str:
    """``redis-server``; without it the Redis tests skip locally and fail in CI."""
    path = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if path is None:
        message = "redis-server is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    """One ``redis-server`` process (no persistence) on ``port``; ``start`` again after a stop."""

    def __init__(self, port: int | None = None, *extra: str, directory: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = extra
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="redis-")
        self.directory = directory or Path(self._tmp.name)  # type: ignore[union-attr]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), *self.extra,
        ]
        log = open(self.directory / "redis.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    client.ping()
                return
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def send(self, sig: int) -> None:
        """Send ``sig`` (e.g. SIGSTOP to make it hang, SIGCONT to resume it)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM, or SIGKILL to make it vanish) and wait for it to be gone."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
