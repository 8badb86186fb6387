"""The systemd unit ``conf/responses-proxy.service``.

systemd is not PID 1 here, so the unit cannot be started by systemd itself:

- ``systemd-analyze verify`` on it (install prefix rendered to this checkout)
  passes with nothing to say, and is shown to catch a broken copy: an unknown
  key only prints a warning (exit 0), hence the empty-output check; a missing
  ExecStart binary fails outright;
- ``systemd-analyze security --offline`` keeps its exposure score at or below 3.5;
- its own ExecStart, ExecReload and stop signal are then run the way systemd
  would, with the unit's umask, Environment= lines, an EnvironmentFile and a
  NOTIFY_SOCKET (not as DynamicUser's unprivileged user: the venv's interpreter
  need not be reachable by one on a developer machine): gunicorn reports
  READY=1 (Type=notify), reloads on ExecReload, drains a stream in flight on
  KillSignal and exits 0; an invalid setting exits 2 (RestartPreventExitStatus).
"""
from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import psutil

from proxy.devtools import ROOT, free_port, wait_http
from tests.deploy import unit
from tests.deploy.tools import binary, group_pids, kill_group
from tests.faults.helpers import stream
from tests.http import health, wait_for

MARGIN_SECS = 30  # the stop timeout's lead over the graceful timeout, as the unit's comment says


