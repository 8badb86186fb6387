"""The master's preload (proxy/preload.py, called by conf/gunicorn.conf.py): the libraries the workers
use are imported and frozen out of the collector, and none of the proxy's own modules are."""
from __future__ import annotations

import subprocess
import sys

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
