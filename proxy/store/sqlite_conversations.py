"""Conversations in SQLite: each function runs on a store thread with its connection.

Items are rows ``(conv, seq, item_id, body)``. An append takes the write lock
(``BEGIN IMMEDIATE``) before reading ``next_seq``, so appends from any number of processes are
serialized: none is lost and each batch gets consecutive positions. An item id is in a
conversation once (a unique index): a batch with one it holds, or with one twice, is refused
whole (``DuplicateItem``), or, with ``skip_held``, appended without those items.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from .base import CursorNotFound, DuplicateItem, Item, ItemPage, ObjectTooLarge
from .items import decode_objects
from .shapes import conversation
from .sqlite_responses import now_ms
from .sqlite_schema import INDEX_ITEM, transaction

Encoded = Sequence[tuple[str, bytes]]  # (item id, item JSON)


def _row(conn: sqlite3.Connection, owner: str, conv_id: str, now: int) -> Any:
    return conn.execute(
        "SELECT created_at, metadata, next_seq, bytes FROM conversations WHERE id = ? AND owner = ? AND expires_at > ?",
        (conv_id, owner, now),
    ).fetchone()


def _shape(conv_id: str, row: Any) -> dict[str, Any]:
    return conversation(conv_id, row[0], orjson.loads(row[1]))


def create(
    conn: sqlite3.Connection, owner: str, conv_id: str, created_at: int, metadata: bytes, items: Encoded,
    ttl_ms: int, limit: int,
) -> None:
    now = now_ms()
    with transaction(conn):
        row = (conv_id, owner, created_at, metadata, now + ttl_ms)
        conn.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, 0, 0)", row)
        _append(conn, owner, conv_id, 0, 0, items, now + ttl_ms, limit)


def append(
    conn: sqlite3.Connection, owner: str, conv_id: str, items: Encoded, ttl_ms: int, limit: int, skip_held: bool
) -> list[int] | None:
    """The positions in ``items`` of those appended; None: no such conversation."""
    now = now_ms()
    with transaction(conn):
        row = _row(conn, owner, conv_id, now)
        if row is None:
            return None
        return _append(conn, owner, conv_id, row[2], row[3], items, now + ttl_ms, limit, skip_held)


def _append(
    conn: sqlite3.Connection, owner: str, conv_id: str, seq: int, size: int, items: Encoded, exp: int, limit: int,
    skip_held: bool = False,
) -> list[int]:
    loc = "c:" + conv_id
    added: list[int] = []
    seen: set[str] = set()
    for k, (item_id, body) in enumerate(items):
        if item_id in seen:  # (the unique index refuses it too: say which rule it broke)
            if skip_held:
                continue
            raise DuplicateItem(item_id, "items", k)  # rolls the whole batch back
        seen.add(item_id)
        if not conn.execute(
            "INSERT OR IGNORE INTO conversation_items VALUES (?, ?, ?, ?)", (conv_id, seq + 1, item_id, body)
        ).rowcount:
            if skip_held:
                continue
            raise DuplicateItem(item_id, "items", k, held=True)
        seq += 1
        size += len(body)
        added.append(k)
        conn.execute(INDEX_ITEM, (owner, item_id, loc, exp))  # (its rank among the item's holders)
    if size > limit:
        raise ObjectTooLarge(size, limit)  # rolls the whole batch back
    conn.execute(
        "UPDATE conversations SET next_seq = ?, bytes = ?, expires_at = max(expires_at, ?) WHERE id = ?",
        (seq, size, exp, conv_id),
    )
    return added


def get(conn: sqlite3.Connection, owner: str, conv_id: str) -> dict[str, Any] | None:
    row = _row(conn, owner, conv_id, now_ms())
    return None if row is None else _shape(conv_id, row)


def update(
    conn: sqlite3.Connection, owner: str, conv_id: str, metadata: bytes, ttl_ms: int
) -> dict[str, Any] | None:
    now = now_ms()
    with transaction(conn):
        row = conn.execute(
            "UPDATE conversations SET metadata = ?, expires_at = max(expires_at, ?) "
            "WHERE id = ? AND owner = ? AND expires_at > ? RETURNING created_at, metadata",
            (metadata, now + ttl_ms, conv_id, owner, now),
        ).fetchone()
    return None if row is None else _shape(conv_id, row)


def delete(conn: sqlite3.Connection, owner: str, conv_id: str) -> bool:
    with transaction(conn):
        if _row(conn, owner, conv_id, now_ms()) is None:
            return False
        _drop(conn, owner, conv_id)
    return True


def _drop(conn: sqlite3.Connection, owner: str, conv_id: str) -> None:
    conn.execute(
        "DELETE FROM item_index WHERE owner = ? AND loc = ? AND item_id IN "
        "(SELECT item_id FROM conversation_items WHERE conv = ?)",
        (owner, "c:" + conv_id, conv_id),
    )
    conn.execute("DELETE FROM conversation_items WHERE conv = ?", (conv_id,))
    conn.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))


def context(conn: sqlite3.Connection, owner: str, conv_id: str) -> tuple[list[Item], int, int] | None:
    """The conversation's items, the position of its last one, and their size (``bytes``)."""
    with transaction(conn, write=False):
        row = _row(conn, owner, conv_id, now_ms())
        if row is None:
            return None
        rows = conn.execute("SELECT body FROM conversation_items WHERE conv = ? ORDER BY seq", (conv_id,))
        bodies = [body for (body,) in rows]
    return decode_objects(bodies), row[2], row[3]


