"""The ``Procfile`` run by a Procfile runner, honcho (what Heroku-style platforms do).

``honcho start`` with ``PORT`` set: the web process binds ``$PORT`` (not
``HOST_PORT``, set here to another free port as a decoy) and serves a real
request. On SIGTERM honcho signals the process's group: gunicorn lets the
stream in flight finish, exits 0 within honcho's 5 s before SIGKILL, and
nothing is left running when honcho returns.

The command starts with ``exec``: runners run it with ``sh -c``, and Debian's
dash does not replace itself with the last command. Without ``exec`` honcho
watches the shell, which SIGTERM kills at once, and returns while gunicorn,
orphaned, is still draining.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import openai
import psutil
import pytest

from proxy.devtools import ROOT, free_port, wait_http
from tests.conftest import API_KEY
from tests.deploy.tools import kill_group
from tests.faults.helpers import stream
from tests.http import wait_for

pytestmark = pytest.mark.slow

HONCHO = Path(sys.executable).with_name("honcho")


def _tree(pid: int) -> set[int]:
    root = psutil.Process(pid)
    return {root.pid, *(p.pid for p in root.children(recursive=True))}


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_procfile_binds_port_serves_and_stops_cleanly(mock_backend, mock, tmp_path):
    assert (ROOT / "Procfile").read_text() == "web: exec gunicorn -c conf/gunicorn.conf.py\n"
    port, decoy = free_port(), free_port()
    empty_env = tmp_path / "empty.env"  # not the checkout's .env, if a developer has one
    empty_env.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST_PORT", "WEB_CONCURRENCY")}
    env.update({
        "PORT": str(port), "HOST_PORT": str(decoy), "BACKEND_URL": mock_backend.url + "/v1", "WEB_CONCURRENCY": "2",
        # A platform puts the app's interpreter on PATH; the Procfile names plain `gunicorn`.
        "PATH": f"{HONCHO.parent}:{env.get('PATH', '/usr/bin:/bin')}",
    })
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(HONCHO), "-e", str(empty_env), "-f", "Procfile", "start"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pids: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc)
        with openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
            assert client.responses.create(model="mock-echo", input="from the Procfile").output_text == "You said: from the Procfile"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", decoy)) != 0, "something listens on HOST_PORT: PORT must win"
        pids = _tree(proc.pid)
        assert len(pids) >= 4, pids  # honcho, its runner process, gunicorn's master and workers
        # A ~2 s stream in flight when the runner is told to stop.
        result = {}
        t = threading.Thread(target=lambda: result.update(r=stream(url, {"model": "mock-slow-200", "input": "stop me"})))
        t.start()
        wait_for(lambda: any(not r["completed"] for r in mock.requests("mock-slow-200")), 30, what="the stream to start")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        left = _alive(pids)
        text = log_path.read_text("utf-8", "replace")
        assert not left, f"still running when honcho returned: {left}\n{text}"
        assert rc == 143, text  # honcho's code for "stopped by SIGTERM"
        assert "web.1 stopped (rc=0)" in text, text  # gunicorn drained and exited 0 itself
        assert "SIGKILL" not in text, text
        t.join(30)
        assert result["r"].events[-1]["type"] == "response.completed", result["r"].raw[-500:]
    finally:
        for pid in _alive(pids | {proc.pid}):
            try:
                kill_group(os.getpgid(pid))
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.wait(5)
