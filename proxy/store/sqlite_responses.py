"""Stored responses in SQLite: each function runs on a store thread with its connection.

A response's record points at its ancestors (``chain``) instead of copying their items; one
read transaction gathers the whole history. Writing a descendant extends every ancestor's
``keep_until`` and counts a reference on it, in the same transaction, so neither a TTL nor a
DELETE of an ancestor can take items a descendant needs (``proxy/store/__init__.py``).
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson

from .base import HistoryIncomplete, Item, ObjectTooLarge
from .items import decode_parts, encode_items
from .sqlite_schema import transaction

_IN_JSON = "SELECT value FROM json_each(?)"


class _Vanished(Exception):
    """The response's predecessor (or its conversation) went away while it was generated."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _live(row: Any, now: int) -> bool:
    return row is not None and row[0] == 1 and row[1] > now


def _link(conn: sqlite3.Connection, owner: str, prev_id: str, keep: int, now: int) -> list[str]:
    """The chain of a response built on ``prev_id``; extends and counts its ancestors."""
    row = conn.execute("SELECT live, expires_at, chain FROM responses WHERE id = ? AND owner = ?", (prev_id, owner))
    prev = row.fetchone()
    if not _live(prev, now):
        raise _Vanished
    chain: list[str] = orjson.loads(prev[2])
    chain.append(prev_id)
    linked = conn.execute(
        f"UPDATE responses SET refs = refs + 1, keep_until = max(keep_until, ?) WHERE id IN ({_IN_JSON}) "
        "AND keep_until > ?",
        (keep, orjson.dumps(chain), now),
    ).rowcount
    if linked != len(chain):
        raise _Vanished
    root = conn.execute("SELECT base_conv FROM responses WHERE id = ?", (chain[0],)).fetchone()
    if root[0] is not None:
        _keep_conversation(conn, owner, root[0], keep, now)
    return chain


def _keep_conversation(conn: sqlite3.Connection, owner: str, conv_id: str, keep: int, now: int) -> None:
    kept = conn.execute(
        "UPDATE conversations SET expires_at = max(expires_at, ?) WHERE id = ? AND owner = ? AND expires_at > ?",
        (keep, conv_id, owner, now),
    ).rowcount
    if not kept:
        raise _Vanished


def put_response(
    conn: sqlite3.Connection,
    owner: str,
    response_id: str,
    body: bytes,
    items: bytes,
    n_input: int,
    ids: Sequence[str],
    prev_id: str | None,
    conv: tuple[str, int] | None,
    base: Sequence[Item],
    ttl_ms: int,
    limit: int,
) -> None:
    """Store a response in one transaction. If what it was built on vanished meanwhile (a TTL ran
    out or a DELETE landed during generation), store it with that history copied (``base``)."""
    now = now_ms()
    exp = now + ttl_ms
    try:
        with transaction(conn):
            chain: list[str] = _link(conn, owner, prev_id, exp, now) if prev_id else []
            if conv is not None:
                _keep_conversation(conn, owner, conv[0], exp, now)
            _insert(conn, owner, response_id, body, items, n_input, ids, chain, conv, None, exp)
        return
    except _Vanished:
        pass
    snapshot = encode_items(base)
    if len(body) + len(items) + len(snapshot) > limit:
        raise ObjectTooLarge(len(body) + len(items) + len(snapshot), limit)
    with transaction(conn):
        _insert(conn, owner, response_id, body, items, n_input, ids, [], None, snapshot, exp)


def _insert(
    conn: sqlite3.Connection,
    owner: str,
    rid: str,
    body: bytes,
    items: bytes,
    n_input: int,
    ids: Sequence[str],
    chain: list[str],
    conv: tuple[str, int] | None,
    snapshot: bytes | None,
    exp: int,
) -> None:
    conn.execute(
        "INSERT INTO responses VALUES (?, ?, 1, 1, ?, ?, ?, ?, ?)",
        (rid, owner, exp, exp, orjson.dumps(chain), conv[0] if conv else None, conv[1] if conv else None),
    )
    conn.execute("INSERT INTO response_bodies VALUES (?, ?)", (rid, body))
    conn.execute("INSERT INTO response_items VALUES (?, ?, ?, ?)", (rid, n_input, items, snapshot))
    loc = "r:" + rid
    conn.executemany(
        "INSERT OR REPLACE INTO item_index VALUES (?, ?, ?, ?)", [(owner, i, loc, pos) for pos, i in enumerate(ids)]
    )


def get_body(conn: sqlite3.Connection, owner: str, response_id: str) -> bytes | None:
    row = conn.execute(
        "SELECT r.live, r.expires_at, b.body FROM responses r JOIN response_bodies b ON b.id = r.id "
        "WHERE r.id = ? AND r.owner = ?",
        (response_id, owner),
    ).fetchone()
    return row[2] if _live(row, now_ms()) else None


def get_history(conn: sqlite3.Connection, owner: str, response_id: str) -> list[Item] | None:
    now = now_ms()
    with transaction(conn, write=False):
        row = conn.execute(
            "SELECT live, expires_at, chain FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
        ).fetchone()
        if not _live(row, now):
            return None
        ids: list[str] = orjson.loads(row[2])
        ids.append(response_id)
        rows = conn.execute(
            "SELECT j.value, ri.items, ri.base_items, r.base_conv, r.base_seq FROM json_each(?) j "
            "LEFT JOIN response_items ri ON ri.id = j.value LEFT JOIN responses r ON r.id = j.value ORDER BY j.key",
            (orjson.dumps(ids),),
        ).fetchall()
        parts: list[bytes] = []
        base_conv, base_seq = rows[0][3], rows[0][4]
        if base_conv is not None:
            parts.extend(_conversation_prefix(conn, owner, response_id, base_conv, base_seq, now))
        if rows[0][2] is not None:
            parts.append(rows[0][2])
        for rid, items, _, _, _ in rows:
            if items is None:
                raise HistoryIncomplete(response_id, f"the items of {rid} are gone")
            parts.append(items)
    return decode_parts(parts)


