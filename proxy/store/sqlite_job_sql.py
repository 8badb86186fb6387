"""Background jobs in SQLite: each function runs on a store thread with its connection.

A job is a ``jobs`` row beside its response's row; its events are ``response_events`` rows. Writes
that continue a job (start, append, finish) name the worker and change nothing once the job is not
that worker's running job any more (cancelled, or reaped). Every write takes the write lock first
(``BEGIN IMMEDIATE``), so the owner's cap check and the insert that counts against it are one step
for every process of the host.

A cancelled job's log stays open for its worker until its lease would have run out (``lease_until``,
which the cancel leaves as it was): the worker logs the events it had already streamed live and
closes it (``close``, which sets ``lease_until`` to 0); a reader sees the log ended only then.
Nothing new in the row, so a worker of the previous release reads and writes it as before.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from .base import EventPage, JobSnapshot, ObjectTooLarge, TooManyJobs
from .sqlite_responses import now_ms
from .sqlite_schema import INDEX_ITEM, transaction

_ACTIVE = "state != 'ended'"


def job_row(
    owner: str, worker: str, lease_ms: int, max_per_owner: int, events: bool, response_id: str
) -> Any:
    """``also`` for ``put_response``: the cap check and the job's row, in the put's transaction."""

    def insert(conn: sqlite3.Connection, now: int, expires_at: int) -> None:
        (live,) = conn.execute(
            f"SELECT count(*) FROM jobs WHERE owner = ? AND {_ACTIVE} AND lease_until > ?", (owner, now)
        ).fetchone()
        if live >= max_per_owner:
            raise TooManyJobs(live, max_per_owner)
        conn.execute(
            "INSERT INTO jobs VALUES (?, ?, 'queued', NULL, ?, ?, 0, ?, 0, -1, ?)",
            (response_id, owner, worker, now + lease_ms, int(events), expires_at),
        )

    return insert


def _running(conn: sqlite3.Connection, owner: str, response_id: str, worker: str) -> Any:
    return conn.execute(
        "SELECT log_bytes, last_seq, events FROM jobs "
        f"WHERE response_id = ? AND owner = ? AND worker = ? AND {_ACTIVE}",
        (response_id, owner, worker),
    ).fetchone()


def _log(
    conn: sqlite3.Connection, response_id: str, row: Any, first_seq: int, events: Sequence[bytes], limit: int
) -> None:
    size, last = row[0], row[1]
    new = [(response_id, first_seq + i, data) for i, data in enumerate(events) if first_seq + i > last]
    size += sum(len(data) for _, _, data in new)
    if size > limit:
        raise ObjectTooLarge(size, limit)
    if new:
        conn.executemany("INSERT INTO response_events VALUES (?, ?, ?)", new)
        conn.execute(
            "UPDATE jobs SET log_bytes = ?, last_seq = ? WHERE response_id = ?", (size, new[-1][1], response_id)
        )


def start(conn: sqlite3.Connection, owner: str, response_id: str, body: bytes, worker: str) -> bool:
    with transaction(conn):
        if _running(conn, owner, response_id, worker) is None:
            return False
        conn.execute("UPDATE responses SET body = ? WHERE id = ? AND live = 1", (body, response_id))
        conn.execute(
            "UPDATE jobs SET state = 'in_progress', version = version + 1 WHERE response_id = ?", (response_id,)
        )
    return True


def append(
    conn: sqlite3.Connection, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes],
    limit: int,
) -> bool:
    with transaction(conn):
        return _append(conn, owner, response_id, worker, first_seq, events, limit)


def _append(
    conn: sqlite3.Connection, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes],
    limit: int,
) -> bool:
    """Log ``events`` if the job is ``worker``'s running one (in the caller's transaction)."""
    row = _running(conn, owner, response_id, worker)
    if row is None:
        return False
    _log(conn, response_id, row, first_seq, events, limit)
    return True


def finish(
    conn: sqlite3.Connection, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes],
    body: bytes, items: bytes, ids: Sequence[str], outcome: str, limit: int,
) -> bool:
    """The last events, the final body and items (so chaining from it sees its output), the end."""
    with transaction(conn):
        if not _append(conn, owner, response_id, worker, first_seq, events, limit):
            return False
        found = conn.execute(
            "SELECT n_input FROM responses WHERE id = ? AND owner = ? AND live = 1", (response_id, owner)
        ).fetchone()
        if found is not None:
            conn.execute(
                "UPDATE responses SET body = ?, items = ?, ids = ? WHERE id = ?",
                (body, items, orjson.dumps(list(ids)).decode(), response_id),
            )
            loc = "r:" + response_id
            conn.executemany(
                INDEX_ITEM, [(owner, item_id, loc, pos) for pos, item_id in enumerate(ids) if pos >= found[0]]
            )
        _end(conn, response_id, outcome)
    return True


def _end(conn: sqlite3.Connection, response_id: str, outcome: str) -> None:
    conn.execute(
        "UPDATE jobs SET state = 'ended', ended_as = ?, version = version + 1 WHERE response_id = ?",
        (outcome, response_id),
    )


def close(
    conn: sqlite3.Connection, owner: str, response_id: str, worker: str, first_seq: int, events: Sequence[bytes],
    limit: int,
) -> bool:
    """A cancelled job's last events (what its live client got) and its log closed, by its worker."""
    with transaction(conn):
        row = conn.execute(
            "SELECT log_bytes, last_seq, events FROM jobs WHERE response_id = ? AND owner = ? AND worker = ? "
            "AND state = 'ended' AND ended_as = 'cancelled' AND lease_until > ?",
            (response_id, owner, worker, now_ms()),
        ).fetchone()
        if row is None:
            return False
        if row[2]:
            try:
                _log(conn, response_id, row, first_seq, events, limit)
            except ObjectTooLarge:
                pass  # closed without them: the log holds what fitted
        conn.execute("UPDATE jobs SET lease_until = 0 WHERE response_id = ?", (response_id,))
    return True


