"""The SQLite file: its tables, how a connection to it is opened, and transactions.

Responses are split by how they change: ``responses`` holds the small mutable columns
(liveness, reference count, lifetimes, the chain of ancestor ids), ``response_bodies`` the
Response JSON (dropped on DELETE), ``response_items`` the response's own items (kept while a
descendant needs them). Updating a counter on an ancestor therefore never rewrites its blobs.
``item_index`` maps an owner's item id to where the item is (``r:<response id>`` at a position
in its items, or ``c:<conversation id>``). Times are milliseconds since the epoch; every read
checks ``expires_at``; the sweep deletes what is past ``keep_until`` (``sqlite_ops.sweep``).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    live INTEGER NOT NULL,          -- 0 once deleted (then kept only while descendants need its items)
    refs INTEGER NOT NULL,          -- itself while live + each live descendant
    expires_at INTEGER NOT NULL,    -- its own lifetime: GET, chaining, input_items, item lookups
    keep_until INTEGER NOT NULL,    -- physical lifetime: at least that of its last descendant
    chain TEXT NOT NULL,            -- JSON array of ancestor ids, oldest first
    base_conv TEXT,                 -- the conversation a chain's first response was built on
    base_seq INTEGER                -- … up to this item position
);
CREATE INDEX IF NOT EXISTS responses_keep ON responses (keep_until);
CREATE TABLE IF NOT EXISTS response_bodies (id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS response_items (
    id TEXT PRIMARY KEY,
    n_input INTEGER NOT NULL,       -- the first n_input items are the request's own input
    items BLOB NOT NULL,            -- its input then output items, the inside of a JSON array
    base_items BLOB                 -- a chain's first response: the history it was built on, when
);                                  -- its predecessors vanished while it was generated
CREATE TABLE IF NOT EXISTS item_index (
    owner TEXT NOT NULL, item_id TEXT NOT NULL, loc TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (owner, item_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS item_index_loc ON item_index (loc);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,    -- seconds, as the API shows it
    metadata BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,      -- position of the last item appended
    bytes INTEGER NOT NULL          -- size of its items, bounded by the object limit
);
CREATE INDEX IF NOT EXISTS conversations_exp ON conversations (expires_at);
CREATE TABLE IF NOT EXISTS conversation_items (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, item_id TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (conv, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS conversation_items_id ON conversation_items (conv, item_id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""


def connect(path: str, timeout_secs: float) -> sqlite3.Connection:
    """Open ``path`` (created 0600 on first use, in WAL mode) with the schema in place.

    ``synchronous=NORMAL`` in WAL mode: a commit is durable against a crash of any process (it
    is in the WAL file when ``put_response`` returns, visible to every connection), not against
    power loss of the host, which costs an fsync per request otherwise.
    """
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    conn = sqlite3.connect(path, timeout=timeout_secs, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_secs * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL mode on {path} (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with transaction(conn):
                for statement in DDL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, write: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (take the write lock now, waiting at most ``busy_timeout``) or a read
    transaction (one consistent snapshot for several SELECTs); commit, or roll back on error."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.execute("COMMIT")
