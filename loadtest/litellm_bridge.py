"""LiteLLM's proxy, bridging ``/v1/responses`` to the same mock backend, for side-by-side numbers.

Not a dependency of the project: ``ensure_installed()`` puts one pinned
release into its own virtual environment, ``loadtest/.venv-litellm``
(git-ignored), the first time the bench asks for it (``--litellm``).

Why this release: 1.82.6 is the last LiteLLM release published before the
March 2026 compromise of the maintainers' PyPI account (1.82.7 and 1.82.8
carried a credential stealer and were pulled); it is the release that large
downstream projects pinned as known-clean while the incident was analysed,
and it has been out for months since. It ships the Responses API bridge
(``litellm.responses`` over a provider's Chat Completions when the provider
has no native Responses API), which is what our proxy does too. The
install is checked for the compromise's ``litellm_init.pth`` startup hook.

How it bridges: the model list maps every model name (``*``) to
``custom_openai/<name>`` at the mock's base URL: a generic OpenAI-compatible
server, for which LiteLLM 1.82.6 has no native Responses config, so it
translates to chat completions (the bridge). For ``openai`` or
``hosted_vllm`` it would call the backend's own ``/v1/responses`` instead.
It runs under gunicorn with Uvicorn workers (``--run_gunicorn``, LiteLLM's
production mode: the proxy's own server stack; the app preloaded in the
master, an access line per request like our ``request_completed`` line), with
``--num_workers`` as many workers as the proxy. (Its plain Uvicorn
multiprocess mode restarts workers whose import outlasts a 5 s health check,
which on a busy 2-core machine is every worker.)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from proxy import devtools
from proxy.devtools import Service

VERSION = "1.82.6"
VENV = Path(__file__).resolve().parent / ".venv-litellm"
BIN = VENV / "bin"


def _installed_version() -> str | None:
    python = BIN / "python"
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_installed() -> Path:
    """The venv's ``litellm`` command, installing the pinned release first if needed."""
    if _installed_version() != VERSION:
        if not (BIN / "python").exists():
            base = getattr(sys, "_base_executable", None) or "python3"  # not the project's venv
            subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        print(f"installing litellm[proxy]=={VERSION} into {VENV} (one time)...", flush=True)
        subprocess.run([str(BIN / "pip"), "install", "-q", f"litellm[proxy]=={VERSION}"], check=True)
    hooks = list(VENV.glob("lib/python*/site-packages/litellm_init.pth"))
    if hooks:
        raise RuntimeError(f"{hooks[0]} exists: this is not a clean LiteLLM install; delete {VENV}")
    return BIN / "litellm"


def config_text(backend_url: str, api_key: str) -> str:
    """The proxy config: every model name bridged to the mock; no database, no callbacks, no logging."""
    return f"""model_list:
  - model_name: "*"
    litellm_params:
      model: "custom_openai/*"
      api_base: "{backend_url}"
      api_key: "{api_key}"
litellm_settings:
  drop_params: true
  set_verbose: false
  json_logs: false
general_settings:
  disable_spend_logs: true
"""


def start(backend_url: str, workers: int, logs: Path, api_key: str) -> Service:
    """LiteLLM's proxy on a free loopback port, ``workers`` processes, bridging to ``backend_url``."""
    command = ensure_installed()
    config = logs / "litellm.yaml"
    config.write_text(config_text(backend_url, api_key))
    port = devtools.free_port()
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(logs), "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION", "TELEMETRY": "False", "NO_DOCS": "True",
        "DISABLE_ADMIN_UI": "True", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    args = [str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", str(workers), "--run_gunicorn"]
    return _SlowStarting(args, port, "/health/liveliness", env, logs / "litellm.log")


class _SlowStarting(Service):
    """A ``Service`` given longer to answer: LiteLLM imports for tens of seconds on a busy machine."""

    def __init__(self, args: list[str], port: int, health_path: str, env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=log_path.parent)
        try:
            devtools.wait_http(self.url + health_path, self.proc, timeout=240.0)
        except BaseException:
            self.stop()
            raise
