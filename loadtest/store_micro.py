"""The stored path alone, in one process: CPU per request of what ``store: true`` adds to a JSON
request (``proxy.state``'s ``stand`` → ``prepare`` → ``remember``, through the instrumented store
a worker uses) against the same steps with ``store: false``, on SQLite and on Redis, under uvloop
as the workers run. Run by ``loadtest/store_overhead.py --micro`` once per checkout (``PYTHONPATH``
names the checkout whose ``proxy`` is measured); prints one JSON line.

Why beside the HTTP table: on a shared 2-core machine the per-request CPU of the whole service
drifts by more than the 0.15 ms being measured; this isolates the difference, and "best of
``--rounds``" (each round alternating the two bodies) discards the rounds another tenant slowed.
``--conc 4`` keeps four requests in flight, as a loaded worker does.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from typing import Any

import orjson
import uvloop


def _response_template() -> dict[str, Any]:
    from proxy.translate.completion import completion_to_chunks
    from proxy.translate.request import TranslationPolicy, translate_request
    from proxy.translate.stream import StreamTranslator

    body = {"model": "mock-echo", "input": "Say hello in a few words."}
    _, ctx = translate_request(body, TranslationPolicy())
    translator = StreamTranslator(ctx, emit_events=False)
    translator.start()
    completion = {"id": "c", "object": "chat.completion", "created": 1, "model": "mock-echo",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "You said: hello"},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}
    for chunk in completion_to_chunks(completion):
        translator.feed(chunk)
    if not translator.done:
        translator.finish()
    return dict(translator.response)


async def _measure(backend: str, where: str, rounds: int, n: int, conc: int) -> dict[str, float]:
    from proxy.metrics import Metrics
    from proxy.state import stand
    from proxy.store.instrumented import instrumented
    from proxy.translate.ids import new_id

    if backend == "sqlite":
        from proxy.store.sqlite_store import SQLiteStore

        inner: Any = SQLiteStore(where)
    else:
        from proxy.store.redis_store import RedisStore

        inner = RedisStore(where)
    store = instrumented(inner, Metrics(model_labels=8))
    template = _response_template()

    async def request(keep: bool) -> bytes:
        body = {"model": "mock-echo", "input": "Say hello in a few words.", "store": keep}
        standing = await stand(store, "sk-bench-0123456789abcdef", body)
        standing.prepare()
        response = dict(template)
        response["id"] = new_id("resp")
        response["output"] = [{**template["output"][0], "id": new_id("msg")}]
        if standing.keeps:
            await standing.remember(response)  # type: ignore[arg-type]  # a Response-shaped dict
        return standing.stored_body or orjson.dumps(response)

    async def batch(keep: bool) -> float:
        start = time.process_time()
        for _ in range(n // conc):
            await asyncio.gather(*(request(keep) for _ in range(conc)))
        return (time.process_time() - start) / (n // conc * conc) * 1e6

    await request(True)  # connect, create the file
    best: dict[bool, float] = {True: float("inf"), False: float("inf")}
    for r in range(rounds):
        for keep in ((False, True) if r % 2 == 0 else (True, False)):
            best[keep] = min(best[keep], await batch(keep))
    await store.aclose()
    return {"store_false_us": best[False], "store_true_us": best[True], "added_us": best[True] - best[False]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="loadtest/store_micro.py")
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--conc", type=int, default=1)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="store-micro-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tmp)  # counted as in a worker
    out: dict[str, Any] = {"conc": args.conc}
    for backend, where in (("sqlite", os.path.join(tmp, "micro.sqlite3")), ("redis", args.redis_url)):
        out[backend] = uvloop.run(_measure(backend, where, args.rounds, args.n, args.conc))
    print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
