"""Start the proxy and the mock backend as real processes, for the demo,
the tests and the load tests (never used by the service itself)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers (any status), or fail with the process's fate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


class Service:
    """A child process on a loopback port, with its output in a log file."""

    def __init__(
        self, args: list[str], port: int, health_path: str, env: dict[str, str], log_path: Path, cwd: Path = ROOT
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_http(self.url + health_path, self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text("utf-8", "replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def start_mock(
    log_path: Path, port: int | None = None, workers: int = 1, max_records: int | None = None
) -> Service:
    port = port or free_port()
    args = [sys.executable, "-m", "proxy.mock", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if max_records is not None:
        args += ["--max-records", str(max_records)]
    return Service(args, port, "/_mock/health", dict(os.environ), log_path)


def start_proxy(
    backend_url: str, log_path: Path, port: int | None = None, root: Path = ROOT, **env: str
) -> Service:
    """``gunicorn -c conf/gunicorn.conf.py``, exactly as deployed, on a loopback port
    (from ``root``: another checkout of the proxy, for side-by-side benchmarks).

    Each proxy gets a response store of its own — an SQLite file beside its log —
    unless ``RESPONSE_STORE_URL`` is given (instances that must share one, or ``none``).
    """
    port = port or free_port()
    full_env = dict(os.environ)
    full_env.update(
        {
            "HOST_PORT": str(port), "BACKEND_URL": backend_url, "WEB_CONCURRENCY": "2", "LOG_LEVEL": "info",
            "RESPONSE_STORE_URL": f"sqlite:///{log_path.with_suffix('.store.sqlite3').resolve()}",
        }
    )
    full_env.pop("PORT", None)
    full_env.update(env)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return Service([gunicorn, "-c", "conf/gunicorn.conf.py"], port, "/health", full_env, log_path, cwd=root)