def _write_unit(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "responses-proxy.service"
    path.write_text(text)
    return path


def _verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([binary("systemd-analyze"), "verify", "--man=false", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_passes_and_catches_broken_copies(tmp_path):
    good = _verify(_write_unit(tmp_path, unit.render()))
    assert good.returncode == 0 and not (good.stdout + good.stderr).strip(), good.stdout + good.stderr
    typo = _verify(_write_unit(tmp_path, unit.render().replace("\nRestart=always", "\nRestat=always")))
    assert "Unknown key" in typo.stdout + typo.stderr, typo
    missing = _verify(_write_unit(tmp_path, unit.render(Path("/nonexistent/prefix"))))
    assert missing.returncode != 0 and "not executable" in missing.stdout + missing.stderr, missing


def test_systemd_analyze_security_exposure(tmp_path):
    path = _write_unit(tmp_path, unit.render())
    out = subprocess.run([binary("systemd-analyze"), "security", "--offline=true", "--threshold=35", str(path)],
                         capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout)
    print(f"\nsystemd-analyze security: exposure {score[1] if score else '?'}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr


def test_stop_timeout_outlasts_the_drain_and_the_graceful_timeout():
    service = unit.service_section(unit.render())
    env = unit.environment(service)
    graceful, drain = float(env["GRACEFUL_TIMEOUT_SECS"]), float(env["SHUTDOWN_DRAIN_SECS"])
    assert unit.seconds(service["TimeoutStopSec"][-1]) >= drain + graceful + MARGIN_SECS
    assert service["KillSignal"] == ["SIGTERM"] and service["KillMode"] == ["mixed"]
    assert service["Restart"] == ["always"] and service["RestartPreventExitStatus"] == ["2"]
    # The same command as the Procfile and the Dockerfile's CMD.
    args = shlex.split(service["ExecStart"][0])
    assert args[1:] == ["-c", "conf/gunicorn.conf.py"], args


class UnitProcess:
    """ExecStart run as systemd would: WorkingDirectory, Environment=, EnvironmentFile=, UMask=,
    NOTIFY_SOCKET and STATE_/RUNTIME_DIRECTORY."""

    def __init__(self, root: Path, env_file_lines: list[str]) -> None:
        self.service = unit.service_section(unit.render(root))
        self.dir = Path(tempfile.mkdtemp(prefix="unit-"))
        for sub in ("state", "runtime"):
            (self.dir / sub).mkdir()
        env_file = self.dir / "env"
        env_file.write_text("\n".join(env_file_lines) + "\n")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.dir / "notify"))
        self.notify.settimeout(60)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        env.update(unit.environment(self.service))
        env.update(unit.read_env_file(env_file))  # EnvironmentFile= wins over Environment=
        env.update({"NOTIFY_SOCKET": str(self.dir / "notify"), "STATE_DIRECTORY": str(self.dir / "state"),
                    "RUNTIME_DIRECTORY": str(self.dir / "runtime")})
        umask = int(self.service["UMask"][0], 8)
        self.log_path = self.dir / "out.log"
        self._log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                shlex.split(self.service["ExecStart"][0]), cwd=self.service["WorkingDirectory"][0], env=env,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, umask=umask,
            )
        except BaseException:
            self._cleanup()
            raise

    def wait_ready(self) -> str:
        """The first sd_notify message (what Type=notify waits for)."""
        try:
            return self.notify.recv(4096).decode()
        except TimeoutError:
            raise AssertionError("no sd_notify message:\n" + self.log()) from None

    def reload(self) -> None:
        args = [a.replace("$MAINPID", str(self.proc.pid)) for a in shlex.split(self.service["ExecReload"][0])]
        subprocess.run(args, check=True, timeout=10)

    def stop(self) -> int:
        """KillSignal to the main process only (KillMode=mixed), within TimeoutStopSec."""
        self.proc.send_signal(signal.Signals[self.service["KillSignal"][0]])
        return self.proc.wait(unit.seconds(self.service["TimeoutStopSec"][0]))

    def workers(self) -> set[int]:
        return {c.pid for c in psutil.Process(self.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE}

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None or group_pids(self.proc.pid):
            kill_group(self.proc.pid)
            self.proc.wait(5)
        self._cleanup()

    def _cleanup(self) -> None:
        self._log.close()
        self.notify.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_unit_commands_start_reload_and_stop_the_service(mock_backend, mock):
    port = free_port()
    proc = UnitProcess(ROOT, [f"BACKEND_URL={mock_backend.url}/v1", f"HOST_PORT={port}", "WEB_CONCURRENCY=2"])
    try:
        assert "READY=1" in proc.wait_ready()
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc.proc)
        assert health(url)[0] == 200

        workers = proc.workers()
        proc.reload()
        wait_for(lambda: len(proc.workers()) == 2 and not proc.workers() & workers, 60, what="new workers after ExecReload")

        # A stream in flight when systemd stops the service still ends with response.completed.
        result = {}
        t = threading.Thread(target=lambda: result.update(r=stream(url, {"model": "mock-slow-200", "input": "draining"})))
        t.start()
        wait_for(lambda: any(not r["completed"] for r in mock.requests("mock-slow-200")), 30, what="the stream to start")
        assert proc.stop() == 0, proc.log()[-3000:]
        t.join(60)
        events = result["r"].events
        assert events and events[-1]["type"] == "response.completed", result["r"].raw[-500:]
        assert not group_pids(proc.proc.pid), "processes left behind after the stop"
    finally:
        proc.close()


def test_an_invalid_setting_exits_2_so_systemd_does_not_restart_it(mock_backend):
    proc = UnitProcess(ROOT, [f"BACKEND_URL={mock_backend.url}/v1", f"HOST_PORT={free_port()}", "BACKEND_TIMEOUT_SECS=soon"])
    try:
        assert proc.proc.wait(60) == 2, proc.log()
        assert "BACKEND_TIMEOUT_SECS" in proc.log()
    finally:
        proc.close()



def test_a_non_numeric_web_concurrency_fails_in_gunicorn_itself_with_status_1(mock_backend):
    """gunicorn parses WEB_CONCURRENCY when it is imported, before conf/gunicorn.conf.py runs, so our
    check (exit 2) never sees it: a traceback naming it and exit 1, which systemd restarts until its
    start limit (5 starts in 10 s) stops it. README's systemd section says so; this keeps it true."""
    proc = UnitProcess(ROOT, [f"BACKEND_URL={mock_backend.url}/v1", f"HOST_PORT={free_port()}", "WEB_CONCURRENCY=lots"])
    try:
        assert proc.proc.wait(60) == 1, proc.log()
        assert 'int(os.environ.get("WEB_CONCURRENCY", 1))' in proc.log(), proc.log()
    finally:
        proc.close()
