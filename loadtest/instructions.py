"""Instructions per request of the floor, this proxy and other checkouts, counted by callgrind.

Usage::

    python -m loadtest.instructions                                   # stream50 and json, c=16
    python -m loadtest.instructions --only stream50 --variant before=/path/to/checkout
    python -m loadtest.instructions --requests 400 --conc 1 --keep /tmp/cg  # keep the dumps to annotate

Why: CPU seconds on a shared 2-core machine move by 10-30% from run to run, so a cut of a few
percent hides in them, and the same-window ratios need many rounds to settle. Instructions do
not depend on what else the machine runs: ``valgrind --tool=callgrind`` counts the same total
for the same work, loaded or not. Each target runs as deployed but with one worker
(``gunicorn -c conf/gunicorn.conf.py``, the floor under the same worker class), its master and
worker under callgrind with instrumentation off (so start-up runs at a few times native speed);
the harness warms the worker up, switches counting on in the worker alone, sends
``--requests`` requests at ``--conc``, dumps the counts and switches counting off. (Switched by
a signal: ``callgrind_control`` cannot reach a forked worker, so a ``sitecustomize`` on the
targets' ``PYTHONPATH`` — only theirs — gives every process of theirs two real-time signal
handlers that call callgrind's client requests through a small library compiled here.) The
same window's idle rate (a few seconds with no request, counted
the same way) is subtracted, so the worker's timers do not pass for request cost. The mock
backend and the load run natively.

Instructions are not cycles (cache misses, syscalls' kernel time and context switches are not
in them), so this measures the Python-side work a change adds or removes; the CPU benches
(``loadtest.bench``, ``loadtest.same_window``) remain the targets' measure.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.bench import API_KEY, WORKLOADS  # noqa: E402
from proxy import devtools  # noqa: E402

START, STOP = signal.SIGRTMIN + 3, signal.SIGRTMIN + 4
_TOGGLE_C = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }
"""
_SITECUSTOMIZE = f"""
import ctypes, os, signal
_lib = ctypes.CDLL(os.environ["INSTRUCTIONS_TOGGLE_LIB"])
signal.signal({int(START)}, lambda *_: _lib.cg_start())
signal.signal({int(STOP)}, lambda *_: _lib.cg_stop())
"""
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


class Target:
    """One checkout (or the floor) under callgrind, one worker."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path, port: int, out: Path,
                 callgrind: bool = True) -> None:
        self.name = name
        self.port = port
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self._log = open(out / "service.log", "ab")
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={out}/callgrind.%p"] if callgrind else []
        self.proc = subprocess.Popen(valgrind + args, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        devtools.wait_http(f"http://127.0.0.1:{port}/health", self.proc, timeout=300)
        self.worker = self._worker_pid()

    def _worker_pid(self) -> int:
        root = psutil.Process(self.proc.pid)
        for _ in range(600):
            kids = [p for p in root.children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]
            if kids:
                return kids[0].pid
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no worker")

    def signal(self, sig: int) -> None:
        os.kill(self.worker, sig)

    def count(self, work: Callable[[], object] | None, seconds: float = 0.0) -> tuple[int, float]:
        """Instructions the worker ran while ``work()`` ran (or ``seconds`` of nothing), and the wall time."""
        before = set(self.out.glob(f"callgrind.{self.worker}.*"))
        self.signal(START)
        time.sleep(0.5)  # the worker wakes on the signal and runs its handler at once
        t0 = time.monotonic()
        if work is not None:
            work()
        else:
            time.sleep(seconds)
        wall = time.monotonic() - t0
        self.signal(STOP)
        for _ in range(200):
            new = set(self.out.glob(f"callgrind.{self.worker}.*")) - before
            if new:
                dump = max(new, key=lambda p: p.stat().st_mtime)
                found = _TOTALS.search(dump.read_bytes())
                if found:
                    return int(found.group(1)), wall
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no callgrind dump")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        self._log.close()


async def load_requests(port: int, body: bytes, stream: bool, n: int, conc: int) -> int:
    """``n`` requests at ``conc`` at once; each must be a 200 that ends as the bench's check wants."""
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    failures = 0
    left = n

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=600) as client:
        async def one() -> None:
            nonlocal left, failures
            while left > 0:
                left -= 1
                r = await client.post("/v1/responses", content=body, headers=headers)
                ok = r.status_code == 200 and (b"response.completed" in r.content if stream else
                                               b'"status":"completed"' in r.content)
                failures += not ok
        await asyncio.gather(*(one() for _ in range(conc)))
    return failures


def run_into(results: list[int], load: Callable[[], Coroutine[object, object, int]]) -> None:
    results.append(asyncio.run(load()))


