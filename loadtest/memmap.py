"""Where a proxy's memory goes: PSS and private bytes of the master and each worker, by kind of mapping.

Usage::

    python -m loadtest.memmap                      # mock + proxy, 64 connections (half JSON, half streams) 20 s
    python -m loadtest.memmap --seconds 60 --conc 16 --variant before=/tmp/pss-base
    python -m loadtest.memmap --frames --sample-every 10   # + pages copied from the master (root)

It starts the mock and the proxy as ``loadtest.bench`` does, reads
``/proc/<pid>/smaps`` of the master and each worker before the load, at the end
of the load window (the load still running) and 3 s after it stopped, and
prints, per process, PSS and private (clean + dirty) kB summed over kinds of
mapping: ``heap`` (glibc's main arena, ``[heap]``), ``anon`` (unnamed anonymous
mappings: glibc's other arenas, pymalloc's 1 MiB arenas, mmapped large blocks),
``stack`` (``[stack]``), ``so`` (shared libraries), ``shm`` (the breakers'
and metrics' shared files, ``/dev/shm``, deleted files), ``file`` (other files,
e.g. SQLite's mapped WAL index). Thread stacks are anonymous mappings of their
own (8 MiB reserved, a guard page beside): counted as ``anon``; the number of
threads is printed beside. The total's anonymous part (``Pss_Anon``) is printed
apart: file-backed PSS is shared with every process on the host mapping the same
libraries, so it moves with what else runs. ``--frames`` (root) compares each
worker's page frames with the master's: pages still shared, copied after the
fork (written to), and the worker's own.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.bench import API_KEY, HOST, WORKLOADS, Proc, _variant, start_mock, start_proxy  # noqa: E402
from loadtest.client import LoadProcs, LoadSpec  # noqa: E402

KINDS = ("heap", "anon", "stack", "so", "shm", "file")


def _kind(name: str) -> str:
    if name == "[heap]":
        return "heap"
    if name == "[stack]":
        return "stack"
    if not name or name.startswith("[anon"):
        return "anon"
    if ".so" in name or name.startswith("[v"):
        return "so"
    if name.startswith("/dev/shm") or "(deleted)" in name or "/prom" in name or "breaker" in name:
        return "shm"
    return "file"


def smaps(pid: int) -> dict[str, dict[str, int]]:
    """kB of Pss and Private (clean + dirty) per kind of mapping."""
    out = {k: {"pss": 0, "priv": 0} for k in KINDS}
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=6)
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                kind = _kind(head[5].strip() if len(head) > 5 else "")
            elif head[0] == "Pss:":
                out[kind]["pss"] += int(head[1])
            elif head[0] in ("Private_Clean:", "Private_Dirty:"):
                out[kind]["priv"] += int(head[1])
    return out


def _frames(pid: int) -> dict[int, int]:
    """Page frame number of each present page of ``pid``'s writable heap and anonymous mappings
    (``/proc/<pid>/pagemap``; the frame numbers read as 0 without CAP_SYS_ADMIN)."""
    out: dict[int, int] = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            head = line.split()
            name = head[5] if len(head) > 5 else ""
            if "w" not in head[1] or (name and name != "[heap]" and not name.startswith("[anon")):
                continue
            start, end = (int(x, 16) for x in head[0].split("-"))
            pagemap.seek(start // 4096 * 8)
            data = pagemap.read((end - start) // 4096 * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", data)):
                if entry >> 63:  # present
                    out[start + i * 4096] = entry & ((1 << 55) - 1)
    return out


def copies(proc: Proc) -> None:
    """Per worker: MB of its heap/anonymous pages still the master's (same frame), copied from the
    master's (the master has a page at that address, the worker its own) and its own (no master page)."""
    master = _frames(proc.proc.pid)
    for w in proc.workers():
        counts = {"shared": 0, "copied": 0, "own": 0}
        for addr, frame in _frames(w.pid).items():
            theirs = master.get(addr)
            counts["shared" if theirs == frame else "copied" if theirs is not None else "own"] += 1
        print(f"          worker {w.pid}: pages the master's {counts['shared'] * 4 / 1024:.1f} MB, "
              f"copied {counts['copied'] * 4 / 1024:.1f} MB, its own {counts['own'] * 4 / 1024:.1f} MB", flush=True)


