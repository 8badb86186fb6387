"""The quick start's ``python -m proxy.demo``, run as a user runs it: it answers through a real
gunicorn in front of the mock, and a SIGTERM (or Ctrl-C) stops it, its gunicorn and its mock
gracefully — the demo once blocked those signals and every child inherited the blocked mask, so
gunicorn ignored the SIGTERM that stops it (killed 15 s later) and a mock outlived a failed start."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.devtools import ROOT, free_port
from tests.deploy.tools import running
from tests.http import wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_demo_answers_then_stops_with_its_children_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        demo = subprocess.Popen([sys.executable, "-m", "proxy.demo"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "HOST_PORT": str(free_port()), "WEB_CONCURRENCY": "1"})
        try:
            wait_for(lambda: "Ctrl-C to stop" in out.read_text() or demo.poll() is not None, 90, what="the demo")
            text = out.read_text()
            assert "streamed output_text='You said: Say hello through the proxy.'" in text, text
            assert "HTTP 200: status='completed'" in text, text
            logs = Path(re.search(r"\(logs: (\S+)/proxy\.log\)", text)[1])
            children = [int(p) for p in subprocess.run(["pgrep", "-P", str(demo.pid)], capture_output=True,
                                                       text=True).stdout.split()]
            assert len(children) == 2, children  # gunicorn's master and the mock
            demo.send_signal(sig)
            assert demo.wait(60) == 0
            assert not [pid for pid in children if running(pid)]
            # Each stopped itself on its SIGTERM; one that blocked it would have been killed (-9). (uvicorn,
            # the mock's server, raises the signal again once it has shut down gracefully: -15.)
            assert re.search(r"proxy exited with 0, mock exited with (0|-15)\n", out.read_text()), out.read_text()[-300:]
            assert "Handling signal: term" in (logs / "proxy.log").read_text()
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(10)