def end(
    conn: sqlite3.Connection, owner: str, response_id: str, body: bytes, version: int, outcome: str,
    only_expired: bool,
) -> str:
    with transaction(conn):
        row = conn.execute(
            "SELECT state, version, lease_until FROM jobs WHERE response_id = ? AND owner = ?", (response_id, owner)
        ).fetchone()
        if row is None:
            return "gone"
        if row[0] == "ended":
            return "ended"
        if row[1] != version:
            return "changed"
        if only_expired and row[2] > now_ms():
            return "alive"
        if body:  # (empty: its response is gone, leave it)
            conn.execute(
                "UPDATE responses SET body = ? WHERE id = ? AND owner = ? AND live = 1", (body, response_id, owner)
            )
        _end(conn, response_id, outcome)
    return "ok"


def snapshot(conn: sqlite3.Connection, owner: str, response_id: str) -> JobSnapshot | None:
    now = now_ms()
    row = conn.execute(
        "SELECT j.state, j.version, r.body FROM jobs j LEFT JOIN responses r ON r.id = j.response_id AND r.live = 1 "
        "AND r.expires_at > ? WHERE j.response_id = ? AND j.owner = ? AND j.expires_at > ?",
        (now, response_id, owner, now),
    ).fetchone()
    return None if row is None else JobSnapshot(row[0], row[1], row[2])


def read(conn: sqlite3.Connection, owner: str, response_id: str, after: int, limit: int) -> EventPage | None:
    """One consistent snapshot: a job ended there has logged every event it ever will (a cancelled
    one once its worker closed the log, or its lease would have run out)."""
    now = now_ms()
    with transaction(conn, write=False):
        row = conn.execute(
            "SELECT state, events, state = 'ended' AND NOT (ended_as = 'cancelled' AND lease_until > ?) "
            "FROM jobs WHERE response_id = ? AND owner = ? AND expires_at > ?",
            (now, response_id, owner, now),
        ).fetchone()
        if row is None:
            return None
        if not row[1]:
            return EventPage([], True, logged=False)
        events = [
            data for (data,) in conn.execute(
                "SELECT data FROM response_events WHERE response_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (response_id, after, limit),
            )
        ]
    return EventPage(events, bool(row[2]) and len(events) < limit)


def renew(conn: sqlite3.Connection, worker: str, response_ids: Sequence[str], lease_ms: int) -> set[str]:
    ids = orjson.dumps(list(response_ids)).decode()
    with transaction(conn):
        kept = conn.execute(
            f"UPDATE jobs SET lease_until = ? WHERE worker = ? AND {_ACTIVE} "
            "AND response_id IN (SELECT value FROM json_each(?)) RETURNING response_id",
            (now_ms() + lease_ms, worker, ids),
        ).fetchall()
    return set(response_ids) - {rid for (rid,) in kept}


def expired(conn: sqlite3.Connection, limit: int) -> list[tuple[str, str]]:
    rows = conn.execute(
        f"SELECT owner, response_id FROM jobs WHERE {_ACTIVE} AND lease_until <= ? ORDER BY lease_until LIMIT ?",
        (now_ms(), limit),
    ).fetchall()
    return [(owner, rid) for owner, rid in rows]


def sweep_jobs(conn: sqlite3.Connection, now: int, batch: int) -> int:
    """Delete up to ``batch`` expired job rows with their logs (in the sweep's transaction)."""
    rows = conn.execute("SELECT response_id FROM jobs WHERE expires_at <= ? LIMIT ?", (now, batch))
    doomed = [rid for (rid,) in rows]
    if not doomed:
        return 0
    ids = orjson.dumps(doomed).decode()
    conn.execute("DELETE FROM response_events WHERE response_id IN (SELECT value FROM json_each(?))", (ids,))
    conn.execute("DELETE FROM jobs WHERE response_id IN (SELECT value FROM json_each(?))", (ids,))
    return len(doomed)
