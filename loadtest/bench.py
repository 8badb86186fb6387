"""Benchmark the proxy against the mock backend on one machine, with CPU accounting.

Usage::

    python -m loadtest.bench                         # full matrix, ~2 min
    python -m loadtest.bench --duration 10 --workers 2 --mock-workers 2 --out /tmp/bench.json
    python -m loadtest.bench --only json,stream50 --conc 1,64
    python -m loadtest.bench --variant nolog=.:LOG_LEVEL=warning   # side by side, same run
    python -m loadtest.bench --variant exp=/tmp/proxy-exp          # another checkout of the proxy
    python -m loadtest.bench --soak 300              # RSS per worker over time at c=64
    python -m loadtest.bench --slow-streams 1000     # 1,000 open slow streams + probe latency

What it starts: the mock backend (``python -m proxy.mock``, ``--mock-workers``
processes, request log capped) and the proxy exactly as deployed (``gunicorn -c
conf/gunicorn.conf.py``, ``WEB_CONCURRENCY=--workers``), plus one proxy per
``--variant NAME=DIR[:KEY=VAL,...]`` (a checkout directory and extra environment).

What it measures, per workload and concurrency, for the mock called directly
("direct": the very chat request the proxy would send) and through each proxy:

- requests/s, p50/p99 latency, p50 time to first body byte;
- added latency = proxy p50/p99 minus direct p50/p99 of the same workload, same run;
- the proxy workers' own CPU-seconds (user+system from ``/proc`` via psutil,
  snapshotted at the exact start and end of the measured window) per request and
  per upstream chunk: this holds on a noisy or saturated machine, where req/s does not;
- the mock's and the load client's CPU per request (to show who saturates the cores),
  and RSS per proxy worker after each phase.

Workloads: ``json`` (``stream: false``, model ``mock-echo``), ``stream50`` (50 text
chunks, ``mock-stream-50``: the mock writes the whole body at once, so this is the
translation cost), ``stream1`` (1 chunk; the difference to ``stream50`` is the
marginal cost of a chunk), ``paced50`` / ``paced3`` (``mock-slow-1``: every chunk a
separate network write 1 ms apart, as real backends do, so each chunk costs a read,
a wake-up and a client write).

The load generator is ``loadtest/client.py`` (asyncio + uvloop on raw sockets,
``--client-procs`` processes); its ceiling is the "direct" rows of the same run.

``--soak SECONDS``: concurrency 64 (half JSON, half 50-chunk streams) for SECONDS,
sampling each worker's RSS every ``--sample-every`` seconds (flat = no leak); with
``--variant``, each variant is soaked in turn before the proxy, in the same run.
``--slow-streams N``: N concurrent streams from ``mock-slow-1000`` (one chunk per
second, ~``--slow-chunks`` chunks) held by the workers, while ``/health`` and JSON
requests are probed every 100 ms; reports stream errors and the probes' latency.

Results print as a table; ``--out FILE`` also writes them as JSON.
"""
from __future__ import annotations

import argparse
import os
import resource
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

from loadtest.client import LoadProcs, LoadResult, LoadSpec  # noqa: E402
from proxy import devtools  # noqa: E402
from proxy.devtools import Service  # noqa: E402

HOST = "127.0.0.1"
API_KEY = "sk-bench-0123456789abcdef"

_TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]
# Long enough for ~30 reasoning and ~30 text chunks of 4 characters.
_THINK = "Tell me about proxies, briefly, and think about it first. " * 2

def _w(model: str, text: str, stream: bool, **extra: object) -> dict:
    """A Responses request body; ``store: false`` unless ``extra`` says otherwise (see WORKLOADS)."""
    return {"model": model, "input": text, "stream": stream, "store": False, **extra}


