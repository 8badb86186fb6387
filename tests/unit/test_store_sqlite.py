"""The SQLite store as a host's workers share it: several processes on one file see each other's
writes at once, the file survives a reopen, and the sweep deletes what expired in bounded steps."""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import stat
import time

import orjson

from proxy.store import History, NewResponse, prepare_items
from proxy.store.sqlite_store import SQLiteStore
from proxy.translate.ids import new_id
from tests.store_kit import run, stored_rows
from tests.unit.test_store_responses import turn


def _writer(path: str, cid: str, count: int, conn) -> None:
    """Another process: store responses and conversation items, announcing each after it returned."""

    async def work(store):
        owner = store.owner_of("sk-alice")
        for n in range(count):
            r = turn(n)
            await store.put_response(owner, r)
            await store.append_conversation_items(owner, cid, [{"id": f"msg_{n}", "role": "user", "content": str(n)}])
            conn.send(r.id)
            conn.recv()  # the reader has looked
        conn.send(None)

    run(SQLiteStore(path), work)


def test_a_write_is_visible_to_another_process_the_moment_it_returns(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    reader = SQLiteStore(path)
    owner = reader.owner_of("sk-alice")
    cid = run(reader, lambda s: s.create_conversation(owner))["id"]
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    writer = ctx.Process(target=_writer, args=(path, cid, 25, theirs))
    writer.start()

    async def read_along(store):
        seen = 0
        while (rid := await asyncio.to_thread(ours.recv)) is not None:
            assert await store.get_response(owner, rid) is not None, f"{rid} not visible after its write returned"
            assert await store.get_history(owner, rid) is not None
            seen += 1
            assert len((await store.conversation_context(owner, cid)).items) == seen
            ours.send("next")
        return seen

    try:
        assert run(SQLiteStore(path), read_along) == 25
        writer.join(60)
        assert writer.exitcode == 0
    finally:
        if writer.is_alive():
            writer.kill()


def test_the_file_survives_a_reopen_and_is_private(tmp_path):
    path = str(tmp_path / "store.sqlite3")
    store = SQLiteStore(path)
    owner = store.owner_of("sk-alice")
    first = turn(0)

    async def write(store):
        await store.put_response(owner, first)
        second = turn(1, await store.get_history(owner, first.id))
        await store.put_response(owner, second)
        conv = await store.create_conversation(owner, metadata={"a": "b"}, items=[{"role": "user", "content": "x"}])
        return second, conv

    second, conv = run(store, write)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # conversations are private data
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    async def read(store):
        assert await store.get_response(owner, first.id) == first.body
        assert (await store.get_history(owner, second.id)).items == (
            first.input_items + first.output_items + second.input_items + second.output_items
        )
        assert await store.get_conversation(owner, conv["id"]) == conv

    run(SQLiteStore(path), read)


def _open_at_once(path: str, go, results) -> None:
    from proxy.store.sqlite_schema import connect

    go.wait(30)
    try:
        connect(path, 3.0).close()
        results.put("ok")
    except Exception as e:  # reported, not left to hang the parent's get()
        results.put(repr(e))


def test_every_worker_opening_a_new_file_at_once_gets_in(tmp_path):
    """A deploy's workers all open the new file with their first requests. Switching it to WAL
    takes the exclusive lock, and SQLite refuses a contender at once ("database is locked", no
    busy wait): every opener must still get in, none answer its first request with a 503. (Before
    the retry, about one round in two here had a worker refused.)"""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(12):
        path = str(tmp_path / f"new-{round_}.sqlite3")
        go, results = ctx.Event(), ctx.Queue()
        openers = [ctx.Process(target=_open_at_once, args=(path, go, results)) for _ in range(4)]
        for p in openers:
            p.start()
        time.sleep(0.05)
        go.set()
        try:
            outcomes = [results.get(timeout=30) for _ in openers]
        finally:
            for p in openers:
                p.join(10)
                if p.is_alive():
                    p.kill()
        assert outcomes == ["ok"] * 4, (round_, outcomes)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_sweep_deletes_expired_rows_in_bounded_batches_one_worker_at_a_time(tmp_path):
    path = str(tmp_path / "store.sqlite3")
    store = SQLiteStore(path, ttl_secs=1)
    other_worker = SQLiteStore(path, ttl_secs=1)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        history = None
        for n in range(30):
            r = turn(n, history if n % 2 else None)
            await store.put_response(owner, r)
            history = await store.get_history(owner, r.id)
        for _ in range(5):
            await store.create_conversation(owner, items=[{"role": "user", "content": "x"}])
        await asyncio.sleep(1.3)
        assert await store.sweep(force=True, batch=10) == 10 + 2
        assert await other_worker.sweep() == 0  # swept within the interval already: it leaves it
        total = 12
        while swept := await store.sweep(force=True, batch=10):
            total += swept
        await other_worker.aclose()
        return total

    assert run(store, scenario) == 30 + 5
    assert not any(stored_rows(SQLiteStore(path)).values())


def test_writes_trigger_a_background_sweep_when_the_interval_has_passed(tmp_path):
    store = SQLiteStore(str(tmp_path / "store.sqlite3"), ttl_secs=1)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        for n in range(5):
            await store.put_response(owner, turn(n))
        await asyncio.sleep(1.3)
        store._next_sweep = 0.0  # as if a minute had passed
        fresh = NewResponse(new_id("resp"), b"{}", prepare_items("hi"), [])
        await store.put_response(owner, fresh)  # returns at once; the sweep follows on the writer thread
        deadline = time.monotonic() + 10
        while stored_rows(store)["responses"] > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert stored_rows(store)["responses"] == 1
        assert await store.get_response(owner, fresh.id) == b"{}"

    run(store, scenario)


def test_writes_queued_together_commit_once_each_on_its_own_terms(tmp_path):
    """Writes that queue up while the writer is busy run as one transaction (one BEGIN, one COMMIT,
    each job's own transaction a savepoint of it). A job that fails — its own error (a conversation
    over the bound) or SQLite's — makes the batch run again job by job, so it costs the others
    nothing, and every result reaches its caller."""
    import threading

    from proxy.store import ObjectTooLarge, StoreError
    from proxy.store.sqlite_schema import connect

    path = str(tmp_path / "batched.sqlite3")
    store = SQLiteStore(path, max_object_bytes=64 * 1024)
    statements: list[str] = []

    def traced() -> sqlite3.Connection:
        conn = connect(path, 3.0)
        conn.set_trace_callback(statements.append)
        return conn

    store._db._connect = traced  # both threads' connections, traced
    owner = store.owner_of("sk-alice")

    async def batch_of(jobs: list) -> tuple[list, list[str]]:
        gate = threading.Event()
        held = asyncio.ensure_future(store._db.run("write", lambda conn: gate.wait(10)))
        await asyncio.sleep(0.05)  # the writer is busy: what follows queues up behind it
        statements.clear()
        pending = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0.05)
        gate.set()
        await held
        results = await asyncio.gather(*pending, return_exceptions=True)
        return results, list(statements)

    async def scenario(store):
        cid = (await store.create_conversation(owner))["id"]
        full = [(await store.create_conversation(owner))["id"] for _ in range(2)]
        await store.put_response(owner, turn(0))
        big = [{"role": "user", "content": "b" * 40_000}]  # two of them exceed the bound together
        for case in ("clean", "job error", "sqlite error"):
            good = [turn(n) for n in range(1, 6)]
            too_large = turn(9)
            too_large.body = b"x" * 70_000
            jobs = [store.put_response(owner, r) for r in good[:3]]
            jobs.append(store.put_response(owner, too_large))  # refused before it is queued
            jobs.append(store.append_conversation_items(owner, cid, [{"role": "user", "content": "a"}]))
            if case == "job error":
                jobs += [store.append_conversation_items(owner, full[0], big) for _ in range(2)]
            if case == "sqlite error":
                jobs.append(store._db.run("write", lambda conn: conn.execute("SELECT * FROM no_such_table")))
            jobs += [store.put_response(owner, r) for r in good[3:]]
            results, batch = await batch_of(jobs)
            assert results[:3] == [None] * 3 and results[-2:] == [None] * 2
            assert isinstance(results[3], ObjectTooLarge)
            assert isinstance(results[4], list) and len(results[4]) == 1
            queued = len(jobs) - 1
            # A plain put is one INSERT (its items indexed by trigger), no transaction of its own;
            # the conversation appends open one each (a savepoint inside the batch).
            own_tx = queued - len(good)
            inserts = [st for st in batch if st.startswith("INSERT INTO responses")]
            assert all(any(r.id in st for st in inserts) for r in good), batch
            if case == "clean":
                assert (batch.count("BEGIN IMMEDIATE"), batch.count("SAVEPOINT tx"), batch.count("COMMIT")) == (
                    1, own_tx, 1), batch
            elif case == "job error":
                assert isinstance(results[5], list) and isinstance(results[6], ObjectTooLarge)
                assert batch.count("BEGIN IMMEDIATE") == 1 + own_tx  # the batch, then each job alone
            else:
                assert isinstance(results[5], StoreError) and "no_such_table" in str(results[5])
                assert batch.count("BEGIN IMMEDIATE") == 1 + own_tx - 1  # (that job opens no transaction)
            for r in good:
                assert await store.get_response(owner, r.id) == r.body
            assert await store.get_response(owner, too_large.id) is None
        assert len((await store.conversation_context(owner, full[0])).items) == 1
        ctx = await store.conversation_context(owner, cid)
        assert [i["content"][0]["text"] for i in ctx.items] == ["a", "a", "a"]
        return True

    assert run(store, scenario)
    assert stored_rows(store)["responses"] == 1 + 3 * 5



