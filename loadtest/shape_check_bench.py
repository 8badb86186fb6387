"""What the chunk shape check costs: the stream translator of another revision and this one, side by side.

Usage::

    python -m loadtest.shape_check_bench                 # against main
    python -m loadtest.shape_check_bench --base <rev> --chunks 2000 --rounds 7

The base revision's ``proxy/translate`` (pure, relative imports only) is extracted with
``git archive`` into a temporary package, so both translators run in one process on the same
chunk lists, alternately, best of ``--rounds``. Streams: ``text`` (one ``{"content": token}``
delta per chunk, with the id/object/created/model keys real servers send), ``tool`` (one
argument fragment per chunk), and ``text-wide`` (Snowflake-style deltas that also carry
``role``, ``refusal: ""`` and ``tool_calls: null``, so nothing takes the one-field fast path);
each in events mode (SSE clients) and JSON mode. Printed: µs per chunk for ``feed`` in each
and the difference: the shape check, the unmapped-key tests and the rest of what ``feed``
now reads, together (the check is inline in ``feed`` for the common chunk, so it has no
separate cost to time).
"""
from __future__ import annotations

import argparse
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from proxy.devtools import ROOT
from proxy.translate.context import ResponseContext
from tests.conformance import default_echo

_CHUNK_HEAD = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1_800_000_000, "model": "m"}


def streams(n: int) -> dict[str, list[dict[str, Any]]]:
    def chunk(delta: dict[str, Any]) -> dict[str, Any]:
        return {**_CHUNK_HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    text = [chunk({"content": f"tok{i} "}) for i in range(n)]
    tool = [chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "f", "arguments": ""}}]})]
    tool += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f'"k{i}": {i}, '}}]}) for i in range(n - 1)]
    wide = [chunk({"content": f"tok{i} ", "refusal": "", "role": "assistant", "tool_calls": None}) for i in range(n)]
    return {"text": text, "tool": tool, "text-wide": wide}


def load_base(rev: str, into: Path) -> Any:
    """The StreamTranslator class of ``rev``'s proxy/translate, importable beside this one."""
    archive = subprocess.run(["git", "archive", rev, "proxy/translate"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "proxy").rename(into / "base_proxy")
    (into / "base_proxy" / "__init__.py").write_text("")
    sys.path.insert(0, str(into))
    return importlib.import_module("base_proxy.translate.stream").StreamTranslator


def _ctx(module_root: str) -> Any:
    context = importlib.import_module(module_root + ".translate.context")
    return context.ResponseContext(response_id="resp_b", created_at=1, model="m", echo=default_echo())


def feed_us(cls: Any, ctx: Any, chunks: list[dict[str, Any]], emit: bool) -> float:
    t = cls(ctx, emit_events=emit, new_id=lambda prefix: prefix + "_1")
    t.start()
    feed = t.feed
    start = time.perf_counter()
    for c in chunks:
        feed(c)
    elapsed = time.perf_counter() - start
    assert not t.done
    return elapsed / len(chunks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the revision to compare with (default: main)")
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    from proxy.translate.stream import StreamTranslator

    with tempfile.TemporaryDirectory() as tmp:
        base_cls = load_base(args.base, Path(tmp))
        base_ctx = _ctx("base_proxy")
        new_ctx = ResponseContext(response_id="resp_b", created_at=1, model="m", echo=default_echo())
        print(f"µs per chunk, best of {args.rounds} rounds of {args.chunks} chunks; base = {args.base}")
        print(f"{'stream':10s} {'mode':6s} {'base':>7s} {'new':>7s} {'diff':>7s} {'ratio':>6s}")
        for name, chunks in streams(args.chunks).items():
            for emit in (True, False):
                base, new = [], []
                for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both
                    base.append(feed_us(base_cls, base_ctx, chunks, emit))
                    new.append(feed_us(StreamTranslator, new_ctx, chunks, emit))
                b, n = min(base), min(new)
                print(f"{name:10s} {'events' if emit else 'json':6s} {b:7.3f} {n:7.3f} {n - b:+7.3f} {n / b:6.2f}")


if __name__ == "__main__":
    main()
