"""The ``Dockerfile``'s runtime, without a Docker daemon (there is none in CI).

The image is its COPY lines, its ENV, its CMD, its HEALTHCHECK and its
STOPSIGNAL; each is run here as written: the copied files alone (``proxy/``,
``conf/``) in a directory standing for ``/app``, the CMD as exec-form argv with
the image's ENV plus a ``docker run -e HOST_PORT=…``, the HEALTHCHECK command
in the same environment, the stop signal to the CMD's process.

The HEALTHCHECK is a liveness check: 0 while /health answers at all, 200 or 503
(an open breaker means the *backend* fails; restarting the container would not
help), 1 once nothing answers.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from proxy.devtools import ROOT, free_port, wait_http
from tests.conftest import API_KEY
from tests.deploy.tools import stop_group
from tests.http import health, post

pytestmark = pytest.mark.slow


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _one(instructions: list[tuple[str, str]], name: str) -> str:
    found = [args for ins, args in instructions if ins == name]
    assert len(found) == 1, (name, found)
    return found[0]


def _image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for ins, args in instructions:
        if ins == "ENV":
            for assignment in args.split():
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def _app_dir(tmp_path: Path, instructions: list[tuple[str, str]]) -> Path:
    """What the image's COPY lines put in WORKDIR, and nothing else."""
    app = tmp_path / "app"
    app.mkdir()
    for ins, args in instructions:
        if ins == "COPY":
            src, dest = args.split()
            if src.endswith("/"):
                shutil.copytree(ROOT / src, app / dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / src, app / dest)
    return app


def test_dockerfile_cmd_healthcheck_and_stopsignal(mock_backend, tmp_path):
    instructions = dockerfile()
    assert _one(instructions, "WORKDIR") == "/app"
    cmd = json.loads(_one(instructions, "CMD"))
    assert cmd == ["gunicorn", "-c", "conf/gunicorn.conf.py"], cmd
    check = _one(instructions, "HEALTHCHECK")
    check_argv = json.loads(check[check.index("CMD ") + 4:])
    stopsignal = signal.Signals[_one(instructions, "STOPSIGNAL")]

    app = _app_dir(tmp_path, instructions)
    port = free_port()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **_image_env(instructions)}
    env.update({"HOST_PORT": str(port), "BACKEND_URL": mock_backend.url + "/v1", "WEB_CONCURRENCY": "2",
                "CIRCUIT_BREAKER_THRESHOLD": "1", "CIRCUIT_BREAKER_RECOVERY_SECS": "600"})
    url = f"http://127.0.0.1:{port}"

    def healthcheck() -> int:
        return subprocess.run(check_argv, cwd=app, env=env, capture_output=True, timeout=30).returncode

    with open(tmp_path / "container.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(url + "/health", proc)
        with openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
            assert client.responses.create(model="mock-echo", input="in a box").output_text == "You said: in a box"
        assert healthcheck() == 0
        # One backend failure opens the breaker (threshold 1): /health 503, still alive.
        assert post(url, {"model": "mock-error-500", "input": "x"}).status_code == 502
        assert health(url)[0] == 503
        assert healthcheck() == 0
        # `docker stop`: the STOPSIGNAL, then gunicorn drains and exits 0.
        proc.send_signal(stopsignal)
        assert proc.wait(60) == 0, (tmp_path / "container.log").read_text()[-3000:]
        assert healthcheck() == 1
    finally:
        stop_group(proc)
