"""A SQLite file of an older schema opened by this code, and the older code still writing a file
this code upgraded (a gunicorn reload runs both on one file): real files, real processes.

Schema 4 keeps every holder of an item in ``item_index`` (schema 3 kept the last one); a file of
schema 3 (or 2) is rebuilt on first open, by whichever worker takes the write lock first."""
from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3

import orjson
import pytest

from proxy.store import NewResponse, owner_of, prepare_items, sqlite_responses
from proxy.store.sqlite_schema import SCHEMA_VERSION
from proxy.store.sqlite_store import SQLiteStore
from tests import sqlite_v3
from tests.store_kit import run
from tests.unit.test_store_item_holders import response

OWNER = owner_of("sk-alice")


def items_of(r: NewResponse) -> list[dict]:
    return r.input_items + r.output_items


def changed(item: dict, text: str) -> dict:
    return {**item, "content": [{"type": "output_text", "text": text, "annotations": []}]}


def shape(path: str) -> tuple[int, list[tuple[str, int]], int, int]:
    """user_version, item_index's (column, pk) and its rows, the triggers: what a file holds."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return (
            conn.execute("PRAGMA user_version").fetchone()[0],
            [(name, pk) for _, name, _, _, _, pk in conn.execute("PRAGMA table_info(item_index)")],
            conn.execute("SELECT count(*) FROM item_index").fetchone()[0],
            conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'").fetchone()[0],
        )


def index_rows(path: str) -> list[tuple[str, str, int]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT item_id, loc, pos FROM item_index ORDER BY item_id, loc").fetchall()


V4_COLUMNS = [("owner", 1), ("item_id", 2), ("loc", 3), ("pos", 0)]


def test_a_schema_3_file_is_upgraded_on_open_and_every_live_holder_is_found(tmp_path):
    """Schema 3 kept one index row per item, its last holder: an item stored again lost its older
    holder's row, and once the newer holder was deleted it could not be referenced at all. The
    upgrade keeps what resolved (schema 3's row is still the newest holder) and finds the rest."""
    path = str(tmp_path / "v3.sqlite3")
    old = sqlite_v3.connect(path)
    a = response(prepare_items("question A"))
    x, a_out = a.input_items[0], a.output_items[0]
    sqlite_v3.put(old, OWNER, a)
    b = response([x])  # x stored again (a resolved reference), then B deleted: x lost its only row
    sqlite_v3.put(old, OWNER, b)
    assert sqlite_responses.delete_response(old, OWNER, b.id)
    cid = sqlite_v3.create_conversation(old, OWNER, [changed(a_out, "resent, changed")])  # a_out → the conversation
    plain = response(prepare_items("untouched"))
    sqlite_v3.put(old, OWNER, plain)
    wanted = [i["id"] for i in items_of(a) + items_of(plain)]
    before = sqlite_v3.get_items(old, OWNER, wanted)
    assert x["id"] not in before and before[a_out["id"]] == changed(a_out, "resent, changed")  # (the defect)
    old.close()
    assert shape(path)[:3] == (3, [("owner", 1), ("item_id", 2), ("loc", 0), ("pos", 0)], 3)

    async def scenario(store):
        found = await store.get_items(OWNER, wanted)
        assert found == {**{i["id"]: i for i in items_of(a) + items_of(plain)}, a_out["id"]: before[a_out["id"]]}
        assert await store.delete_conversation(OWNER, cid)
        assert (await store.get_items(OWNER, [a_out["id"]]))[a_out["id"]] == a_out  # A's copy, found too
        return True

    assert run(SQLiteStore(path), scenario)
    version, columns, rows, triggers = shape(path)
    assert (version, columns, triggers) == (SCHEMA_VERSION, V4_COLUMNS, 1) and SCHEMA_VERSION == 4
    assert rows == len(items_of(a)) + len(items_of(plain))  # (the conversation's row went with it)


def test_a_schema_2_file_gets_the_trigger_and_the_new_index_and_its_old_rows_stay_found(tmp_path):
    """Schema 2 had no trigger (its puts indexed their items themselves) and schema 3's index."""
    path = str(tmp_path / "v2.sqlite3")
    old = sqlite_v3.connect(path, version=2, trigger=False)
    before = response(prepare_items("stored by schema 2"))
    sqlite_v3.put(old, OWNER, before)  # (no trigger: index it as schema 2 did)
    old.executemany(sqlite_v3.INDEX_ITEM, [(OWNER, i["id"], "r:" + before.id, n) for n, i in enumerate(items_of(before))])
    old.close()

    async def scenario(store):
        after = response(prepare_items("stored now"))
        await store.put_response(OWNER, after)
        wanted = items_of(before) + items_of(after)
        assert await store.get_items(OWNER, [i["id"] for i in wanted]) == {i["id"]: i for i in wanted}
        return True

    assert run(SQLiteStore(path), scenario)
    assert shape(path) == (SCHEMA_VERSION, V4_COLUMNS, 4, 1)


def test_schema_3_code_writing_an_upgraded_file_leaves_it_working(tmp_path):
    """During a reload the old workers keep running: they open the file (setting user_version back
    to 3), store, index with their upsert, delete and look up on the new table. The new code then
    finds the file as it is (no second rebuild) and every holder they wrote."""
    path = str(tmp_path / "v4.sqlite3")
    a = response(prepare_items("stored by the new code"))
    x = a.input_items[0]
    run(SQLiteStore(path), lambda store: store.put_response(OWNER, a))
    old = sqlite_v3.connect(path)
    assert shape(path)[:2] == (3, V4_COLUMNS)  # it left the new table as it is
    b = response([x], "stored by the old code")
    sqlite_v3.put(old, OWNER, b)
    cid = sqlite_v3.create_conversation(old, OWNER, [b.output_items[0]])
    assert sqlite_v3.append(old, OWNER, cid, [x, b.output_items[0]])  # (b's output: there already, ignored)
    old.execute(sqlite_v3.INDEX_ITEM, (OWNER, x["id"], "c:" + cid, 2))  # its upsert on a holder's own row
    assert sqlite_v3.get_items(old, OWNER, [x["id"], b.output_items[0]["id"]]) == {
        x["id"]: x, b.output_items[0]["id"]: b.output_items[0]}
    assert sqlite_responses.delete_response(old, OWNER, b.id)
    holders = index_rows(path)
    old.close()
    assert [(loc, pos) for item, loc, pos in holders if item == x["id"]] == [("c:" + cid, 2), ("r:" + a.id, 0)]

    async def scenario(store):
        assert await store.get_items(OWNER, [x["id"], b.output_items[0]["id"]]) == {
            x["id"]: x, b.output_items[0]["id"]: b.output_items[0]}
        assert await store.delete_conversation_item(OWNER, cid, x["id"]) is not None
        assert await store.get_items(OWNER, [x["id"]]) == {x["id"]: x}  # A's, the older holder
        return True

    assert run(SQLiteStore(path), scenario)
    assert index_rows(path) == [h for h in holders if h[:2] != (x["id"], "c:" + cid)]  # the same rows: no rebuild
    assert shape(path)[0] == SCHEMA_VERSION


def _open_and_write(path: str, old_code: bool, start, rounds: int, conn) -> None:
    """A worker of either version on the shared file: open it when told, then store responses
    (each storing the first one's item again) and look them up."""
    start.wait(60)
    first = orjson.loads(conn.recv())
    mine = []
    if old_code:
        db = sqlite_v3.connect(path)
        for _ in range(rounds):
            r = response([first])
            sqlite_v3.put(db, OWNER, r)
            mine += [i["id"] for i in items_of(r)]
        db.close()
    else:
        async def work(store):
            for _ in range(rounds):
                r = response([first])
                await store.put_response(OWNER, r)
                mine.extend(i["id"] for i in items_of(r))
                assert first["id"] in await store.get_items(OWNER, [first["id"]])

        run(SQLiteStore(path), work)
    conn.send(mine)


@pytest.mark.slow
def test_workers_of_both_versions_opening_a_schema_3_file_at_once_upgrade_it_once_losing_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    old = sqlite_v3.connect(path)
    seed = response(prepare_items("the first"))
    sqlite_v3.put(old, OWNER, seed)
    for _ in range(300):  # a file with some rows to copy while the others wait
        sqlite_v3.put(old, OWNER, response(prepare_items("filler")))
    old.close()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = []
    for n in range(4):
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_open_and_write, args=(path, n == 0, start, 20, theirs))
        proc.start()
        ours.send(orjson.dumps(seed.input_items[0]))
        workers.append((proc, ours))
    try:
        start.set()
        written = []
        for _, pipe in workers:
            assert pipe.poll(120), "a worker did not finish"
            written += pipe.recv()
        for proc, _ in workers:
            proc.join(60)
            assert proc.exitcode == 0
    finally:
        for proc, _ in workers:
            if proc.is_alive():
                proc.kill()

    async def check(store):
        wanted = [i["id"] for i in items_of(seed)] + written
        return wanted, await store.get_items(OWNER, wanted)

    wanted, found = run(SQLiteStore(path), check)
    assert len(written) == 4 * 20 * 2 and set(found) == set(wanted)
    version, columns, rows, triggers = shape(path)
    # every holder once: 301 responses of schema 3 and 80 since, 2 items each, the seed's input held by 81
    assert (version, columns, rows, triggers) == (SCHEMA_VERSION, V4_COLUMNS, (301 + 80) * 2, 1)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        holders = conn.execute("SELECT count(*) FROM item_index WHERE item_id = ?", (seed.input_items[0]["id"],))
        assert holders.fetchone()[0] == 81
        assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'item_index_v3'").fetchone()[0] == 0

