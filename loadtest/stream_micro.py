"""The streaming core per chunk, in one process: SSE decode, ``orjson.loads``, the translator, the events' encoding.

Usage::

    python -m loadtest.stream_micro                      # this checkout against main
    python -m loadtest.stream_micro --base <rev> --rounds 9

The upstream bytes are the mock backend's own (``proxy.mock.scripts.build_plan``) for the
bench's workloads (``stream50``, ``stream500``, ``tool_stream``, ``reason_stream``: the same
request bodies), in one read, as the mock coalesces them. Each stream runs what the relay and
the SSE resource do with them: ``SSEDecoder.feed``, the bench's API key masked as the relay
masks it, the relay's own per-read work on the payloads (``[DONE]``, ``orjson.loads``,
``StreamTranslator.feed``/``finish``), then ``encode_events`` of the batch (the ``start()``
events included). The base revision's ``proxy`` package (relative imports only on this path) is
extracted with ``git archive`` as ``base_proxy`` and run beside this one, alternately, best of
``--rounds``; ``floor`` is ``loadtest/floor.py``'s ``_events`` on the same bytes. Printed: µs per
upstream chunk (the whole stream's time over its chunks) and the ratios.
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
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from loadtest.bench import API_KEY, WORKLOADS
from loadtest.floor import _events as floor_events
from proxy.devtools import ROOT
from proxy.logs import mask_key
from proxy.mock.scripts import build_plan, builtin_script

_WORKLOADS = ("stream50", "stream500", "tool_stream", "reason_stream")


def upstream_bytes(workload: str) -> tuple[bytes, int]:
    """The mock's SSE answer to ``workload``'s request as the proxy sends it, and its chunk count."""
    body = WORKLOADS[workload]
    chat: dict[str, Any] = {"model": body["model"], "messages": [{"role": "user", "content": body["input"]}],
                            "stream": True, "stream_options": {"include_usage": True}}
    if body.get("tools"):
        chat["tools"] = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
                         for t in body["tools"]]
    pieces = build_plan(builtin_script(body["model"], chat), chat, body["model"]).pieces
    return b"".join(pieces), len(pieces) - 1  # [DONE] is no chunk


def load_base(rev: str, into: Path) -> None:
    """``rev``'s ``proxy`` package, importable beside this one as ``base_proxy``."""
    archive = subprocess.run(["git", "archive", rev, "proxy"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "proxy").rename(into / "base_proxy")
    sys.path.insert(0, str(into))


def _per_read(root: str) -> Callable[[Any, bytes, Any], list[Any]]:
    """What ``root``'s relay does with one read: decode it, the bench's key masked (in the
    decoder's lines, or per payload as of 9c28266), and feed the payloads to the translator."""
    relay = importlib.import_module(root + ".relay")
    decoder_cls = importlib.import_module(root + ".translate.sse").SSEDecoder
    redact = relay.redactor(API_KEY, mask_key(API_KEY))
    feed_payloads = getattr(relay, "_feed_payloads", None)
    if feed_payloads is not None:
        return lambda t, data, outcome: feed_payloads(t, decoder_cls(1 << 20, redact).feed(data), outcome)
    feed_payload = relay._feed_payload

    def per_read(t: Any, data: bytes, outcome: Any) -> list[Any]:
        events: list[Any] = []
        for payload in decoder_cls(1 << 20).feed(data):
            events += feed_payload(t, redact(payload), outcome)
            if t.done:
                break
        return events

    return per_read


def proxy_stream(root: str, workload: str) -> Callable[[bytes], int]:
    """One stream through ``root``'s (``proxy`` or the base's) relay and translator: events built and encoded."""
    request = importlib.import_module(root + ".translate.request")
    encode_events = importlib.import_module(root + ".translate.sse").encode_events
    translator_cls = importlib.import_module(root + ".translate.stream").StreamTranslator
    per_read, outcome_cls = _per_read(root), importlib.import_module(root + ".relay").Outcome
    _, ctx = request.translate_request(dict(WORKLOADS[workload]), request.TranslationPolicy())

    def run(data: bytes) -> int:
        t = translator_cls(ctx, new_id=lambda prefix: prefix + "_0123456789abcdef")
        head = t.start()
        batch = per_read(t, data, outcome_cls())
        assert t.done
        return len(encode_events(head + batch))

    return run


class _OneRead:
    """An upstream response of one read, for ``loadtest/floor.py``'s ``_events``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        yield self._data

    async def aclose(self) -> None:
        pass


def floor_stream(data: bytes) -> int:
    """``loadtest/floor.py``'s own ``_events`` on one read (it never waits: driven by hand, no loop)."""
    events = floor_events(_OneRead(data), "m")  # type: ignore[arg-type]  # duck-typed httpx.Response
    size = 0
    while True:
        try:
            events.__anext__().send(None)
        except StopIteration as step:
            size += len(step.value)
        except StopAsyncIteration:
            return size


def _us_per_chunk(run: Callable[[bytes], int], data: bytes, chunks: int, streams: int) -> float:
    start = time.perf_counter()
    for _ in range(streams):
        run(data)
    return (time.perf_counter() - start) / streams / chunks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.stream_micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the revision to compare with (default: main)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunks", type=int, default=20_000, help="upstream chunks per round and variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        load_base(args.base, Path(tmp))
        print(f"µs per upstream chunk, best of {args.rounds} rounds; base = {args.base}")
        print(f"{'workload':14s} {'chunks':>6s} {'floor':>7s} {'base':>7s} {'new':>7s} {'new/base':>8s} "
              f"{'base/fl':>7s} {'new/fl':>7s}")
        for workload in _WORKLOADS:
            data, chunks = upstream_bytes(workload)
            runs = {"floor": floor_stream, "base": proxy_stream("base_proxy", workload),
                    "new": proxy_stream("proxy", workload)}
            assert runs["base"](data) == runs["new"](data), "the two translators' bytes differ in length"
            streams = max(1, args.chunks // chunks)
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(args.rounds):  # alternate, so drift on a shared machine hits all alike
                for name, run in runs.items():
                    best[name] = min(best[name], _us_per_chunk(run, data, chunks, streams))
            f, b, n = best["floor"], best["base"], best["new"]
            print(f"{workload:14s} {chunks:6d} {f:7.3f} {b:7.3f} {n:7.3f} {n / b:8.2f} {b / f:7.2f} {n / f:7.2f}")


if __name__ == "__main__":
    main()
