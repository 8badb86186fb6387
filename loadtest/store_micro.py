"""The stored path alone, in one process: CPU per request of what ``store: true`` adds to a JSON
request (``proxy.state``'s ``stand`` → ``prepare`` → ``remember``, through the instrumented store
a worker uses) against the same steps with ``store: false``, on SQLite and on Redis, under uvloop
as the workers run. Run by ``loadtest/store_overhead.py --micro`` once per checkout (``PYTHONPATH``
names the checkout whose ``proxy`` is measured); prints one JSON line.

Why beside the HTTP table: on a shared 2-core machine the per-request CPU of the whole service
drifts by more than the 0.15 ms being measured; this isolates the difference, and "best of
``--rounds``" (each round alternating the two bodies) discards the rounds another tenant slowed;
``added_median_us``, the median of the rounds' own differences (both bodies back to back), is
printed beside it, as the run-to-run spread of the best is itself tens of µs here.
``--conc 4`` keeps four requests in flight, as a loaded worker does.

``floor_us``: the store's own work for the same put with nothing around it, what no change to the
proxy's Python can remove — on SQLite ``sqlite_responses.put_response`` called directly on a
connection (its statements and WAL writes, no thread, no event loop), on Redis the same
``EVALSHA`` on a bare asyncio protocol with a hiredis reader (one round trip: two system calls
and a wake-up of the event loop; no pool, no deadline).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
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
    added: list[float] = []  # per round, the two bodies measured back to back
    for r in range(rounds):
        costs: dict[bool, float] = {}
        for keep in ((False, True) if r % 2 == 0 else (True, False)):
            costs[keep] = await batch(keep)
            best[keep] = min(best[keep], costs[keep])
        added.append(costs[True] - costs[False])
    await store.aclose()
    floor = await _floor(backend, where, template, rounds, n)
    return {"store_false_us": best[False], "store_true_us": best[True], "added_us": best[True] - best[False],
            "added_median_us": statistics.median(added), "floor_us": floor}


async def _floor(backend: str, where: str, template: dict[str, Any], rounds: int, n: int) -> float:
    """CPU µs of the store's own work for one put of the request above (module doc), best of rounds."""
    from proxy.store import prepare_items
    from proxy.store.base import DEFAULT_MAX_OBJECT_BYTES, DEFAULT_TTL_SECS, owner_of
    from proxy.store.items import encode_items
    from proxy.translate.ids import new_id

    own = prepare_items("Say hello in a few words.")
    output = [{**template["output"][0], "id": new_id("msg")}]
    blob, body = encode_items(own + output), orjson.dumps({**template, "output": output})
    owner, ttl_ms = owner_of("sk-bench-0123456789abcdef"), DEFAULT_TTL_SECS * 1000
    if backend == "sqlite":
        from proxy.store import sqlite_responses
        from proxy.store.sqlite_schema import connect

        conn = connect(where + ".floor", 3.0)

        async def put() -> None:
            sqlite_responses.put_response(conn, owner, new_id("resp"), body, blob, 1, [new_id("msg"), new_id("msg")],
                                          None, None, [], ttl_ms, DEFAULT_MAX_OBJECT_BYTES)
    else:
        put, conn = await _raw_redis_put(where, owner, body, blob, ttl_ms)
    try:
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(n):
                await put()
            best = min(best, (time.process_time() - start) / n * 1e6)
        return best
    finally:
        conn.close()


async def _raw_redis_put(url: str, owner: str, body: bytes, blob: bytes, ttl_ms: int) -> tuple[Any, Any]:
    import hiredis

    from proxy.store import redis_scripts as lua
    from proxy.store.redis_store import DEFAULT_PREFIX
    from proxy.translate.ids import new_id

    loop = asyncio.get_running_loop()
    host_port, _, db = url.removeprefix("redis://").partition("/")
    host, _, port = host_port.partition(":")

    class Raw(asyncio.Protocol):
        def __init__(self) -> None:
            self.reader = hiredis.Reader()
            self.reply: asyncio.Future[Any] | None = None

        def data_received(self, data: bytes) -> None:
            self.reader.feed(data)
            reply = self.reader.gets()
            if reply is not False and self.reply is not None:
                self.reply.set_result(reply)

    transport, raw = await loop.create_connection(Raw, host, int(port))

    async def call(*args: Any) -> Any:
        raw.reply = loop.create_future()
        transport.write(hiredis.pack_command(args))
        return await raw.reply

    await call("SELECT", db or "0")
    await call("SCRIPT", "LOAD", lua.PUT_RESPONSE.source)

    async def put() -> None:
        ids = orjson.dumps([new_id("msg"), new_id("msg")])
        await call("EVALSHA", lua.PUT_RESPONSE.sha, 0, DEFAULT_PREFIX, owner, new_id("resp"), body, blob, 1, ids,
                   ttl_ms, "", "", 0, b"")

    return put, transport


def prefill(path: str, count: int) -> None:
    """Store ``count`` responses in the SQLite file at ``path`` first, ids minted by the checkout
    measured: a store in use for a while (30 days' TTL) holds many, and what a put costs depends
    on how its rows and index entries land among them, which an empty file does not show."""
    from proxy.store import prepare_items, sqlite_responses
    from proxy.store.base import DEFAULT_MAX_OBJECT_BYTES, DEFAULT_TTL_SECS, owner_of
    from proxy.store.items import encode_items
    from proxy.store.sqlite_schema import connect
    from proxy.translate.ids import new_id

    template = _response_template()
    own = prepare_items("Say hello in a few words.")
    owners = [owner_of(f"sk-prefill-{i:04d}-0123456789abcdef") for i in range(15)]
    owners.append(owner_of("sk-bench-0123456789abcdef"))  # the measured key's own, among others
    conn = connect(path, 3.0)
    try:
        for start in range(0, count, 500):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(start, min(start + 500, count)):
                output = [{**template["output"][0], "id": new_id("msg")}]
                ids = [new_id("msg"), output[0]["id"]]
                sqlite_responses.put_response(
                    conn, owners[i % len(owners)], new_id("resp"), orjson.dumps({**template, "output": output}),
                    encode_items(own + output), 1, ids, None, None, [], DEFAULT_TTL_SECS * 1000,
                    DEFAULT_MAX_OBJECT_BYTES)
            conn.execute("COMMIT")
    finally:
        conn.close()  # (the last connection: its WAL is checkpointed into the file)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="loadtest/store_micro.py")
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--conc", type=int, default=1)
    ap.add_argument("--prefill", type=int, default=0, help="responses stored in the SQLite file first (default 0)")
    ap.add_argument("--prefill-only", metavar="PATH", help="only prefill the SQLite file at PATH, then exit")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="store-micro-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tmp)  # counted as in a worker
    if args.prefill_only:
        prefill(args.prefill_only, args.prefill)
        return 0
    out: dict[str, Any] = {"conc": args.conc, "prefill": args.prefill}
    try:
        for backend, where in (("sqlite", os.path.join(tmp, "micro.sqlite3")), ("redis", args.redis_url)):
            if backend == "sqlite" and args.prefill:
                prefill(where, args.prefill)
                shutil.copyfile(where, where + ".floor")  # the floor's put lands among as many
            out[backend] = uvloop.run(_measure(backend, where, args.rounds, args.n, args.conc))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # its SQLite files (tens of MB a run)
    print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
