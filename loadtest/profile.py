"""Read py-spy's collapsed stacks (``--format raw``) as text: the top frames by own and by total time.

Usage::

    python -m loadtest.profile /tmp/prof/proxy-json-c16.txt [--top 30] [--under 'App.__call__']
    python -m loadtest.profile floor.txt proxy.txt --split [--us 801,1082]   # side by side, by part

``bench.py --profile DIR`` writes one such file per phase and target. "Own" is
the share of samples whose innermost frame is that function; "total" the share
of samples with that function anywhere on the stack (each counted once per
sample), so the hot path's layers show as a staircase of totals.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"\s*\(([^)]*?)(?::\d+)?\)$")


def _frame(raw: str) -> str:
    """``func (path/to/module.py:123)`` → ``func (module.py)``: one entry per function, not per line."""
    m = _LINE.search(raw)
    if not m:
        return raw.strip()
    path = m.group(1)
    short = "/".join(path.split("/")[-2:]) if "site-packages" not in path else path.split("site-packages/")[-1]
    return f"{raw[: m.start()].strip()} ({short})"


def summarize(path: Path, top: int = 30, idle: bool = False, under: str | None = None) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    children: Counter[str] = Counter()  # what the first frame matching `under` calls, by total time
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        if not idle and frames and frames[-1].startswith(("select (", "poll (", "run_once (")):
            continue  # the loop waiting for I/O: not work
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
        if under is not None:
            at = next((i for i, f in enumerate(frames) if f.startswith(under)), None)
            if at is not None:
                children[frames[at + 1] if at + 1 < len(frames) else "(own)"] += n
    out = [f"{path.name}: {samples} busy samples"]
    out.append(f"-- own time (top {top})")
    out += [f"{100 * n / samples:6.2f}%  {f}" for f, n in own.most_common(top)]
    out.append(f"-- total time (top {top})")
    out += [f"{100 * n / samples:6.2f}%  {f}" for f, n in total.most_common(top)]
    if under is not None:
        out.append(f"-- called by {under} (share of all samples)")
        out += [f"{100 * n / samples:6.2f}%  {f}" for f, n in children.most_common(top)]
    return "\n".join(out)


# The parts of a request ``--split`` counts a sample in: the first rule with a frame anywhere on
# the sample's stack wins (so the per-request parts come before the loops they run in).
SPLIT: list[tuple[str, tuple[str, ...]]] = [
    ("request_completed log line", ("request_completed (", "Logger.info")),
    ("metrics", ("metrics/instruments.py", "prometheus_client", "MetricsMiddleware", "_Finishing.close")),
    ("request parse + translate_request", ("translate_request (", "read_request (", "_chat (loadtest/floor.py")),
    ("store lookup (stand)", ("stand (", "Standing.")),
    ("exchange + translator setup", ("Runtime.exchange", "Exchange.__init__", "StreamTranslator.__init__")),
    ("start/terminal events",
     ("StreamTranslator.start", "Exchange.start", "StreamTranslator.finish", "_finish (proxy")),
    ("upstream open (httpx/aiohttp)", ("Exchange.open", "AsyncClient.send", "build_request")),
    ("upstream close", ("Exchange.aclose", "Response.aclose", "BoundAsyncStream.aclose")),
    ("events encoded", ("encode_events", "_event (loadtest/floor.py")),
    ("translator.feed, per chunk", ("StreamTranslator.feed",)),
    ("client writes (uvicorn send)", ("RequestResponseCycle.send",)),
    ("SSE decode + upstream reads",
     ("SSEDecoder", "Body.read", "aiter_bytes", "aiter_raw", "Interrupt.wait", "redact")),
    ("chunk loop (orjson.loads…)", ("_feed_payloads", "relay (proxy/relay.py", "_events (loadtest/floor.py")),
    ("stream plumbing (batches, SSE body)", ("Exchange.batches", "sse_body", "ResponsesResource._stream")),
    ("resource's own", ("on_post (",)),
    ("Falcon, middleware, request scope", ("App.__call__", "create_app.<locals>.asgi", "RequestScope")),
    ("uvicorn protocol", ("httptools_impl.py", "proxy/worker.py", "flow_control")),
    ("aiohttp protocol", ("aiohttp/",)),
    ("event loop, GC, other", ("",)),
]


def split(path: Path) -> tuple[Counter[str], int]:
    """Busy samples of ``path`` by ``SPLIT`` part, and their total."""
    parts: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].startswith(("select (", "poll (", "run_once (")):
            continue
        samples += int(count)
        name = next(name for name, marks in SPLIT if any(m in f for f in frames for m in marks))
        parts[name] += int(count)
    return parts, samples


def split_table(paths: list[Path], us: list[float] | None) -> str:
    """``SPLIT`` side by side: µs per request when ``us`` (each file's CPU per request) is given, else %."""
    done = [split(p) for p in paths]
    scale = us or [100.0] * len(paths)
    out = [f"{'part (' + ('µs per request' if us else '% of busy samples') + ')':40}"
           + "".join(f"{p.stem[:14]:>15}" for p in paths)]
    for name, _ in SPLIT:
        out.append(f"{name:40}" + "".join(f"{c[name] / max(n, 1) * s:15.0f}" for (c, n), s in zip(done, scale)))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--idle", action="store_true", help="keep samples where the loop waits for I/O")
    ap.add_argument("--under", help="also list what the first frame starting with this calls, e.g. 'App.__call__'")
    ap.add_argument("--split", action="store_true", help="the files side by side, by part of a request")
    ap.add_argument("--us", help="with --split: each file's CPU µs per request, comma-separated")
    args = ap.parse_args(argv)
    if args.split:
        print(split_table(args.files, [float(x) for x in args.us.split(",")] if args.us else None))
        return 0
    for f in args.files:
        print(summarize(f, args.top, args.idle, args.under))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
