"""Syscalls and context switches per request of the floor, this proxy and other checkouts.

Usage::

    python -m loadtest.syscall_census                                  # stream50 and json, c=16
    python -m loadtest.syscall_census --only stream50 --variant before=/path/to/checkout

Why: callgrind (``loadtest.instructions``) counts only user-space instructions, so the proxy's
extra CPU beyond them (kernel time, wake-ups) needs its own count. Each target runs as
``loadtest.instructions`` starts it (one worker, the mock backend) but natively. After a warm-up,
two windows per workload: one plain, in which the worker's context switches (voluntary and
involuntary, summed over ``/proc/<pid>/task/*/status``) and its ``/proc/<pid>/io`` read/write
calls and bytes written are read before and after; one under ``strace -c -f -p <worker>`` (all
its threads), which counts syscalls by name. strace slows the worker but the counts stay valid.
An idle window of each kind (no request) is subtracted at its rate, so timers do not pass for
request cost. Printed: per workload, each counter per request for every target, and each
target's difference to the floor.
"""
from __future__ import annotations

import asyncio
import functools
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.bench import WORKLOADS  # noqa: E402
from loadtest.instructions import Target, load_requests, run_into, start, target_options, target_specs  # noqa: E402
from proxy import devtools  # noqa: E402


def proc_counters(pid: int) -> Counter[str]:
    """Context switches over all the worker's threads and its I/O syscall counters."""
    out: Counter[str] = Counter()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    out["ctx:" + key.split("_")[0]] += int(value)
        except FileNotFoundError:  # a thread that ended between the glob and the read
            continue
    out["ctx:threads"] = len(list(Path(f"/proc/{pid}/task").iterdir()))
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("syscr", "syscw", "wchar"):
            out["io:" + key] = int(value)
    return out


def parse_strace(text: str) -> Counter[str]:
    """``strace -c``'s table: calls by syscall name (the total line left out)."""
    calls: Counter[str] = Counter()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls["sys:" + parts[-1]] = int(parts[3])
    return calls


def plain_window(target: Target, work: Callable[[], object] | None, seconds: float) -> tuple[Counter[str], float]:
    before = proc_counters(target.worker)
    t0 = time.monotonic()
    work() if work is not None else time.sleep(seconds)
    wall = time.monotonic() - t0
    after = proc_counters(target.worker)
    diff = Counter({k: after[k] - before[k] for k in after if k != "ctx:threads"})
    return diff, wall


def strace_window(target: Target, work: Callable[[], object] | None, seconds: float, out: Path
                  ) -> tuple[Counter[str], float]:
    log = out / f"strace.{time.monotonic_ns()}"
    tracer = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", str(log), "-p", str(target.worker)],
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attach to every thread before the window opens
    t0 = time.monotonic()
    work() if work is not None else time.sleep(seconds)
    wall = time.monotonic() - t0
    tracer.send_signal(signal.SIGINT)
    tracer.wait(60)
    return parse_strace(log.read_text()), wall + 1.0


def per_request(load: Counter[str], load_wall: float, idle: Counter[str], idle_wall: float, n: int
                ) -> dict[str, float]:
    return {k: (load[k] - idle[k] / idle_wall * load_wall) / n for k in set(load) | set(idle)}


def measure(target: Target, workloads: list[str], n: int, conc: int, warmup: int, idle_secs: float
            ) -> dict[str, dict[str, float]]:
    idle_plain, idle_plain_wall = plain_window(target, None, idle_secs)
    idle_trace, idle_trace_wall = strace_window(target, None, idle_secs, target.out)
    rows: dict[str, dict[str, float]] = {}
    for w in workloads:
        body, stream = orjson.dumps(WORKLOADS[w]), bool(WORKLOADS[w]["stream"])
        failures: list[int] = []
        load = functools.partial(load_requests, target.port, body, stream, n, conc)
        work = functools.partial(run_into, failures, load)
        asyncio.run(load_requests(target.port, body, stream, warmup, conc))
        plain, plain_wall = plain_window(target, work, 0)
        traced, traced_wall = strace_window(target, work, 0, target.out)
        if any(failures):
            print(f"{target.name} {w}: {sum(failures)} of {2 * n} requests failed", file=sys.stderr)
        rows[w] = per_request(plain, plain_wall, idle_plain, idle_plain_wall, n)
        rows[w].update(per_request(traced, traced_wall, idle_trace, idle_trace_wall, n))
        print(f"{target.name:>10} {w:<10} {rows[w].get('ctx:voluntary', 0):8.1f} voluntary switches/request, "
              f"{sum(v for k, v in rows[w].items() if k.startswith('sys:')):8.1f} syscalls/request", flush=True)
    return rows


def print_table(w: str, names: list[str], rows: dict[str, dict[str, dict[str, float]]], n: int, conc: int,
                threshold: float) -> None:
    keys = sorted({k for name in names for k in rows[name][w]})
    print(f"\n-- {w}: per request, {n} requests at c={conc}, idle subtracted")
    head = f"{'counter':<28}" + "".join(f"{name:>10}" for name in names)
    head += "".join(f"{name + '-floor':>14}" for name in names if name != "floor") if "floor" in names else ""
    print(head)
    total = {name: sum(v for k, v in rows[name][w].items() if k.startswith("sys:")) for name in names}
    for k in keys:
        vals = [rows[name][w].get(k, 0.0) for name in names]
        if all(abs(v) < threshold for v in vals):
            continue
        line = f"{k:<28}" + "".join(f"{v:10.2f}" for v in vals)
        if "floor" in names:
            line += "".join(f"{rows[name][w].get(k, 0.0) - rows['floor'][w].get(k, 0.0):14.2f}"
                            for name in names if name != "floor")
        print(line)
    line = f"{'sys: total':<28}" + "".join(f"{total[name]:10.2f}" for name in names)
    if "floor" in names:
        line += "".join(f"{total[name] - total['floor']:14.2f}" for name in names if name != "floor")
    print(line)


def main() -> None:
    ap = target_options(__doc__, 400, 200)
    ap.add_argument("--threshold", type=float, default=0.05, help="hide rows below this per request everywhere")
    args = ap.parse_args()
    if shutil.which("strace") is None:
        sys.exit("strace is needed (Debian: apt-get install strace)")
    out_root = Path(tempfile.mkdtemp(prefix="syscall-census-"))
    mock = devtools.start_mock(out_root / "mock.log", workers=1, max_records=16)
    backend = mock.url + "/v1"
    specs = target_specs(args)
    workloads = args.only.split(",")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for name, root in specs:
            target = start(name, root, backend, out_root / name, None)
            try:
                rows[name] = measure(target, workloads, args.requests, args.conc, args.warmup, args.idle_secs)
            finally:
                target.stop()
    finally:
        mock.stop()
        shutil.rmtree(out_root, ignore_errors=True)
    for w in workloads:
        print_table(w, [n for n, _ in specs], rows, args.requests, args.conc, args.threshold)


if __name__ == "__main__":
    main()