def rollup(pid: int) -> dict[str, int]:
    """kB per field of /proc/<pid>/smaps_rollup (Pss, Pss_Anon, Pss_File, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            head = line.split()
            if head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
                out[head[0][:-1]] = int(head[1])
    return out


def report(label: str, proc: Proc) -> float:
    """Print one line per process; return the total PSS in MB."""
    total = 0
    anon = 0
    for p in proc.all_pids():
        if "resource_tracker" in " ".join(p.cmdline()):
            continue
        m = smaps(p.pid)
        pss = sum(v["pss"] for v in m.values())
        total += pss
        anon += rollup(p.pid).get("Pss_Anon", 0)
        cells = "  ".join(f"{k} {m[k]['pss'] / 1024:5.1f}/{m[k]['priv'] / 1024:5.1f}" for k in KINDS)
        print(f"  {label:<7} {proc.name:<8} pid {p.pid:>7} thr {p.num_threads():>2}  pss {pss / 1024:6.1f}  "
              f"(kind pss/private MB) {cells}", flush=True)
    print(f"  {label:<7} {proc.name:<8} total PSS {total / 1024:.1f} MB (anonymous {anon / 1024:.1f})", flush=True)
    if FRAMES:
        copies(proc)
    return total / 1024


FRAMES = False  # --frames


def load(proxy: Proc, conc: int, seconds: float, workloads: tuple[str, ...] = ("json", "stream50")) -> list[LoadProcs]:
    """``conc`` connections shared out over ``workloads`` (``loadtest.bench.WORKLOADS``), for ``seconds``."""
    t_start = time.time() + 0.5
    shares = [conc // len(workloads) + (1 if i < conc % len(workloads) else 0) for i in range(len(workloads))]
    return [
        LoadProcs(LoadSpec(HOST, proxy.port, "POST", "/v1/responses", orjson.dumps(WORKLOADS[w]),
                           "responses-stream" if WORKLOADS[w]["stream"] else "responses-json", n, t_start,
                           t_start + seconds, headers=(("Authorization", f"Bearer {API_KEY}"),), keep_samples=False), 1)
        for w, n in zip(workloads, shares) if n
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.memmap", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample-every", type=float, default=0.0, help="also report every so many seconds of the load")
    ap.add_argument("--variant", action="append", default=[], help="NAME=DIR[:KEY=VAL,...] as loadtest.bench's")
    ap.add_argument("--env", action="append", default=[], help="KEY=VAL for the main proxy")
    ap.add_argument("--frames", action="store_true",
                    help="also each worker's pages shared with the master, copied from it, its own (needs root)")
    args = ap.parse_args(argv)
    global FRAMES
    FRAMES = args.frames
    logs = Path(tempfile.mkdtemp(prefix="memmap-logs-"))
    mock = start_mock(2, logs)
    proxies: list[Proc] = []
    try:
        for spec in args.variant:
            name, where, env = _variant(spec)
            proxies.append(start_proxy(name, where, mock.url + "/v1", args.workers, env, logs))
        proxies.append(start_proxy("proxy", ROOT, mock.url + "/v1", args.workers,
                                   dict(kv.split("=", 1) for kv in args.env), logs))
        print(f"load={os.getloadavg()} logs={logs}", flush=True)
        for p in proxies:
            print(f"{p.name}: c={args.conc} for {args.seconds:.0f} s", flush=True)
            report("idle", p)
            loads = load(p, args.conc, args.seconds)
            t0 = time.time() + 0.5
            while args.sample_every and time.time() + args.sample_every < t0 + args.seconds:
                time.sleep(args.sample_every)
                report(f"t={time.time() - t0:.0f}", p)
            time.sleep(max(0.0, t0 + args.seconds - time.time()))
            report("load", p)
            results = [lp.join(timeout=120) for lp in loads]
            print(f"  {sum(r.ok for r in results)} ok, {sum(r.errors for r in results)} errors", flush=True)
            time.sleep(3.0)
            report("after", p)
    finally:
        for p in proxies:
            p.stop()
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
