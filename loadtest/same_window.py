"""CPU per request of the floor, this proxy and other checkouts, all loaded in the same window.

Usage::

    python -m loadtest.same_window --variant before=/path/to/checkout [--only stream50,json] [--conc 16]

``loadtest/bench.py`` runs each phase's targets one after another, so on a shared machine a
burst of someone else's load lands on one of them and moves its ratio to the floor by tens of
percent. Here every target gets its own ``--conc`` connections at the same time, for
``--rounds`` windows of ``--duration`` seconds: they compete with each other, and whatever else
runs on the machine moves them together. Printed per workload: each target's median µs of
worker CPU per request over the rounds and the median of its per-round ratio to the floor.
The absolute figures are higher than the bench's (the targets share the cores); the ratios
are the measure.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest import bench  # noqa: E402
from loadtest.client import LoadProcs, LoadSpec  # noqa: E402
from loadtest.pinned import print_ratios, start_targets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.same_window", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="stream50,json", help="comma-separated workloads")
    ap.add_argument("--conc", type=int, default=16, help="connections per target")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--variant", action="append", default=[], help="NAME=DIR: another checkout")
    args = ap.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="same-window-"))
    mock = bench.start_mock(2, logs)
    backend = mock.url + "/v1"
    procs = start_targets(backend, args.workers, args.variant, logs)
    headers = (("Authorization", f"Bearer {bench.API_KEY}"),)
    try:
        for workload in args.only.split(","):
            body = orjson.dumps(bench.WORKLOADS[workload])
            check = "responses-stream" if bench.WORKLOADS[workload]["stream"] else "responses-json"
            cpu: dict[str, list[float]] = {p.name: [] for p in procs}
            for _ in range(args.rounds):
                start = time.time() + 1.5
                end = start + args.duration
                loads = [LoadProcs(LoadSpec(bench.HOST, p.port, "POST", "/v1/responses", body, check, args.conc,
                                            start, end, headers=headers), 1) for p in procs]
                bench.sleep_until(start)
                before = [bench.cpu_of(p.workers()) for p in procs]
                bench.sleep_until(end)
                after = [bench.cpu_of(p.workers()) for p in procs]
                for p, load, a, b in zip(procs, loads, before, after):
                    result = load.join(timeout=args.duration + 120)
                    cpu[p.name].append((b - a) / max(result.ok, 1) * 1e6)
                    if result.errors:
                        print(f"{p.name}: {result.errors} errors, e.g. {result.error_samples[:2]}")
            print(f"-- {workload} c={args.conc} per target, {args.workers} workers each, {args.rounds} x "
                  f"{args.duration:g} s, load average {os.getloadavg()[0]:.1f}; µs CPU per request")
            print_ratios(cpu)
    finally:
        for p in procs:
            p.stop()
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