# `store: false` everywhere but `json_stored`: the targets compare like with like (the
# floor and LiteLLM keep nothing); what storing costs is the store's own measurement.
_STORY = ("Tell me a story about a proxy. " * 7)[:190]
WORKLOADS: dict[str, dict] = {
    "json": _w("mock-echo", "Say hello in a few words.", False),
    # The same request stored (`store` left out: the default): the store's own cost, measured apart.
    "json_stored": {"model": "mock-echo", "input": "Say hello in a few words.", "stream": False},
    # The same answers as stream50 / stream500, asked for as JSON: the proxy's cost must not grow with them.
    "json50": _w("mock-stream-50", "Count to fifty.", False),
    "json500": _w("mock-stream-500", "Count to five hundred.", False),
    "stream50": _w("mock-stream-50", "Count to fifty.", True),
    "stream500": _w("mock-stream-500", "Count to five hundred.", True),
    "stream1": _w("mock-stream-1", "Count to one.", True),
    "tool_json": _w("mock-tool", "Weather in Paris?", False, tools=_TOOLS),
    "tool_stream": _w("mock-tool", "Weather in Paris?", True, tools=_TOOLS),
    "reason_json": _w("mock-reasoning", _THINK, False),
    "reason_stream": _w("mock-reasoning", _THINK, True),
    # "You said: " + 190 characters = 200 characters = 50 chunks of 4, one write each.
    "paced50": _w("mock-slow-1", _STORY, True),
    "paced3": _w("mock-slow-1", "hi", True),
}
DEFAULT_MATRIX = [
    ("json", 1), ("stream50", 1),
    ("json", 16), ("json_stored", 16), ("json50", 16), ("json500", 16),
    ("stream50", 16), ("stream500", 16), ("stream1", 16),
    ("tool_json", 16), ("tool_stream", 16), ("reason_json", 16), ("reason_stream", 16),
    ("json", 64), ("stream50", 64), ("paced50", 64), ("paced3", 64),
]


# --------------------------------------------------------------------------- processes


