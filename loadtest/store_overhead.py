"""What storing a response costs the proxy: worker CPU per JSON request with ``store: true`` vs
``store: false``, side by side in one run, on SQLite and on Redis (prints a table).

Usage::

    python -m loadtest.store_overhead                          # ~1 min
    python -m loadtest.store_overhead --rounds 5 --duration 4 --conc 8
    python -m loadtest.store_overhead --think 0.02     # paced: both bodies at about the same req/s
    python -m loadtest.store_overhead --rate 800       # both bodies at 800 req/s exactly (while it keeps up)
    python -m loadtest.store_overhead --variant before=/tmp/proxy-main   # another checkout beside it
    python -m loadtest.store_overhead --micro --variant before=/tmp/proxy-main  # the stored path alone

Issue 10's budget: the stored path may add at most 0.15 ms of CPU per JSON request, on each
backend. What it starts: the mock backend, a ``redis-server`` of its own (no persistence), and per
checkout two proxies exactly as deployed (gunicorn, ``--workers`` Uvicorn workers): one on a SQLite
file in a temporary directory, one on the Redis. The load is ``loadtest/client.py`` (raw sockets,
keep-alive, ``--conc`` connections) sending ``{"model": "mock-echo", "input": …, "store": …}``.

CPU is the proxy workers' own user+system time from ``/proc`` (psutil), snapshotted at the exact
start and end of each measured window and divided by the requests finished in it; the SQLite
threads live in the workers, so their work is included; Redis's server CPU is shown apart. The
two bodies alternate for ``--rounds`` rounds on each proxy and the median of each is reported, so
the machine's drift (other tenants on a shared host) hits both alike; "added" is the median of the
per-round differences (each pair measured back to back), with their interquartile range. Unpaced
(the default) the same connections send ``store: true`` less often (each answer waits for its
write), so the two bodies are not measured at the same load (see ``req/s f/t``); ``--think``
paces both to about the same rate, and ``--rate R`` to the same one: each connection starts a
request every ``conc / R`` seconds whatever its answers took, so both bodies are measured at the
load a deployment sees (set by its clients, not by its latency), as long as the proxy keeps up
(``req/s f/t`` shows it).

``--prefill N`` (default 50,000): each SQLite file holds N responses before the first measured
request (ids minted by its checkout), as a store in use does; a put among many rows touches other
pages than one in an empty file.

``--micro``: no HTTP; ``loadtest/store_micro.py`` runs what ``store: true`` adds (``stand``,
``prepare``, ``remember`` through the instrumented store) in one process per checkout, at one and
at four requests in flight (``--in-flight``), best of its rounds — the difference the HTTP table
has to find in the noise of a shared machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.bench import API_KEY, HOST, Proc, cpu_of, quartiles, sleep_until, start_mock  # noqa: E402
from loadtest.client import LoadProcs, LoadSpec  # noqa: E402
from proxy import devtools  # noqa: E402

BUDGET_MS = 0.15
PROMPT = "Say hello in a few words."


@dataclass
class Cell:
    cpu_ms: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    redis_ms: list[float] = field(default_factory=list)
    errors: int = 0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _body(store: bool) -> bytes:
    return orjson.dumps({"model": "mock-echo", "input": PROMPT, "stream": False, "store": store})


def _phase(proxy: Proc, body: bytes, args: argparse.Namespace, redis: psutil.Process | None) -> tuple[float, float,
                                                                                                      float, int]:
    t_start = time.time() + 0.3 + args.warmup
    t_end = t_start + args.duration
    spec = LoadSpec(HOST, proxy.port, "POST", "/v1/responses", body, "responses-json", args.conc, t_start, t_end,
                    headers=(("Authorization", f"Bearer {API_KEY}"),), think=args.think,
                    interval=args.conc / args.rate if args.rate else 0.0, keep_samples=False)
    workers = proxy.workers()
    load = LoadProcs(spec, 1)
    sleep_until(t_start)
    c0, r0 = cpu_of(workers), cpu_of([redis]) if redis else 0.0
    sleep_until(t_end)
    c1, r1 = cpu_of(workers), cpu_of([redis]) if redis else 0.0
    res = load.join(timeout=args.duration + 120)
    ok = max(res.ok, 1)
    return (c1 - c0) / ok * 1000, res.ok / args.duration, (r1 - r0) / ok * 1000, res.errors


def _start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = devtools.free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind", HOST, "--save", "",
         "--appendonly", "no", "--dir", str(tmp), "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    for _ in range(200):
        try:
            with redis.Redis(host=HOST, port=port, socket_timeout=1) as client:
                client.ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    return server, f"redis://{HOST}:{port}/0"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.store_overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per phase (default 3)")
    ap.add_argument("--warmup", type=float, default=0.7)
    ap.add_argument("--rounds", type=int, default=4, help="store:false/store:true pairs per proxy (default 4)")
    ap.add_argument("--conc", type=int, default=8, help="client connections (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="proxy WEB_CONCURRENCY (default 2)")
    ap.add_argument("--think", type=float, default=0.0,
                    help="seconds each connection pauses between requests: paced load, both bodies at about the "
                         "same rate (default 0)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="requests per second for both bodies, each connection at a fixed interval (default 0: "
                         "each connection sends when answered)")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=DIR: another checkout of the proxy, measured the same way in the same run")
    ap.add_argument("--prefill", type=int, default=50_000,
                    help="responses stored in each SQLite file before measuring, ids minted by its checkout "
                         "(default 50000: a store in use, not an empty file)")
    ap.add_argument("--micro", action="store_true", help="the stored path alone, in process (no HTTP)")
    ap.add_argument("--in-flight", type=lambda text: [int(n) for n in text.split(",")], default=[1, 4],
                    help="--micro: requests in flight, comma-separated (default 1,4; a worker of a proxy at 16 "
                         "connections holds about 8)")
    args = ap.parse_args(argv)

    checkouts = [("this", ROOT)] + [(n, Path(d).resolve()) for n, _, d in (v.partition("=") for v in args.variant)]
    tmp = Path(tempfile.mkdtemp(prefix="store-overhead-"))
    if args.micro:
        return _micro(args, checkouts, tmp)
    mock = start_mock(2, tmp)
    server, redis_url = _start_redis(tmp)
    redis_proc = psutil.Process(server.pid)
    proxies: list[tuple[str, str, Proc]] = []
    try:
        for i, (name, root) in enumerate(checkouts):
            for backend in ("sqlite", "redis"):
                url = f"sqlite:///{tmp}/{name}.sqlite3" if backend == "sqlite" else f"{redis_url[:-1]}{i}"
                if backend == "sqlite" and args.prefill:
                    _prefill(root, f"{tmp}/{name}.sqlite3", args.prefill)
                service = devtools.start_proxy(mock.url + "/v1", tmp / f"{name}-{backend}.log", root=root,
                                               WEB_CONCURRENCY=str(args.workers), RESPONSE_STORE_URL=url,
                                               LOG_LEVEL="warning")
                proxies.append((name, backend, Proc(f"{name}-{backend}", service)))
        cells: dict[tuple[str, str, bool], Cell] = {}
        for r in range(args.rounds):
            for name, backend, proxy in proxies:
                for store in ((False, True) if r % 2 == 0 else (True, False)):
                    cpu, rps, redis_cpu, errors = _phase(proxy, _body(store), args,
                                                         redis_proc if backend == "redis" else None)
                    cell = cells.setdefault((name, backend, store), Cell())
                    cell.cpu_ms.append(cpu)
                    cell.rps.append(rps)
                    cell.redis_ms.append(redis_cpu)
                    cell.errors += errors
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        print(f"\nworker CPU per JSON request, ms (median of {args.rounds} rounds of {args.duration:g} s, "
              f"c={args.conc}{f', {args.rate:g} req/s' if args.rate else ''}, {args.workers} workers, "
              f"{psutil.cpu_count()} cores); budget: +{BUDGET_MS} ms")
        print(f"{'checkout':<10} {'backend':<7} {'store:false':>11} {'store:true':>10} {'added':>8} "
              f"{'added IQR':>15} {'budget':>6} {'req/s f/t':>11} {'redis ms':>8} {'errors':>6}")
        for name, backend, _ in proxies:
            off, on = cells[(name, backend, False)], cells[(name, backend, True)]
            diffs = [b - a for a, b in zip(off.cpu_ms, on.cpu_ms)]
            added = median(diffs)
            low, high = quartiles(diffs)
            redis_ms = f"{median(on.redis_ms):.3f}" if backend == "redis" else "-"
            print(f"{name:<10} {backend:<7} {median(off.cpu_ms):>11.3f} {median(on.cpu_ms):>10.3f} {added:>+8.3f} "
                  f"{f'{low:+.3f}..{high:+.3f}':>15} {'ok' if added <= BUDGET_MS else 'OVER':>6} "
                  f"{median(off.rps):>5.0f}/{median(on.rps):<5.0f} {redis_ms:>8} {off.errors + on.errors:>6}")
    finally:
        for _, _, proxy in proxies:
            proxy.stop()
        mock.stop()
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _prefill(root: Path, path: str, count: int) -> None:
    subprocess.run([sys.executable, str(ROOT / "loadtest" / "store_micro.py"), "--redis-url", "-", "--prefill",
                    str(count), "--prefill-only", path], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                   check=True)


def _micro(args: argparse.Namespace, checkouts: list[tuple[str, Path]], tmp: Path) -> int:
    server, redis_url = _start_redis(tmp)
    rows = []
    try:
        for conc in args.in_flight:
            for i, (name, root) in enumerate(checkouts):
                out = subprocess.run(
                    [sys.executable, str(ROOT / "loadtest" / "store_micro.py"), "--redis-url",
                     f"{redis_url[:-1]}{i}", "--conc", str(conc), "--rounds", str(max(args.rounds, 6)),
                     "--prefill", str(args.prefill)],
                    cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, check=True,
                ).stdout
                rows.append((name, orjson.loads(out.splitlines()[-1])))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"CPU per request of the stored path in one process, µs (best of {max(args.rounds, 6)} rounds, "
          f"{args.prefill} responses stored first); budget: +{BUDGET_MS * 1000:.0f} µs")
    print(f"{'checkout':<10} {'in flight':>9} {'backend':<7} {'store:false':>11} {'store:true':>10} {'added':>8} "
          f"{'budget':>6} {'median':>8} {'floor':>6}")
    for name, doc in rows:
        for backend in ("sqlite", "redis"):
            r = doc[backend]
            ok = "ok" if r["added_us"] <= BUDGET_MS * 1000 else "OVER"
            print(f"{name:<10} {doc['conc']:>9} {backend:<7} {r['store_false_us']:>11.1f} {r['store_true_us']:>10.1f} "
                  f"{r['added_us']:>+8.1f} {ok:>6} {r['added_median_us']:>+8.1f} {r['floor_us']:>6.1f}")
    print("added: best store:true minus best store:false; median: of each round's own difference (the two bodies "
          "back to back)")
    print("floor: the store's own work for that put alone (SQLite: put_response's statements on a connection, no "
          "thread; Redis: its EVALSHA on a bare asyncio protocol), see loadtest/store_micro.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
