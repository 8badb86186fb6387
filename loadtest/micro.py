"""Per-call cost of the breakers and the metrics on the request path, in one process.

Usage::

    python -m loadtest.micro                   # both, 7 rounds of 200,000 calls
    python -m loadtest.micro --old-rev 331dd6c # the host-wide breaker of that revision

``breaker``: ``acquire`` + ``record(SUCCESS)`` (closed, nothing counted: the hot
path) for a model without a slot and for one with a clean slot, next to the
host-wide breaker ``proxy/breaker.py`` of ``--old-rev`` (default: the last
revision that had it), loaded from git, in the same run. ``metrics``: ``request_started`` +
``request_finished`` in multiprocess mode (a temporary directory), as every
request pays it. Rounds are interleaved and the best round is reported, so
other load on the machine inflates no variant more than another.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _last_with_old_breaker() -> str:
    """The parent of the commit that replaced ``proxy/breaker.py`` by the package, or HEAD."""
    deleted = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--diff-filter=D", "HEAD", "--", "proxy/breaker.py"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.strip()
    return f"{deleted}^" if deleted else "HEAD"


def _old_breaker(rev: str) -> ModuleType | None:
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:proxy/breaker.py"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except subprocess.CalledProcessError:
        return None
    path = Path(tempfile.mkdtemp()) / "old_breaker.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_breaker", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_breaker"] = module
    spec.loader.exec_module(module)
    return module


def _best_ns(loops: dict[str, Callable[[int], None]], n: int, rounds: int) -> dict[str, float]:
    best = {name: float("inf") for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop(n)
            best[name] = min(best[name], (time.perf_counter() - start) / n * 1e9)
    return best


def breaker_loops(old_rev: str) -> dict[str, Callable[[int], None]]:
    from proxy.breaker import Breakers, SharedTable, Verdict

    loops: dict[str, Callable[[int], None]] = {}
    old = _old_breaker(old_rev)
    if old is not None:
        ob = old.CircuitBreaker(state=old.SharedState())

        def old_loop(n: int) -> None:
            acquire, success = ob.acquire, ob.record_success
            for _ in range(n):
                success(acquire())

        loops[f"old host-wide breaker ({old_rev})"] = old_loop
    b = Breakers(enabled=True, threshold=5, recovery_secs=30, probe_timeout_secs=600, table=SharedTable(256))
    b.record(b.acquire("slotted"), Verdict.MODEL_FAILURE)  # gets a slot...
    b.record(b.acquire("slotted"), Verdict.SUCCESS)  # ...and is clean again
    ok = Verdict.SUCCESS

    def new_loop(model: str) -> Callable[[int], None]:
        def loop(n: int) -> None:
            acquire, record = b.acquire, b.record
            for _ in range(n):
                record(acquire(model), ok)

        return loop

    loops["new, model without a slot"] = new_loop("deepseek-ai/DeepSeek-V3-0324")
    loops["new, model with a clean slot"] = new_loop("slotted")
    return loops


def metrics_loops() -> dict[str, Callable[[int], None]]:
    # As in gunicorn: prometheus_client is imported before the directory is set
    # (the master imports it), and the worker's Metrics() picks the value class.
    from proxy.metrics import Metrics

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="micro-metrics-")
    m = Metrics()
    assert m.multiprocess

    def loop(n: int) -> None:
        started, finished = m.request_started, m.request_finished
        for _ in range(n):
            started()
            finished("/v1/responses", "deepseek-ai/DeepSeek-V3-0324", 200, False, 0.012)

    return {"metrics: request_started + request_finished (multiprocess)": loop}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-rev", help="git revision whose proxy/breaker.py is the old breaker")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=("breaker", "metrics"))
    args = parser.parse_args(argv)
    loops: dict[str, Callable[[int], None]] = {}
    if args.only in (None, "breaker"):
        loops.update(breaker_loops(args.old_rev or _last_with_old_breaker()))
    if args.only in (None, "metrics"):
        loops.update(metrics_loops())
    for name, ns in _best_ns(loops, args.calls, args.rounds).items():
        print(f"{name:62s} {ns:8.0f} ns per request")


if __name__ == "__main__":
    main()
