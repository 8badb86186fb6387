"""Run the real Codex CLI (``codex exec``) against a Responses endpoint, offline.

``.ci/run`` installs the pinned CLI with
``npm install --prefix .tools/codex @openai/codex@0.171.0``. Codex gets a private
``CODEX_HOME`` with the config below, a minimal environment (no OpenAI key, no user
config) and ``HTTP(S)_PROXY`` pointing at a ``NetTrap``, so the only traffic it can
make is to the loopback base URL.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.devtools import ROOT

CODEX_VERSION = "0.171.0"
CODEX_BIN = ROOT / ".tools" / "codex" / "node_modules" / ".bin" / "codex"
KEY_ENV = "RESPONSES_PROXY_API_KEY"


def codex_binary() -> Path:
    """The pinned Codex CLI; a skip without it, but a failure under CI (where .ci/run installs it)."""
    if CODEX_BIN.exists():
        return CODEX_BIN
    why = f"Codex CLI not installed at {CODEX_BIN} (run: npm install --prefix .tools/codex @openai/codex@{CODEX_VERSION})"
    if os.environ.get("CI"):
        pytest.fail(why + " — CI is set, so the Codex tests must run")
    pytest.skip(why)


def codex_config_toml(base_url: str) -> str:
    """The config.toml the README documents, for a proxy at ``base_url`` (ending in ``/v1``).

    - ``wire_api = "responses"``: the only wire protocol Codex 0.171 speaks;
    - ``env_key``: Codex sends that variable's value as ``Authorization: Bearer``;
    - retries 0 so a proxy error shows at once instead of after back-off;
    - the ``[features]`` switched off are the ones that fetch plugin catalogues from
      github.com / chatgpt.com at start-up; no update check, analytics or feedback upload.
    """
    return f"""\
model_provider = "responses-proxy"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false

[model_providers.responses-proxy]
name = "responses-proxy"
base_url = "{base_url}"
wire_api = "responses"
env_key = "{KEY_ENV}"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false
"""


def make_workspace(path: Path, files: dict[str, str]) -> Path:
    """A git repository with ``files`` committed (Codex treats it as the project)."""
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path)}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(git + args, cwd=path, env=env, check=True, capture_output=True)
    return path


@dataclass
class CodexRun:
    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str
    seconds: float

    def errors(self) -> list[str]:
        """Error items and failed turns Codex reported."""
        out = []
        for ev in self.events:
            item = ev.get("item") or {}
            if item.get("type") == "error":
                out.append(item.get("message", ""))
            if ev.get("type") in ("turn.failed", "error"):
                out.append(json.dumps(ev))
        return out

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [ev["item"] for ev in self.events if ev.get("type") == "item.completed" and ev["item"].get("type") == kind]

    def describe(self) -> str:
        return f"codex exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def run_codex(
    binary: Path, home: Path, workspace: Path, base_url: str, model: str, prompt: str,
    api_key: str, extra_env: dict[str, str], timeout: float = 120.0, config_toml: str | None = None,
) -> CodexRun:
    """``codex exec --json`` non-interactively (stdin closed) with a fresh config in ``home``
    (``config_toml``, else the README's ``codex_config_toml(base_url)``)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config_toml if config_toml is not None else codex_config_toml(base_url))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "LANG": "C.UTF-8",
        "RUST_LOG": "warn",
        KEY_ENV: api_key,
        **extra_env,
    }
    args = [str(binary), "exec", "--json", "--strict-config", "--skip-git-repo-check",
            "-m", model, "-C", str(workspace), prompt]
    start = time.monotonic()
    proc = subprocess.run(args, cwd=workspace, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    events = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            events.append(json.loads(line))
    return CodexRun(proc.returncode, events, proc.stdout, proc.stderr, seconds)
