"""HAProxy running the shipped ``conf/haproxy.cfg``, its runtime API and its log.

The configuration file is the very one we ship: the servers' addresses, the
listen address and the health-check timing come from environment variables it
reads (``"${NAME-default}"``), so the test only sets those. Server names are the
file's: ``proxy1``, ``proxy2``.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from proxy.devtools import ROOT, free_port, wait_http
from tests.deploy.tools import binary, stop_group, tail, unread_bytes
from tests.http import wait_for

CFG = ROOT / "conf" / "haproxy.cfg"
BACKEND = "responses_proxy"
SERVERS = ("proxy1", "proxy2")
# Production checks every 2 s and needs 3 failures; the tests cannot wait that long.
FAST_CHECKS = {"HAPROXY_CHECK_INTER": "200ms", "HAPROXY_CHECK_FALL": "2", "HAPROXY_CHECK_RISE": "2"}

# `option httplog`: client [date] frontend backend/server Tq/Tw/Tc/Tr/Ta status bytes
# cookies(2) termination(4) ac/fc/bc/sc/rc sq/bq {captured X-Request-ID} "request line"
_LOG = re.compile(
    r"^\S+ \[(?P<date>[^\]]+)\] \S+ (?P<backend>[^/\s]+)/(?P<server>\S+) "
    r"(?P<timers>\S+) (?P<status>-?\d+) \S+ \S+ \S+ (?P<term>\S{4}) "
    r"\d+/\d+/\d+/\d+/(?P<retries>\+?\d+) \S+ \{(?P<rid>[^}]*)\} \"(?P<request>[^\"]*)\""
)


@dataclass(frozen=True)
class LogLine:
    """One request as HAProxy logged it (at its end)."""

    request_id: str
    server: str          # proxy1, proxy2, or <NOSRV>
    status: int          # -1: no response was sent
    termination: str     # e.g. "----" clean, "SD--" server died mid-body, "SH--" before headers
    received: float      # epoch seconds
    total_ms: int
    retries: int
    redispatched: bool
    request: str

    @property
    def ended(self) -> float:
        return self.received + max(self.total_ms, 0) / 1000.0


def parse_log(text: str) -> list[LogLine]:
    out = []
    for line in text.splitlines():
        m = _LOG.match(line)
        if not m:
            continue
        received = datetime.strptime(m["date"], "%d/%b/%Y:%H:%M:%S.%f").timestamp()
        retries = m["retries"]
        out.append(
            LogLine(
                request_id=m["rid"], server=m["server"], status=int(m["status"]), termination=m["term"],
                received=received, total_ms=int(m["timers"].rsplit("/", 1)[-1]),
                retries=int(retries.lstrip("+")), redispatched=retries.startswith("+"), request=m["request"],
            )
        )
    return out


class HAProxy:
    """``haproxy -W -f conf/haproxy.cfg`` (master-worker, foreground) on a free port."""

    def __init__(self, servers: dict[str, int], log_path: Path, extra_cfg: Path | None = None, **env: str) -> None:
        """``extra_cfg``: a second file after the shipped one (sections of a test's own, under its ``defaults``)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # A short path: unix socket names are limited to 107 bytes.
        self._sockdir = tempfile.mkdtemp(prefix="hap-")
        self.admin_socket = os.path.join(self._sockdir, "admin.sock")
        full_env = dict(os.environ)
        full_env.update(FAST_CHECKS)
        full_env.update(
            {
                "HAPROXY_BIND": f"127.0.0.1:{self.port}",
                "HAPROXY_ADMIN_SOCKET": self.admin_socket,
                **{f"RESPONSES_PROXY_{i}": f"127.0.0.1:{servers[name]}" for i, name in enumerate(SERVERS, 1)},
            }
        )
        full_env.update(env)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [binary("haproxy"), "-W", "-f", str(CFG), *(["-f", str(extra_cfg)] if extra_cfg else [])], cwd=ROOT, env=full_env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_http(self.url + "/health", self.proc)
            wait_for(lambda: os.path.exists(self.admin_socket), 10, what="HAProxy's admin socket")
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ runtime API

    def command(self, line: str) -> str:
        """One runtime API command (``show stat``, ``set server …``) on the admin socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(self.admin_socket)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` rows of our backend's servers, by server name."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == BACKEND and row.get("svname") in SERVERS:
                rows[row["svname"]] = row
        return rows

    def status(self, server: str) -> str:
        """``UP``, ``DOWN``, ``DRAIN``, ``UP 1/2`` (going down), ``DOWN 1/2`` (coming up)…"""
        return self.stats()[server]["status"]

    def current_sessions(self, server: str) -> int:
        return int(self.stats()[server]["scur"] or 0)

    def set_state(self, server: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint``: what an operator does around a planned restart."""
        out = self.command(f"set server {BACKEND}/{server} state {state}")
        assert not out.strip(), f"set server {server} state {state}: {out!r}"

    def drain(self, server: str, port: int) -> float:
        """Take ``server`` out of rotation before a planned SIGHUP or SIGTERM; returns when done.

        `state drain`: no new request goes to it, those in progress go on. Then wait
        until every request already sent to it has been read: uvicorn closes a connection
        that has no request in progress the moment it shuts down, so a request still
        unread in its socket would be lost, and HAProxy cannot resend a POST.
        """
        self.set_state(server, "drain")
        self.wait_status(server, "DRAIN")
        wait_for(lambda: unread_bytes(port) == 0, 10, interval=0.01, what=f"{server} to read what it was sent")
        return time.time()

    def wait_status(self, server: str, status: str, timeout: float = 20.0) -> float:
        wait_for(lambda: self.status(server) == status, timeout, interval=0.02, what=f"{server} {status} in HAProxy")
        return time.time()

    # ------------------------------------------------------------------ process

    def log_lines(self) -> list[LogLine]:
        self._log.flush()
        return parse_log(self.log_path.read_text("utf-8", "replace"))

    def log_text(self) -> str:
        return tail(self.log_path)

    def worker_pids(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def reload(self) -> None:
        """A graceful reload: SIGUSR2 to the master (what ``systemctl reload haproxy`` does)."""
        self.proc.send_signal(signal.SIGUSR2)

    def stop(self) -> None:
        # SIGUSR1: soft stop (finish what is in flight); SIGKILL of the group after the timeout.
        stop_group(self.proc, signal.SIGUSR1, timeout=15)
        self._log.close()
        for name in (self.admin_socket, self._sockdir):
            try:
                (os.unlink if name == self.admin_socket else os.rmdir)(name)
            except OSError:
                pass


@dataclass
class StatusWatch:
    """Samples every server's HAProxy status in a thread and keeps the transitions."""

    haproxy: HAProxy
    interval: float = 0.02
    transitions: list[tuple[float, str, str]] = field(default_factory=list)  # (epoch, server, status)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> StatusWatch:
        last: dict[str, str] = {}

        def run() -> None:
            while not self._stop.is_set():
                try:
                    stats = self.haproxy.stats()
                except OSError:
                    stats = {}
                now = time.time()
                for server, row in stats.items():
                    if last.get(server) != row["status"]:
                        last[server] = row["status"]
                        self.transitions.append((now, server, row["status"]))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=run, name="haproxy-status", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def first(self, server: str, status: str, after: float, timeout: float = 20.0) -> float:
        """When ``server`` was first seen in ``status`` at or after ``after`` (waits for it)."""
        def seen() -> float | None:
            current = None  # the server's status at `after`, then each change since
            for t, s, st in list(self.transitions):
                if s != server:
                    continue
                if t < after:
                    current = st
                    continue
                if current == status:
                    return after
                if st == status:
                    return t
                current = st
            return after if current == status else None

        return wait_for(seen, timeout, what=f"{server} {status} in HAProxy")