class Proc:
    """A service started by ``proxy.devtools`` plus what the bench reads off it."""

    def __init__(self, name: str, service: Service) -> None:
        self.name = name
        self.service = service
        self.url = service.url
        self.port = service.port
        self.proc = service.proc
        self.log = service.log_path

    def workers(self) -> list[psutil.Process]:
        """The processes that do the work: the children (gunicorn / uvicorn workers), else the process."""
        try:
            root = psutil.Process(self.proc.pid)
            kids = [p for p in root.children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]
        except psutil.Error:
            return []
        return kids or [root]

    def all_pids(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        self.service.stop()


def cpu_of(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def rss_mb(procs: list[psutil.Process]) -> list[float]:
    out = []
    for p in procs:
        try:
            out.append(p.memory_info().rss / 2**20)
        except psutil.Error:
            out.append(float("nan"))
    return out


def pss_mb(procs: list[psutil.Process]) -> float:
    """Proportional set size of these processes together (shared pages counted once), from smaps_rollup."""
    total_kb = 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            pass
    return total_kb / 1024


def start_mock(workers: int, logs: Path) -> Proc:
    return Proc("mock", devtools.start_mock(logs / "mock.log", workers=workers, max_records=16))


def start_proxy(name: str, root: Path, backend: str, workers: int, extra_env: dict[str, str], logs: Path) -> Proc:
    service = devtools.start_proxy(
        backend, logs / f"{name}.log", root=root, WEB_CONCURRENCY=str(workers), **extra_env
    )
    return Proc(name, service)


def start_floor(backend: str, workers: int, logs: Path) -> Proc:
    """``loadtest/floor.py`` under gunicorn with the proxy's worker class (its own command line)."""
    port = devtools.free_port()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    env = dict(os.environ, FLOOR_BACKEND_URL=backend, BACKEND_URL=backend, LOG_LEVEL="warning")
    args = [gunicorn, "-k", "proxy.worker.Worker", "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "--keep-alive", "75", "--log-level", "warning", "loadtest.floor:app"]
    return Proc("floor", Service(args, port, "/health", env, logs / "floor.log", cwd=ROOT))


def start_litellm(backend: str, workers: int, logs: Path) -> Proc:
    from loadtest import litellm_bridge

    return Proc("litellm", litellm_bridge.start(backend, workers, logs, API_KEY))


# --------------------------------------------------------------------------- requests


def chat_body(responses_body: dict) -> bytes:
    """The chat request the proxy sends for ``responses_body`` (its own translator, so identical)."""
    from proxy.translate.request import TranslationPolicy, translate_request

    chat, _ = translate_request(responses_body, TranslationPolicy())
    return orjson.dumps(chat)


def upstream_events(mock: Proc, body: bytes) -> int:
    """How many SSE events the mock sends for this chat request (for per-chunk figures)."""
    import httpx

    r = httpx.post(mock.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    return r.content.count(b"data: ")


@dataclass
class Target:
    name: str
    proc: Proc
    direct: bool


@dataclass
class PhaseResult:
    target: str
    workload: str
    conc: int
    duration: float
    ok: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    ttfb_p50_ms: float
    server_cpu_ms_per_req: float  # the target's worker CPU
    us_per_chunk: float
    mock_cpu_ms_per_req: float
    client_cpu_ms_per_req: float
    rss_mb: list[float]
    pss_mb: float  # master + workers together
    upstream_events: int
    load1: float = 0.0  # the machine's 1-minute load average at the end of the phase
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    error_samples: list[str] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000.0


def quartiles(values: list[float]) -> tuple[float, float]:
    """The interquartile range of a few rounds' figures (under 4 rounds: their range)."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


def run_phase(target: Target, mock: Proc, workload: str, body: bytes, conc: int, args, events: int) -> PhaseResult:
    t_start = time.time() + 0.3 + args.warmup
    t_end = t_start + args.duration
    check = "chat-stream" if target.direct else (
        "responses-json" if not WORKLOADS[workload]["stream"] else
        "responses-stream-data" if target.name == "litellm" else "responses-stream"
    )
    path = "/v1/chat/completions" if target.direct else "/v1/responses"
    spec = LoadSpec(HOST, target.proc.port, "POST", path, body, check, conc, t_start, t_end,
                    headers=(("Authorization", f"Bearer {API_KEY}"),))
    server = target.proc.workers()
    mock_procs = mock.workers()
    load = LoadProcs(spec, args.client_procs)
    sleep_until(t_start)
    spy = _profile(target, workload, conc, args) if args.profile and target.name in args.profile_targets else None
    s0, m0 = cpu_of(server), cpu_of(mock_procs)
    sleep_until(t_end)
    s1, m1 = cpu_of(server), cpu_of(mock_procs)
    pss = 0.0 if target.direct else pss_mb(target.proc.all_pids())
    if spy is not None:
        spy.wait(timeout=args.duration + 60)
    res: LoadResult = load.join(timeout=args.duration + 120)
    rss = rss_mb(server)
    ok = max(res.ok, 1)
    server_cpu = (s1 - s0) / ok
    return PhaseResult(
        target=target.name, workload=workload, conc=conc, duration=args.duration, ok=res.ok, errors=res.errors,
        rps=res.ok / args.duration, p50_ms=_pct(res.latencies, 0.5), p99_ms=_pct(res.latencies, 0.99),
        ttfb_p50_ms=_pct(res.ttfb, 0.5), server_cpu_ms_per_req=server_cpu * 1000,
        us_per_chunk=server_cpu / events * 1e6 if events else float("nan"),
        mock_cpu_ms_per_req=(m1 - m0) / ok * 1000, client_cpu_ms_per_req=res.cpu_window / ok * 1000,
        rss_mb=[round(r, 1) for r in rss], pss_mb=round(pss, 1), upstream_events=events,
        load1=os.getloadavg()[0], error_samples=res.error_samples,
    )


def _profile(target: Target, workload: str, conc: int, args) -> subprocess.Popen:
    """py-spy on the target's first worker for the measured window (collapsed stacks, see loadtest.profile)."""
    out = Path(args.profile) / f"{target.name}-{workload}-c{conc}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    pyspy = str(Path(sys.executable).with_name("py-spy"))
    pid = target.proc.workers()[0].pid
    return subprocess.Popen([pyspy, "record", "--pid", str(pid), "--duration", str(int(args.duration)),
                             "--rate", "250", "--nonblocking", "--format", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------------- modes


def bench(args, mock: Proc, proxies: list[Proc]) -> dict:
    matrix = DEFAULT_MATRIX
    if args.only:
        keep = set(args.only.split(","))
        matrix = [m for m in matrix if m[0] in keep]
    if args.conc:
        concs = [int(c) for c in args.conc.split(",")]
        names = list(dict.fromkeys(w for w, _ in matrix))
        matrix = [(w, c) for c in concs for w in names]
    targets = [Target("direct", mock, True)] + [Target(p.name, p, False) for p in proxies]
    results: list[PhaseResult] = []
    for workload, conc in matrix:
        responses_body = WORKLOADS[workload]
        direct_body = chat_body(responses_body)
        events = upstream_events(mock, direct_body)
        row: dict[str, PhaseResult] = {}
        for target in targets:
            body = direct_body if target.direct else orjson.dumps(responses_body)
            r = run_phase(target, mock, workload, body, conc, args, events)
            row[target.name] = r
            if not target.direct and "direct" in row:
                r.added_p50_ms = r.p50_ms - row["direct"].p50_ms
                r.added_p99_ms = r.p99_ms - row["direct"].p99_ms
            results.append(r)
            print(_fmt(r), flush=True)
            for sample in r.error_samples[:2]:
                print(f"    error: {sample}", flush=True)
    print(summary(results), flush=True)
    return {"mode": "bench", "results": [r.__dict__ for r in results]}


def summary(results: list[PhaseResult]) -> str:
    """Per workload: each target's CPU per request (and added p50 at c=1) over the floor's, ours over LiteLLM's."""
    rows: dict[tuple[str, int], dict[str, PhaseResult]] = {}
    for r in results:
        rows.setdefault((r.workload, r.conc), {})[r.target] = r
    names = [n for n in dict.fromkeys(r.target for r in results) if n != "direct"]
    lines = ["", "CPU ms/request (x floor) " + "  ".join(names) + "  |  proxy/litellm: req/s, CPU"]
    for (workload, conc), row in rows.items():
        floor = row.get("floor")
        cells = []
        for n in names:
            r = row.get(n)
            if r is None:
                cells.append("-")
                continue
            cell = f"{n}={r.server_cpu_ms_per_req:.3f}"
            if floor is not None and floor.server_cpu_ms_per_req > 0:
                cell += f" ({r.server_cpu_ms_per_req / floor.server_cpu_ms_per_req:.2f}x)"
            if conc == 1 and r.added_p50_ms is not None and floor is not None and floor.added_p50_ms:
                cell += f" +p50 {r.added_p50_ms:.2f} ({r.added_p50_ms / floor.added_p50_ms:.2f}x)"
            cells.append(cell)
        ours, theirs = row.get("proxy"), row.get("litellm")
        vs = ""
        if ours is not None and theirs is not None and theirs.rps > 0 and theirs.server_cpu_ms_per_req > 0:
            vs = (f"  |  {ours.rps / theirs.rps:.1f}x req/s, "
                  f"{ours.server_cpu_ms_per_req / theirs.server_cpu_ms_per_req:.2f}x CPU")
        lines.append(f"{workload:<13} c={conc:<3} " + "  ".join(cells) + vs)
    lines += _paced_chunk(rows, names)
    return "\n".join(lines)


def _paced_chunk(rows: dict[tuple[str, int], dict[str, PhaseResult]], names: list[str]) -> list[str]:
    """The marginal CPU of one paced chunk (each its own network write): paced50 minus paced3, per chunk."""
    lines = []
    for (workload, conc), row in rows.items():
        short = rows.get(("paced3", conc)) if workload == "paced50" else None
        if short is None:
            continue
        cells = []
        for n in names:
            long_r, short_r = row.get(n), short.get(n)
            if long_r is None or short_r is None or long_r.upstream_events <= short_r.upstream_events:
                continue
            extra = long_r.upstream_events - short_r.upstream_events
            us = (long_r.server_cpu_ms_per_req - short_r.server_cpu_ms_per_req) * 1000 / extra
            cells.append(f"{n}={us:.1f}")
        lines.append(f"µs CPU per paced chunk (paced50 - paced3) c={conc}: " + "  ".join(cells))
    return lines


HEADER = (f"{'target':<10} {'workload':<9} {'c':>3} {'req/s':>8} {'p50ms':>7} {'p99ms':>7} {'ttfb50':>7} "
          f"{'+p50ms':>7} {'+p99ms':>7} {'cpu ms/req':>10} {'us/chunk':>8} {'mock ms':>7} {'clnt ms':>7} "
          f"{'rss MB/worker':>14} {'pss MB':>7} {'err':>4}")


def _fmt(r: PhaseResult) -> str:
    def f(v, w, p=2):
        return f"{'-':>{w}}" if v is None or v != v else f"{v:>{w}.{p}f}"
    rss = "/".join(f"{x:.0f}" for x in r.rss_mb) if r.target != "direct" else "-"
    return (f"{r.target:<10} {r.workload:<9} {r.conc:>3} {r.rps:>8.0f} {f(r.p50_ms, 7)} {f(r.p99_ms, 7)} "
            f"{f(r.ttfb_p50_ms, 7)} {f(r.added_p50_ms, 7)} {f(r.added_p99_ms, 7)} "
            f"{f(r.server_cpu_ms_per_req, 10, 3)} {f(r.us_per_chunk, 8, 1)} {f(r.mock_cpu_ms_per_req, 7, 3)} "
            f"{f(r.client_cpu_ms_per_req, 7, 3)} {rss:>14} {f(r.pss_mb or None, 7, 0)} {r.errors:>4}")


def soak(args, mock: Proc, proxy: Proc) -> dict:
    """c=64 (32 JSON + 32 stream50 connections) for --soak seconds; RSS per worker and PSS of the
    master and workers together sampled, and PSS once more after the load stopped."""
    t_start = time.time() + 1.0
    t_end = t_start + args.soak
    specs = [
        LoadSpec(HOST, proxy.port, "POST", "/v1/responses", orjson.dumps(WORKLOADS[w]),
                 "responses-json" if w == "json" else "responses-stream", 32, t_start, t_end,
                 headers=(("Authorization", f"Bearer {API_KEY}"),), keep_samples=False)
        for w in ("json", "stream50")
    ]
    loads = [LoadProcs(s, args.client_procs) for s in specs]
    samples = []
    sleep_until(t_start)
    cpu0 = cpu_of(proxy.workers())
    next_t = t_start
    while next_t <= t_end + 0.01:
        sleep_until(next_t)
        workers = proxy.workers()
        rss = rss_mb(workers)
        sample = {"t": round(time.time() - t_start, 1), "pids": [p.pid for p in workers],
                  "rss_mb": [round(x, 1) for x in rss], "pss_mb": round(pss_mb(proxy.all_pids()), 1)}
        samples.append(sample)
        print(f"soak {proxy.name} t={sample['t']:>6.1f}s  rss MB per worker: {sample['rss_mb']}  "
              f"pss MB master+workers: {sample['pss_mb']}", flush=True)
        next_t += args.sample_every
    cpu1 = cpu_of(proxy.workers())
    results = [load.join(timeout=120) for load in loads]
    time.sleep(2.0)
    pss_after = round(pss_mb(proxy.all_pids()), 1)
    ok = sum(r.ok for r in results)
    errors = sum(r.errors for r in results)
    # Growth: from the first sample after warm-up (10% of the run) to the last, per worker pid.
    warm = [s for s in samples if s["t"] >= args.soak * 0.1] or samples
    growth = {}
    for pid in warm[0]["pids"]:
        later = [s["rss_mb"][s["pids"].index(pid)] for s in warm if pid in s["pids"]]
        growth[str(pid)] = round(later[-1] - later[0], 1)
    out = {"mode": "soak", "seconds": args.soak, "requests": ok, "errors": errors, "rps": ok / args.soak,
           "cpu_ms_per_req": (cpu1 - cpu0) / max(ok, 1) * 1000, "samples": samples,
           "growth_mb_after_warmup": growth, "pss_mb_peak": max(s["pss_mb"] for s in samples),
           "pss_mb_after": pss_after,
           "error_samples": [e for r in results for e in r.error_samples][:5]}
    print(f"soak {proxy.name}: {ok} requests ({ok / args.soak:.0f}/s), {errors} errors, "
          f"cpu {out['cpu_ms_per_req']:.3f} ms/req, RSS growth after warm-up per worker (MB): {growth}, "
          f"PSS master+workers peak {out['pss_mb_peak']} MB, after {pss_after} MB")
    return out


def slow_streams(args, mock: Proc, proxy: Proc) -> dict:
    """N concurrent one-chunk-per-second streams, with /health and JSON probes meanwhile."""
    n = args.slow_streams
    text = "x" * max(0, 4 * args.slow_chunks - len("You said: "))
    body = orjson.dumps({"model": "mock-slow-1000", "input": text, "stream": True})
    events = args.slow_chunks + 4  # role chunk, text chunks, finish, usage, [DONE]
    spread = min(5.0, n / 200)
    hold = (events - 1) * 1.0
    t_start = time.time() + 0.5
    t_end = t_start + spread + hold + 30  # bound; each connection makes one request
    auth = (("Authorization", f"Bearer {API_KEY}"),)
    streams = LoadProcs(LoadSpec(HOST, proxy.port, "POST", "/v1/responses", body, "responses-stream", n,
                                 t_start, t_end, headers=auth, requests_per_connection=1,
                                 connect_spread=spread), args.client_procs)
    probe_end = t_start + spread + hold - 1
    probes = {
        "health": LoadProcs(LoadSpec(HOST, proxy.port, "GET", "/health", b"", "health", 1, t_start + spread,
                                     probe_end, headers=auth, think=0.1), 1),
        "json": LoadProcs(LoadSpec(HOST, proxy.port, "POST", "/v1/responses", orjson.dumps(WORKLOADS["json"]),
                                   "responses-json", 1, t_start + spread, probe_end, headers=auth, think=0.1), 1),
    }
    cpu0 = cpu_of(proxy.workers())
    peak_rss: list[float] = []
    conns_peak = 0
    while time.time() < probe_end:
        time.sleep(1.0)
        workers = proxy.workers()
        rss = rss_mb(workers)
        peak_rss = [max(a, b) for a, b in zip(peak_rss, rss)] if len(peak_rss) == len(rss) else rss
        try:
            conns = sum(len(p.net_connections(kind="tcp")) for p in workers)
        except psutil.Error:
            conns = 0
        conns_peak = max(conns_peak, conns)
    probe_results = {k: v.join(timeout=60) for k, v in probes.items()}
    res = streams.join(timeout=t_end - time.time() + 60)
    cpu1 = cpu_of(proxy.workers())
    out = {
        "mode": "slow-streams", "streams": n, "chunks_per_stream": args.slow_chunks, "ok": res.completed_total,
        "errors": res.errors, "error_samples": res.error_samples,
        "stream_p50_s": _pct(res.latencies, 0.5) / 1000, "stream_max_s": _pct(res.latencies, 1.0) / 1000,
        "worker_tcp_connections_peak": conns_peak, "peak_rss_mb": [round(x, 1) for x in peak_rss],
        "cpu_ms_per_stream": (cpu1 - cpu0) / max(res.completed_total, 1) * 1000,
        "probes": {
            k: {"count": r.completed_total, "errors": r.errors, "p50_ms": _pct(r.latencies, 0.5),
                "p99_ms": _pct(r.latencies, 0.99), "max_ms": _pct(r.latencies, 1.0)}
            for k, r in probe_results.items()
        },
    }
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return out


# --------------------------------------------------------------------------- main


def _variant(spec: str) -> tuple[str, Path, dict[str, str]]:
    name, _, rest = spec.partition("=")
    where, _, envs = rest.partition(":")
    env = dict(kv.split("=", 1) for kv in envs.split(",") if kv)
    return name, (ROOT / where).resolve() if where else ROOT, env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per phase (default 5)")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each phase")
    ap.add_argument("--workers", type=int, default=2, help="proxy WEB_CONCURRENCY (default 2)")
    ap.add_argument("--mock-workers", type=int, default=2)
    ap.add_argument("--client-procs", type=int, default=1, help="load-generator processes (default 1)")
    ap.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    ap.add_argument("--conc", help="comma-separated concurrencies (replaces the default matrix's)")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=DIR[:KEY=VAL,...]: another proxy (checkout dir, extra env) measured side by side")
    ap.add_argument("--env", action="append", default=[], help="KEY=VAL for the main proxy")
    ap.add_argument("--soak", type=float, help="soak mode: seconds at c=64")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--slow-streams", type=int, help="slow-stream mode: number of concurrent streams")
    ap.add_argument("--slow-chunks", type=int, default=10, help="text chunks per slow stream (1 s apart)")
    ap.add_argument("--no-floor", dest="floor", action="store_false",
                    help="leave out the floor (loadtest/floor.py), measured beside the proxy by default")
    ap.add_argument("--litellm", action="store_true",
                    help="also LiteLLM's Responses bridge (loadtest/litellm_bridge.py; installs it once)")
    ap.add_argument("--profile", metavar="DIR",
                    help="py-spy each --profile-targets worker during every phase (numbers then carry its cost)")
    ap.add_argument("--profile-targets", default="proxy", help="comma-separated target names (default proxy)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    args.profile_targets = sorted(set(args.profile_targets.split(",")))  # a list: --out writes it as JSON

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    mock = start_mock(args.mock_workers, logs)
    # In table order: the floor, the variants (e.g. base=<a checkout of main>), ours, LiteLLM.
    proxies: list[Proc] = []
    backend = mock.url + "/v1"
    try:
        main_env = dict(kv.split("=", 1) for kv in args.env)
        ours = start_proxy("proxy", ROOT, backend, args.workers, main_env, logs)
        if args.floor and not (args.soak or args.slow_streams):
            proxies.append(start_floor(backend, args.workers, logs))
        for spec in args.variant:
            name, where, env = _variant(spec)
            proxies.append(start_proxy(name, where, backend, args.workers, env, logs))
        proxies.append(ours)
        if args.litellm:
            proxies.append(start_litellm(backend, args.workers, logs))
        print(f"cores={os.cpu_count()} proxy workers={args.workers} mock workers={args.mock_workers} "
              f"client procs={args.client_procs} nofile={hard} load={os.getloadavg()} logs={logs}", flush=True)
        if args.soak:
            # Each proxy in turn (the variants first), one soak each, in this one run.
            soaks = {p.name: soak(args, mock, p) for p in proxies if p.name != "litellm"}
            out = {"mode": "soak", "soaks": soaks} if len(soaks) > 1 else soaks["proxy"]
            for name, r in soaks.items():
                print(f"soak {name}: PSS master+workers peak {r['pss_mb_peak']} MB, after {r['pss_mb_after']} MB, "
                      f"{r['requests']} requests, {r['errors']} errors, cpu {r['cpu_ms_per_req']:.3f} ms/req")
        elif args.slow_streams:
            out = slow_streams(args, mock, ours)
        else:
            print(HEADER, flush=True)
            out = bench(args, mock, proxies)
        out["config"] = {k: v for k, v in vars(args).items()}
        out["config"]["cores"] = os.cpu_count()
        out["config"]["loadavg_end"] = os.getloadavg()
        if args.out:
            Path(args.out).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
            print(f"wrote {args.out}")
        for p in proxies:
            if p.proc.poll() is not None:
                print(f"{p.name} exited with {p.proc.returncode}: see {p.log}")
                return 1
    finally:
        for p in proxies:
            p.stop()
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
