"""The SQLite file: its tables, how a connection to it is opened, and transactions.

A response is one row of ``responses``: its Response JSON, its own items, the ids of its
ancestors (``chain``), its ``parent`` and ``kids`` (how many responses built on it are still
kept). Each put inserts one row and counts one child on its parent — O(1) whatever the chain's
length. A row goes when it is deleted or expired *and* has no kept children, and then its parent
is looked at the same way, so a chain is freed from its leaves up (on DELETE, and by the sweep).
``item_index`` lists, per owner and item id, every *holder* of the item: ``r:<response id>`` (the
item at ``pos`` in its items) or ``c:<conversation id>``. One id is legitimately stored by several
(a resolved ``item_reference`` stores the item again in the new response, a client resends an
item with its id, a response's items are appended to its conversation). A lookup takes, of the
holders still live (a response live and not expired, a conversation not expired with the item
still in it), the newest, so it falls back to older ones when that one is deleted or expires;
deleting or freeing a holder removes its own rows only. Holders rank by when they stored the
item plus the TTL they stored it with: a response's ``expires_at``; a conversation's ``pos`` (its
items are looked up by id, so the column is free there), small for those schema 3 wrote (older
than any since). Under one ``RESPONSE_STORE_TTL_SECS`` that is the order they were stored in
(after a change of the TTL, the copy kept longest wins while it lasts). Why no column for it:
schema 3's code, run beside this one on the same file during a gunicorn reload, inserts
``VALUES (?, ?, ?, ?)``, which a fifth column refuses; ordering by rowid instead needs a second
b-tree, which made a put 10 µs dearer (``loadtest/store_micro.py``'s floor, 50,000 rows). A
response's own entries are written by the trigger ``responses_index`` from its ``ids``, inside
its INSERT, so a plain put is one statement. Times are milliseconds since the epoch; every read
checks ``expires_at``. A background response also has a ``jobs`` row (its lease, state and log
size) and its events in ``response_events`` (``sqlite_jobs``).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator

# sqlite3 binds str, int, float and bytearray as they are, but a bytes value (every body and items
# blob) only after looking for an adapter: a miss in its registry, then two attribute lookups on
# the protocol and the value, one raising and clearing an AttributeError (~0.4 µs a value on a
# store thread). Registered, bytes is found at once, and bytes(b) of a bytes is b itself.
sqlite3.register_adapter(bytes, bytes)

# 2: background jobs and their event logs (issue 15); 3: responses_index; 4: item_index keeps every holder
SCHEMA_VERSION = 4

DDL = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    parent TEXT,                    -- the response it was built on (previous_response_id)
    kids INTEGER NOT NULL,          -- responses built on it that are still kept
    live INTEGER NOT NULL,          -- 0 once deleted (then kept only while it has kids)
    expires_at INTEGER NOT NULL,    -- its own lifetime: GET, chaining, input_items, item lookups
    chain TEXT NOT NULL,            -- JSON array of ancestor ids, oldest first
    ids TEXT NOT NULL,              -- JSON array of its item ids (their index entries)
    base_conv TEXT,                 -- a chain's first response: the conversation it was built on,
    base_seq INTEGER,               -- … up to this item position (-1: a compaction's, standing on base_items),
    base_items BLOB,                -- or the history it saw, copied (its predecessors vanished meanwhile)
    n_input INTEGER NOT NULL,       -- the first n_input items are the request's own input
    items BLOB NOT NULL,            -- its input then output items, a JSON array
    body BLOB                       -- the Response JSON, NULL once deleted
);
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
CREATE TABLE IF NOT EXISTS item_index (  -- every holder of an item
    owner TEXT NOT NULL, item_id TEXT NOT NULL, loc TEXT NOT NULL,
    pos INTEGER NOT NULL,           -- r: the item's position in its items, c: stored at + TTL (ms)
    PRIMARY KEY (owner, item_id, loc)
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS jobs (
    response_id TEXT PRIMARY KEY,   -- a background response (responses.id)
    owner TEXT NOT NULL,
    state TEXT NOT NULL,            -- queued, in_progress, ended
    ended_as TEXT,                  -- its final status, or how it was ended from outside
    worker TEXT NOT NULL,           -- the worker running it
    lease_until INTEGER NOT NULL,   -- renewed by that worker, a reaper ends the job past it
    version INTEGER NOT NULL,       -- writes of its body, compared by a cancel or a reaper
    events INTEGER NOT NULL,        -- 1: its events are logged (it was asked to stream)
    log_bytes INTEGER NOT NULL,     -- the log's size, bounded by the object limit
    last_seq INTEGER NOT NULL,      -- the last sequence number logged (-1: none yet)
    expires_at INTEGER NOT NULL     -- the response's: the job row and the log go with it
);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_until) WHERE state != 'ended';
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, lease_until) WHERE state != 'ended';
CREATE INDEX IF NOT EXISTS jobs_exp ON jobs (expires_at);
CREATE TABLE IF NOT EXISTS response_events (
    response_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (response_id, seq)
) WITHOUT ROWID;
"""


