"""Read py-spy's collapsed stacks (``--format raw``) as text: the top frames by own and by total time.

Usage::

    python -m loadtest.profile /tmp/prof/proxy-json-c16.txt [--top 30] [--under 'App.__call__']

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--idle", action="store_true", help="keep samples where the loop waits for I/O")
    ap.add_argument("--under", help="also list what the first frame starting with this calls, e.g. 'App.__call__'")
    args = ap.parse_args(argv)
    for f in args.files:
        print(summarize(f, args.top, args.idle, args.under))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
