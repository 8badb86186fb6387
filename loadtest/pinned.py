"""CPU per request of the floor, this proxy and other checkouts, each worker on a core of its own.

Usage::

    python -m loadtest.pinned --variant before=/path/to/checkout [--workload stream50] [--profile DIR]
    python -m loadtest.profile DIR/floor.txt DIR/proxy.txt --split --us 801,1082   # µs per request by part

On a 2-core machine the bench's 2 workers share both cores with the mock and the load
generator, and py-spy (which samples wall-clock, not CPU) then counts a worker preempted
right after a socket write wakes its reader as time spent in that write: uvicorn's ``send``
showed 14-20% of a stream while the kernel's share of the workers' CPU was 6-7%. Here the
harness, the mock and the load run on core 1 and each target's single worker, in turn, on
core 0, so a sample is CPU. Printed: µs of worker CPU per request, per target and round, and
the ratio to the floor of the same round (targets run one after another: read the ratios).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest import bench  # noqa: E402


class _PhaseArgs:
    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.warmup = 1.0
        self.client_procs = 1
        self.profile = None


def start_targets(backend: str, workers: int, variants: list[str], logs: Path) -> list[bench.Proc]:
    """The floor, this proxy and each ``NAME=DIR`` checkout, with ``workers`` workers each."""
    procs = [bench.start_floor(backend, workers, logs), bench.start_proxy("proxy", ROOT, backend, workers, {}, logs)]
    for spec in variants:
        name, where = spec.split("=", 1)
        procs.append(bench.start_proxy(name, Path(where), backend, workers, {}, logs))
    return procs


def print_ratios(cpu: dict[str, list[float]]) -> None:
    """Each target's median µs per request over the rounds and the median of its ratio to the floor's."""
    floor = cpu["floor"]
    for name, values in cpu.items():
        ratios = [v / f for v, f in zip(values, floor)]
        print(f"{name:10} median {statistics.median(values):7.0f}  ({statistics.median(ratios):.2f}x floor)  "
              f"rounds {[round(v) for v in values]}  {[round(x, 2) for x in ratios]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.pinned", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="stream50", choices=sorted(bench.WORKLOADS))
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--variant", action="append", default=[], help="NAME=DIR: another checkout")
    ap.add_argument("--profile", type=Path, help="py-spy each target's worker into DIR/<name>.txt")
    args = ap.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("needs two cores")
        return 1
    os.sched_setaffinity(0, {1})  # the mock, the load generator and the services start here
    logs = Path(tempfile.mkdtemp(prefix="pinned-"))
    mock = bench.start_mock(2, logs)
    backend = mock.url + "/v1"
    procs = start_targets(backend, 1, args.variant, logs)
    body = orjson.dumps(bench.WORKLOADS[args.workload])
    events = bench.upstream_events(mock, bench.chat_body(bench.WORKLOADS[args.workload]))
    phase = _PhaseArgs(args.duration)
    pyspy = str(Path(sys.executable).with_name("py-spy"))
    cpu: dict[str, list[float]] = {p.name: [] for p in procs}
    try:
        for _ in range(args.rounds):
            for p in procs:
                worker = p.workers()[0]
                os.sched_setaffinity(worker.pid, {0})
                spy = None
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    spy = subprocess.Popen(
                        [pyspy, "record", "--pid", str(worker.pid), "--duration", str(int(args.duration)),
                         "--rate", "200", "--nonblocking", "--format", "raw",
                         "-o", str(args.profile / f"{p.name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = bench.run_phase(bench.Target(p.name, p, False), mock, args.workload, body, args.conc, phase, events)
                if spy is not None:
                    spy.wait(timeout=args.duration + 60)
                cpu[p.name].append(r.server_cpu_ms_per_req * 1000)
                if r.errors:
                    print(f"{p.name}: {r.errors} errors, e.g. {r.error_samples[:2]}")
    finally:
        for p in procs:
            p.stop()
        mock.stop()
    print(f"{args.workload} c={args.conc}, one worker each on core 0, {args.rounds} x {args.duration:g} s; "
          "µs CPU per request")
    print_ratios(cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