def _conversation_prefix(
    conn: sqlite3.Connection, owner: str, response_id: str, conv_id: str, seq: int, now: int
) -> list[bytes]:
    conv = conn.execute("SELECT expires_at FROM conversations WHERE id = ? AND owner = ?", (conv_id, owner)).fetchone()
    if conv is None or conv[0] <= now:
        raise HistoryIncomplete(response_id, f"its conversation {conv_id} was deleted")
    rows = conn.execute("SELECT body FROM conversation_items WHERE conv = ? AND seq <= ? ORDER BY seq", (conv_id, seq))
    return [body for (body,) in rows]


def get_input(conn: sqlite3.Connection, owner: str, response_id: str) -> list[Item] | None:
    row = conn.execute(
        "SELECT r.live, r.expires_at, ri.n_input, ri.items FROM responses r JOIN response_items ri ON ri.id = r.id "
        "WHERE r.id = ? AND r.owner = ?",
        (response_id, owner),
    ).fetchone()
    if not _live(row, now_ms()):
        return None
    return decode_parts([row[3]])[: row[2]]


def delete_response(conn: sqlite3.Connection, owner: str, response_id: str) -> bool:
    now = now_ms()
    with transaction(conn):
        row = conn.execute(
            "SELECT live, expires_at, chain FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
        ).fetchone()
        if not _live(row, now):
            return False
        conn.execute("UPDATE responses SET live = 0 WHERE id = ?", (response_id,))
        conn.execute("DELETE FROM response_bodies WHERE id = ?", (response_id,))
        conn.execute("DELETE FROM item_index WHERE loc = ?", ("r:" + response_id,))
        chain: list[str] = orjson.loads(row[2])
        chain.append(response_id)
        _release(conn, orjson.dumps(chain))
    return True


def _release(conn: sqlite3.Connection, ids_json: bytes) -> None:
    """One reference less on each of ``ids``; drop the deleted ones nobody needs any more."""
    conn.execute(f"UPDATE responses SET refs = refs - 1 WHERE id IN ({_IN_JSON})", (ids_json,))
    unneeded = f"SELECT id FROM responses WHERE id IN ({_IN_JSON}) AND refs <= 0 AND live = 0"
    doomed = conn.execute(unneeded, (ids_json,)).fetchall()
    conn.executemany("DELETE FROM responses WHERE id = ?", doomed)
    conn.executemany("DELETE FROM response_items WHERE id = ?", doomed)


def get_items(conn: sqlite3.Connection, owner: str, item_ids: Sequence[str]) -> dict[str, Item]:
    """Items by id, wherever the owner stored them (a live response's items, a conversation's)."""
    now = now_ms()
    found: dict[str, Item] = {}
    with transaction(conn, write=False):
        where = conn.execute(
            f"SELECT item_id, loc, pos FROM item_index WHERE owner = ? AND item_id IN ({_IN_JSON})",
            (owner, orjson.dumps(list(item_ids))),
        ).fetchall()
        decoded: dict[str, list[Item] | None] = {}
        for item_id, loc, pos in where:
            kind, _, key = loc.partition(":")
            if kind == "r":
                if key not in decoded:
                    decoded[key] = get_input_and_output(conn, owner, key, now)
                items = decoded[key]
                if items is not None and pos < len(items):
                    found[item_id] = items[pos]
            else:
                row = conn.execute(
                    "SELECT ci.body FROM conversation_items ci JOIN conversations c ON c.id = ci.conv "
                    "WHERE ci.conv = ? AND ci.item_id = ? AND c.owner = ? AND c.expires_at > ?",
                    (key, item_id, owner, now),
                ).fetchone()
                if row is not None:
                    found[item_id] = orjson.loads(row[0])
    return found


def get_input_and_output(conn: sqlite3.Connection, owner: str, response_id: str, now: int) -> list[Item] | None:
    row = conn.execute(
        "SELECT r.live, r.expires_at, ri.items FROM responses r JOIN response_items ri ON ri.id = r.id "
        "WHERE r.id = ? AND r.owner = ?",
        (response_id, owner),
    ).fetchone()
    return decode_parts([row[2]]) if _live(row, now) else None


def sweep_responses(conn: sqlite3.Connection, now: int, batch: int) -> int:
    """Delete up to ``batch`` responses past ``keep_until``; a never-deleted one releases its chain."""
    doomed = conn.execute(
        "SELECT id, live, chain FROM responses WHERE keep_until <= ? LIMIT ?", (now, batch)
    ).fetchall()
    for _, live, chain in doomed:
        if live:
            conn.execute(f"UPDATE responses SET refs = refs - 1 WHERE id IN ({_IN_JSON})", (chain,))
    ids = [(rid,) for rid, _, _ in doomed]
    for table in ("responses", "response_bodies", "response_items"):
        conn.executemany(f"DELETE FROM {table} WHERE id = ?", ids)  # fixed table names
    conn.executemany("DELETE FROM item_index WHERE loc = ?", [("r:" + rid,) for rid, _, _ in doomed])
    return len(doomed)
