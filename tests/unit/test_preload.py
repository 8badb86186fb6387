"""The master's preload (proxy/preload.py, called by conf/gunicorn.conf.py): the libraries the workers
use are imported and frozen out of the collector, and none of the proxy's own modules are."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from proxy.devtools import ROOT

_PROBE = (
    "import gc, sys\n"
    "before = set(sys.modules)\n"
    "from proxy.preload import MODULES, preload\n"
    "preload()\n"
    "own = sorted(m for m in set(sys.modules) - before if m.startswith('proxy') and m not in ('proxy', 'proxy.preload'))\n"
    "print(own, all(m in sys.modules for m in MODULES), gc.get_freeze_count())\n"
)


def test_preload_imports_the_libraries_and_freezes_them_but_not_the_proxy() -> None:
    """A reload (SIGHUP) forks new workers from the same master: had the master imported the proxy's
    own modules, those workers would still run the code of before the deploy."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    own, all_loaded, frozen = out[0], out[1], int(out[2])
    assert own == "[]", f"the preload imported the proxy's own modules: {own}"
    assert all_loaded == "True"
    assert frozen > 10_000, f"only {frozen} objects frozen: the libraries' objects are still collected"


# The master as gunicorn makes it (its own modules, conf/gunicorn.conf.py, the worker class), then
# what a worker does after the fork: the app imported and built (proxy.app), uvicorn's config loaded
# with the worker class's own stack (uvloop, httptools, websockets, lifespan).
_WORKER_PROBE = (
    "import mimetypes, runpy, sys\n"
    "import gunicorn.app.wsgiapp, gunicorn.arbiter, gunicorn.util\n"
    "runpy.run_path('conf/gunicorn.conf.py')\n"
    "worker = gunicorn.util.load_class('proxy.worker.Worker')\n"
    "inited = mimetypes.inited\n"
    "before = set(sys.modules)\n"
    "from uvicorn.config import Config\n"
    "from proxy import settings\n"
    "import proxy.app\n"
    "kwargs = {**worker.CONFIG_KWARGS, 'http': sys.modules[worker.__module__].http_protocol(0.0),\n"
    "          **sys.modules[worker.__module__].websocket_kwargs(settings.load())}\n"
    "Config(proxy.app.app, **kwargs).load()\n"
    "print(sorted(m for m in set(sys.modules) - before if not m.startswith('proxy')), inited)\n"
)


def test_a_worker_imports_no_library_the_master_did_not_preload(tmp_path: Path) -> None:
    """Each library module a worker imports itself is a private copy in every worker (uvloop,
    httptools and msgpack were: 0.6 MB a worker); Falcon's app builds the ``mimetypes`` table."""
    env = {**os.environ, "BACKEND_URL": "http://127.0.0.1:9/v1", "RESPONSE_STORE_URL": "none",
           "CIRCUIT_BREAKER_ENABLED": "false", "METRICS_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", _WORKER_PROBE], cwd=ROOT, capture_output=True, text=True, check=True, env=env
    ).stdout.rsplit(" ", 1)
    assert out[0] == "[]", f"modules a worker imports that the master did not preload: {out[0]}"
    assert out[1].strip() == "True", "the master did not build the mimetypes table"


def test_every_preloaded_library_is_a_runtime_requirement() -> None:
    """A production install (requirements.txt alone) must boot: the master imports each of
    ``MODULES`` before any worker exists, so one that only the dev requirements bring (msgpack,
    through locust) stopped gunicorn from starting at all. Those are ``OPTIONAL_MODULES``."""
    import importlib.metadata
    import re

    from proxy.preload import MODULES, OPTIONAL_MODULES

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    runtime = {norm(line.split("==")[0]) for line in (ROOT / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    providers = importlib.metadata.packages_distributions()
    for name in MODULES:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        dists = {norm(d) for d in providers.get(top, [])}
        assert dists & runtime, f"{name} is preloaded but comes from {sorted(dists)}, not requirements.txt"
    for name in OPTIONAL_MODULES:
        assert not {norm(d) for d in providers.get(name, [])} & runtime, f"{name} is a requirement: preload it always"


def test_the_master_sets_the_collectors_first_threshold_for_its_workers() -> None:
    """The deploy's configuration (conf/gunicorn.conf.py runs the preload in the master) leaves
    the collector's first threshold at ``GEN0_THRESHOLD``, which every forked worker inherits;
    the older generations keep this Python's own (read in the probe, not CPython 3.11's literals,
    so a Python with other defaults runs the same check)."""
    from proxy.preload import GEN0_THRESHOLD

    probe = (
        "import gc, json, runpy\n"
        "default = gc.get_threshold()\n"
        "runpy.run_path('conf/gunicorn.conf.py')\n"
        "print(json.dumps([default, gc.get_threshold()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    default, tuned = json.loads(out.strip().splitlines()[-1])
    assert default[0] != GEN0_THRESHOLD, f"this Python's own first threshold is {GEN0_THRESHOLD}: nothing to prove"
    assert tuned == [GEN0_THRESHOLD, *default[1:]], out