# A holder storing an item adds its own row; the same holder storing it again (a retried write)
# keeps its row and its place among the item's holders: the rule of every write to item_index.
_SAME_HOLDER = "ON CONFLICT DO UPDATE SET pos = excluded.pos"
INDEX_ITEM = f"INSERT INTO item_index VALUES (?, ?, ?, ?) {_SAME_HOLDER}"

# Statements with ";" inside, run after DDL. A file of an older version gets them on first open
# (each is IF NOT EXISTS, as every DDL statement). ``WHERE true``: SQLite's grammar needs a WHERE
# before an upsert's ON CONFLICT in INSERT … SELECT.
TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS responses_index AFTER INSERT ON responses BEGIN
        INSERT INTO item_index SELECT NEW.owner, j.value, 'r:' || NEW.id, j.key FROM json_each(NEW.ids) j WHERE true
        {_SAME_HOLDER};
    END""",
)


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
        _use_wal(conn, path, timeout_secs)
        conn.execute("PRAGMA synchronous = NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with transaction(conn):
                _upgrade(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, path: str, timeout_secs: float) -> None:
    """Put the file in WAL mode (it stays so: every later opener finds it there).

    Only the first opening of a new file changes the mode, and every worker of the host may be
    that first one at once (their first requests after a deploy). The change needs the file's
    exclusive lock, and SQLite answers two connections contending for it with an immediate
    "database is locked", without calling the busy handler (it would deadlock): so the change is
    retried here until ``timeout_secs``, as ``busy_timeout`` bounds every other wait for a lock."""
    deadline = time.monotonic() + timeout_secs
    pause = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot use WAL mode on {path} (journal_mode is {mode})")


# Schema 3's index (renamed item_index_v3) to this one: every live response's items and every
# conversation's (when those were stored is not known: 0, older than any), then schema 3's own
# rows, the last holder of their item, so an item resolves where it did before and falls back
# from there (a conversation ranks as stored when it was last written to).
_REBUILD = (
    "INSERT INTO item_index SELECT r.owner, j.value, 'r:' || r.id, j.key FROM responses r, json_each(r.ids) j "
    f"WHERE r.live = 1 {_SAME_HOLDER}",
    "INSERT INTO item_index SELECT c.owner, i.item_id, 'c:' || i.conv, 0 "
    f"FROM conversation_items i JOIN conversations c ON c.id = i.conv WHERE true {_SAME_HOLDER}",
    "INSERT INTO item_index SELECT o.owner, o.item_id, o.loc, CASE WHEN substr(o.loc, 1, 2) = 'c:' THEN "
    "coalesce((SELECT c.expires_at FROM conversations c WHERE c.id = substr(o.loc, 3)), 0) ELSE o.pos END "
    f"FROM item_index_v3 o WHERE true {_SAME_HOLDER}",
)


def _upgrade(conn: sqlite3.Connection) -> None:
    """Create what is missing and bring an older file to this schema, in the caller's
    ``BEGIN IMMEDIATE``: every worker of the host opens the file at once, and the first to take
    the write lock upgrades it while the others wait, then find it done. Decided by what the file
    holds, not by ``user_version`` alone: during a gunicorn reload schema 3's code opens the file
    too and sets the version back to 3 (it leaves this schema's tables and trigger as they are,
    and its statements work on them).

    Schema 3's ``item_index`` kept one row per item id, its last holder, so an item stored again
    lost its older holders' rows (and, once that last one went, could not be referenced at all).
    It is rebuilt from the holders themselves (``_REBUILD``), its rows older than any holder
    stored from now on; the trigger that writes it goes first, as SQLite would rename the table
    inside it."""
    loc = conn.execute("SELECT pk FROM pragma_table_info('item_index') WHERE name = 'loc'").fetchone()
    rebuild = loc is not None and loc[0] == 0  # one row per item id: schema 3 or older
    if rebuild:
        conn.execute("DROP TRIGGER IF EXISTS responses_index")
        conn.execute("ALTER TABLE item_index RENAME TO item_index_v3")
    for statement in DDL.split(";"):  # (no ";" inside the DDL's comments)
        if statement.strip():
            conn.execute(statement)
    if rebuild:
        for statement in _REBUILD:
            conn.execute(statement)
        conn.execute("DROP TABLE item_index_v3")
    for statement in TRIGGERS:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, write: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (take the write lock now, waiting at most ``busy_timeout``) or a read
    transaction (one consistent snapshot for several SELECTs); commit, or roll back on error.

    Inside a transaction already (a batch of writes the writer thread commits together,
    ``sqlite_threads``) it is a savepoint of that one: an error undoes only what it did."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT tx")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # (SQLite rolls a whole transaction back on some errors)
                conn.execute("ROLLBACK TO tx")
                conn.execute("RELEASE tx")
            raise
        conn.execute("RELEASE tx")
        return
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.execute("COMMIT")
