"""Small helpers shared by the deployment tests: system programs, rendered copies
of shipped files, and the process trees they start."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.http import wait_for


def binary(name: str) -> str:
    """The path of a system program (haproxy, nginx, systemd-analyze…).

    A skip when it is missing on a developer's machine; a failure under CI,
    where ``.ci/run`` installs it, so a deployment test can never vanish there.
    """
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found:
        return found
    why = f"{name} is not installed (Debian: apt-get install {name})"
    if os.environ.get("CI"):
        pytest.fail(why + " — CI is set, so the deployment tests must run")
    pytest.skip(why)


def render(text: str, old: str, new: str, count: int = 1) -> str:
    """``text`` with ``old`` replaced by ``new``, which must occur exactly ``count`` times.

    The only difference allowed between a shipped file and the copy a test runs:
    an address or an install prefix, never a directive.
    """
    found = text.count(old)
    assert found == count, f"expected {old!r} {count} time(s) in the shipped file, found {found}"
    return text.replace(old, new)


def group_pids(pgid: int) -> list[int]:
    """Processes of a process group that still run (``running``)."""
    out = []
    for proc in psutil.process_iter(["pid"]):
        pid = proc.info["pid"]
        try:
            if os.getpgid(pid) == pgid and running(pid):
                out.append(pid)
        except ProcessLookupError:
            pass
    return out


def running(pid: int) -> bool:
    """Whether ``pid`` still runs: it exists and is not a zombie, or is a zombie whose threads do.

    A killed multi-threaded process (a worker with its store writer thread) can show its
    main thread as a zombie while another thread is still exiting. The open files, its
    listening socket among them, belong to the whole thread group and close only with its
    last thread, so such a process still accepts connections: it counts as running.
    """
    try:
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except (psutil.Error, FileNotFoundError):
        return False


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
    """Signal a child that leads its own process group, wait, then SIGKILL whatever is left."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc.pid)
    if proc.poll() is None:
        proc.wait(5)
    return proc.returncode


def kill_group(pgid: int, timeout: float = 10.0) -> float:
    """SIGKILL a whole process group and wait until none of it runs; returns when that was."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_for(lambda: not group_pids(pgid), timeout, what=f"process group {pgid} to die")
    return time.time()


def unread_bytes(port: int) -> int:
    """Bytes received but not yet read on established TCP connections to local ``port``.

    From ``/proc/net/tcp{,6}`` (``rx_queue`` of sockets whose local port it is):
    a request a server has been sent but has not read yet shows here.
    """
    total = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                total += int(queues.split(":")[1], 16)
    return total


def local_ports_to(pids: list[int], remote_port: int) -> set[int]:
    """Local ports of the TCP connections that processes ``pids`` hold to ``remote_port``
    (which instance's worker a request reached the mock backend from)."""
    ports = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections("tcp")
        except psutil.Error:
            continue
        ports.update(c.laddr.port for c in conns if c.raddr and c.raddr.port == remote_port)
    return ports


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text("utf-8", "replace")[-chars:]
    except FileNotFoundError:
        return ""