def build_toggle(into: Path) -> Path:
    """The toggle library and the ``sitecustomize`` that loads it, in ``into`` (its ``PYTHONPATH``)."""
    (into / "toggle.c").write_text(_TOGGLE_C)
    lib = into / "libtoggle.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(into / "toggle.c")], check=True)
    (into / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return lib


def start(name: str, root: Path | None, backend: str, out: Path, toggle: Path | None) -> Target:
    """``root``'s proxy (the floor if None) as deployed with one worker; under callgrind unless ``toggle`` is None."""
    port = devtools.free_port()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    env = dict(os.environ, BACKEND_URL=backend, HOST_PORT=str(port), WEB_CONCURRENCY="1", LOG_LEVEL="warning",
               RESPONSE_STORE_URL=f"sqlite:///{out}/store.sqlite3", PYTHONDONTWRITEBYTECODE="1")
    if toggle is not None:
        env.update(PYTHONPATH=str(toggle.parent), INSTRUCTIONS_TOGGLE_LIB=str(toggle))
    env.pop("PORT", None)
    if root is None:
        env["FLOOR_BACKEND_URL"] = backend
        args = [gunicorn, "-k", "proxy.worker.Worker", "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout", "600",
                "--keep-alive", "75", "--log-level", "warning", "loadtest.floor:app"]
        return Target(name, args, env, ROOT, port, out, toggle is not None)
    args = [gunicorn, "-c", "conf/gunicorn.conf.py", "--timeout", "600"]
    return Target(name, args, env, root, port, out, toggle is not None)


def target_options(doc: str, requests: int, warmup: int) -> argparse.ArgumentParser:
    """The options this harness and ``loadtest.syscall_census`` share: workloads, load, targets."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="stream50,json", help="workloads of loadtest.bench, comma-separated")
    ap.add_argument("--requests", type=int, default=requests)
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--idle-secs", type=float, default=5.0)
    ap.add_argument("--variant", action="append", default=[], help="name=/path/to/checkout")
    ap.add_argument("--no-floor", action="store_true")
    return ap


def target_specs(args: argparse.Namespace) -> list[tuple[str, Path | None]]:
    """(name, checkout) of every target: the floor (None) unless ``--no-floor``, this proxy, each variant."""
    specs: list[tuple[str, Path | None]] = [] if args.no_floor else [("floor", None)]
    specs.append(("proxy", ROOT))
    for v in args.variant:
        name, _, path = v.partition("=")
        specs.append((name, Path(path).resolve()))
    return specs


def main() -> None:
    ap = target_options(__doc__, 200, 100)
    ap.add_argument("--keep", help="a directory to keep the callgrind dumps in (callgrind_annotate them)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (Debian: apt-get install valgrind)")

    out_root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="instructions-"))
    out_root.mkdir(parents=True, exist_ok=True)
    toggle = build_toggle(out_root)
    mock = devtools.start_mock(out_root / "mock.log", workers=1, max_records=16)
    backend = mock.url + "/v1"
    specs = target_specs(args)
    workloads = args.only.split(",")
    rows: dict[tuple[str, str], float] = {}
    try:
        for name, root in specs:
            target = start(name, root, backend, out_root / name, toggle)
            try:
                idle, idle_wall = target.count(None, args.idle_secs)
                rate = idle / idle_wall
                for w in workloads:
                    body, stream = orjson.dumps(WORKLOADS[w]), bool(WORKLOADS[w]["stream"])
                    asyncio.run(load_requests(target.port, body, stream, args.warmup, args.conc))
                    failures: list[int] = []
                    load = functools.partial(load_requests, target.port, body, stream, args.requests, args.conc)
                    total, wall = target.count(functools.partial(run_into, failures, load))
                    if failures[0]:
                        print(f"{name} {w}: {failures[0]} of {args.requests} requests failed", file=sys.stderr)
                    per = (total - rate * wall) / args.requests
                    rows[(name, w)] = per
                    print(f"{name:>10} {w:<14} {per / 1000:10.1f} k instructions/request "
                          f"(idle {rate / 1e6:.2f} M/s over {wall:.1f} s: {rate * wall / total:.1%} of the window)",
                          flush=True)
            finally:
                target.stop()
    finally:
        mock.stop()
        if not args.keep:
            shutil.rmtree(out_root, ignore_errors=True)

    print(f"\nthousands of instructions per request, c={args.conc}, {args.requests} requests")
    names = [n for n, _ in specs]
    print(f"{'workload':<14}" + "".join(f"{n:>12}" for n in names)
          + ("".join(f"{n + '/floor':>16}" for n in names if n != "floor") if "floor" in names else ""))
    for w in workloads:
        line = f"{w:<14}" + "".join(f"{rows[(n, w)] / 1000:12.1f}" for n in names)
        if "floor" in names:
            line += "".join(f"{rows[(n, w)] / rows[('floor', w)]:16.3f}" for n in names if n != "floor")
        print(line)


if __name__ == "__main__":
    main()
