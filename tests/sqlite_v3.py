"""Schema 3 of the SQLite store, frozen: the tables a file written before schema 4 holds, and the
statements that version's code runs that schema 4 changed — how it opens a file, indexes a
conversation's items, and looks items up. For the upgrade tests: a file of schema 3 is opened by
the new code, and during a gunicorn reload the old code keeps running beside it on the same file.

(Its puts, deletes and sweeps run the same SQL as schema 4's, ``proxy.store.sqlite_responses``:
the tests call those on a connection opened here. Its conversation appends are
``sqlite_conversations``' with ``INDEX_ITEM`` below.)
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any
from unittest import mock

import orjson

from proxy.store import NewResponse, sqlite_conversations, sqlite_responses
from proxy.store.base import DEFAULT_MAX_OBJECT_BYTES, DEFAULT_TTL_SECS
from proxy.store.items import encoded_items, response_parts
from proxy.translate.ids import new_id

VERSION = 3
TTL_MS = DEFAULT_TTL_SECS * 1000

DDL = """
CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, parent TEXT, kids INTEGER NOT NULL,
    live INTEGER NOT NULL, expires_at INTEGER NOT NULL, chain TEXT NOT NULL, ids TEXT NOT NULL, base_conv TEXT,
    base_seq INTEGER, base_items BLOB, n_input INTEGER NOT NULL, items BLOB NOT NULL, body BLOB);
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
CREATE TABLE IF NOT EXISTS item_index (owner TEXT NOT NULL, item_id TEXT NOT NULL, loc TEXT NOT NULL,
    pos INTEGER NOT NULL, PRIMARY KEY (owner, item_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL,
    metadata BLOB NOT NULL, expires_at INTEGER NOT NULL, next_seq INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_exp ON conversations (expires_at);
CREATE TABLE IF NOT EXISTS conversation_items (conv TEXT NOT NULL, seq INTEGER NOT NULL, item_id TEXT NOT NULL,
    body BLOB NOT NULL, PRIMARY KEY (conv, seq));
CREATE UNIQUE INDEX IF NOT EXISTS conversation_items_id ON conversation_items (conv, item_id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (response_id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL,
    ended_as TEXT, worker TEXT NOT NULL, lease_until INTEGER NOT NULL, version INTEGER NOT NULL,
    events INTEGER NOT NULL, log_bytes INTEGER NOT NULL, last_seq INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_until) WHERE state != 'ended';
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, lease_until) WHERE state != 'ended';
CREATE INDEX IF NOT EXISTS jobs_exp ON jobs (expires_at);
CREATE TABLE IF NOT EXISTS response_events (response_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (response_id, seq)) WITHOUT ROWID;
"""

_LAST_WRITER_WINS = "ON CONFLICT DO UPDATE SET loc = excluded.loc, pos = excluded.pos"
INDEX_ITEM = f"INSERT INTO item_index VALUES (?, ?, ?, ?) {_LAST_WRITER_WINS}"
TRIGGER = f"""CREATE TRIGGER IF NOT EXISTS responses_index AFTER INSERT ON responses BEGIN
    INSERT INTO item_index SELECT NEW.owner, j.value, 'r:' || NEW.id, j.key FROM json_each(NEW.ids) j WHERE true
    {_LAST_WRITER_WINS};
END"""


def connect(path: str, timeout_secs: float = 10.0, *, version: int = VERSION, trigger: bool = True) -> sqlite3.Connection:
    """Open ``path`` as schema 3's code does: its tables created if missing, then ``user_version``
    set to 3, whatever the file held (``version=2, trigger=False``: a file of schema 2)."""
    conn = sqlite3.connect(path, timeout=timeout_secs, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_secs * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] != version:
        conn.execute("BEGIN IMMEDIATE")
        for statement in DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        if trigger:
            conn.execute(TRIGGER)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    return conn


def get_items(conn: sqlite3.Connection, owner: str, item_ids: Sequence[str]) -> dict[str, Any]:
    """Schema 3's lookup: each index row of the ids, its holder read if live."""
    now = int(time.time() * 1000)
    found: dict[str, Any] = {}
    where = conn.execute(
        "SELECT item_id, loc, pos FROM item_index WHERE owner = ? AND item_id IN (SELECT value FROM json_each(?))",
        (owner, orjson.dumps(list(item_ids)).decode()),
    ).fetchall()
    for item_id, loc, pos in where:
        kind, _, key = loc.partition(":")
        if kind == "r":
            row = conn.execute(
                "SELECT live, expires_at, items FROM responses WHERE id = ? AND owner = ?", (key, owner)
            ).fetchone()
            if row is not None and row[0] == 1 and row[1] > now and pos < len(items := orjson.loads(row[2])):
                found[item_id] = items[pos]
            continue
        row = conn.execute(
            "SELECT ci.body FROM conversation_items ci JOIN conversations c ON c.id = ci.conv "
            "WHERE ci.conv = ? AND ci.item_id = ? AND c.owner = ? AND c.expires_at > ?",
            (key, item_id, owner, now),
        ).fetchone()
        if row is not None:
            found[item_id] = orjson.loads(row[0])
    return found


def put(conn: sqlite3.Connection, owner: str, response: NewResponse) -> None:
    """Schema 3's plain put (one INSERT; the file's trigger indexes its items)."""
    blob, ids, _, _ = response_parts(response)
    sqlite_responses.put_response(conn, owner, response.id, response.body, blob, len(response.input_items), ids,
                                  None, None, [], TTL_MS, DEFAULT_MAX_OBJECT_BYTES)


def create_conversation(conn: sqlite3.Connection, owner: str, items: Sequence[Any]) -> str:
    """Schema 3's conversation create, its items indexed with schema 3's upsert."""
    cid = new_id("conv")
    with mock.patch.object(sqlite_conversations, "INDEX_ITEM", INDEX_ITEM):
        sqlite_conversations.create(conn, owner, cid, int(time.time()), b"{}", encoded_items(items, "items")[1],
                                    TTL_MS, DEFAULT_MAX_OBJECT_BYTES)
    return cid


def append(conn: sqlite3.Connection, owner: str, cid: str, items: Sequence[Any]) -> bool:
    """Schema 3's append, which passed over an id the conversation held (``skip_held`` now)."""
    with mock.patch.object(sqlite_conversations, "INDEX_ITEM", INDEX_ITEM):
        return sqlite_conversations.append(conn, owner, cid, encoded_items(items, "items")[1], TTL_MS,
                                           DEFAULT_MAX_OBJECT_BYTES, True) is not None