def test_a_plain_and_a_chained_put_write_the_row_the_general_one_would(tmp_path):
    """The two common puts write their absent columns as SQL literals (``sqlite_responses._PLAIN``,
    ``_CHAINED``: cheaper to bind); their rows must be exactly the general ``row()``'s — NULLs
    where it binds None, the JSON as BLOBs, the chain as TEXT."""
    path = str(tmp_path / "rows.sqlite3")
    store = SQLiteStore(path)
    owner = store.owner_of("sk-alice")
    first = turn(1)
    second = turn(2, previous=History(first.id, first.input_items + first.output_items))
    run(store, lambda s: _put_both(s, owner, first, second))
    cols = ("parent", "kids", "live", "chain", "ids", "base_conv", "base_seq", "base_items", "n_input", "items", "body")
    select = ", ".join(f"{c}, typeof({c})" for c in cols)
    with sqlite3.connect(path) as conn:
        rows = {rid: conn.execute(f"SELECT {select} FROM responses WHERE id = ?", (rid,)).fetchone()
                for rid in (first.id, second.id)}
    for r, parent, kids, chain in ((first, None, 1, "[]"), (second, first.id, 0, f'["{first.id}"]')):
        got = dict(zip(cols, zip(rows[r.id][::2], rows[r.id][1::2])))
        ids = [item["id"] for item in r.input_items + r.output_items]
        assert got == {
            "parent": (parent, "null" if parent is None else "text"), "kids": (kids, "integer"),
            "live": (1, "integer"), "chain": (chain, "text"), "ids": (orjson.dumps(ids).decode(), "text"),
            "base_conv": (None, "null"), "base_seq": (None, "null"), "base_items": (None, "null"),
            "n_input": (1, "integer"), "items": (orjson.dumps(r.input_items + r.output_items), "blob"),
            "body": (r.body, "blob"),
        }


async def _put_both(store, owner, first, second):
    await store.put_response(owner, first)
    await store.put_response(owner, second)