def list_items(
    conn: sqlite3.Connection, owner: str, conv_id: str, limit: int, order: str, after: str | None
) -> ItemPage | None:
    with transaction(conn, write=False):
        if _row(conn, owner, conv_id, now_ms()) is None:
            return None
        if after is None:
            start = 0 if order == "asc" else 1 << 62
        else:
            found = conn.execute(
                "SELECT seq FROM conversation_items WHERE conv = ? AND item_id = ?", (conv_id, after)
            ).fetchone()
            if found is None:
                raise CursorNotFound(after)
            start = found[0]
        sql = (
            "SELECT body FROM conversation_items WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?"
            if order == "asc"
            else "SELECT body FROM conversation_items WHERE conv = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
        )
        bodies = [b for (b,) in conn.execute(sql, (conv_id, start, limit + 1))]
    return ItemPage(decode_objects(bodies[:limit]), len(bodies) > limit)


def get_item(conn: sqlite3.Connection, owner: str, conv_id: str, item_id: str) -> Item | None:
    with transaction(conn, write=False):
        if _row(conn, owner, conv_id, now_ms()) is None:
            return None
        row = conn.execute(
            "SELECT body FROM conversation_items WHERE conv = ? AND item_id = ?", (conv_id, item_id)
        ).fetchone()
    return None if row is None else orjson.loads(row[0])


def delete_item(
    conn: sqlite3.Connection, owner: str, conv_id: str, item_id: str, ttl_ms: int
) -> dict[str, Any] | None:
    now = now_ms()
    with transaction(conn):
        row = _row(conn, owner, conv_id, now)
        if row is None:
            return None
        gone = conn.execute(
            "DELETE FROM conversation_items WHERE conv = ? AND item_id = ? RETURNING length(body)", (conv_id, item_id)
        ).fetchone()
        if gone is None:
            return None
        where = (owner, item_id, "c:" + conv_id)
        conn.execute("DELETE FROM item_index WHERE owner = ? AND item_id = ? AND loc = ?", where)
        conn.execute(
            "UPDATE conversations SET bytes = bytes - ?, expires_at = max(expires_at, ?) WHERE id = ?",
            (gone[0], now + ttl_ms, conv_id),
        )
    return _shape(conv_id, row)


def sweep_conversations(conn: sqlite3.Connection, now: int, batch: int) -> int:
    doomed = conn.execute("SELECT id, owner FROM conversations WHERE expires_at <= ? LIMIT ?", (now, batch)).fetchall()
    for conv_id, owner in doomed:
        _drop(conn, owner, conv_id)
    return len(doomed)
