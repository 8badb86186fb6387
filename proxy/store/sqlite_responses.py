"""Stored responses in SQLite: each function runs on a store thread with its connection.

A response's row points at its ancestors (``chain``) instead of copying their items; one read
transaction gathers the whole history. A put inserts its row and counts itself on its parent's
``kids``, so a parent (and, through it, every ancestor) stays while a descendant needs it, even
past its own TTL or after a DELETE; ``_free`` drops a row only when it is dead (deleted or
expired) with no kids left, then looks at its parent the same way.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from .base import HistoryIncomplete, Item, ObjectTooLarge, ResponsePending
from .items import decode_arrays, decode_objects, encode_items
from .sqlite_schema import transaction


class _Vanished(Exception):
    """What the response was built on went away while it was generated."""


# ``base_seq`` of a compaction's response (``NewResponse.window``), which starts its chain: its
# ``base_items`` is the window a chain from it stands on, in place of its own items. (A row built
# on a conversation has a position there, 0 or more; a copied history has none.)
COMPACTED = -1


def _json(ids: Sequence[str]) -> str:
    """JSON as TEXT: SQLite's JSON functions read a BLOB argument as JSONB (3.45+), not as JSON."""
    return orjson.dumps(ids).decode()


def now_ms() -> int:
    return int(time.time() * 1000)


def _live(row: Any, now: int) -> bool:
    return row is not None and row[0] == 1 and row[1] > now


def _keep_conversation(conn: sqlite3.Connection, owner: str, conv_id: str, exp: int, now: int) -> None:
    kept = conn.execute(
        "UPDATE conversations SET expires_at = max(expires_at, ?) WHERE id = ? AND owner = ? AND expires_at > ?",
        (exp, conv_id, owner, now),
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
    also: Callable[[sqlite3.Connection, int, int], None] | None = None,
    window: bytes | None = None,
) -> None:
    """Store a response in one transaction. If what it was built on vanished meanwhile (its
    predecessor freed, its conversation deleted), store it with the history it saw, copied.
    ``also(conn, now, expires_at)`` runs first in the same transaction (a background job's row
    and its cap check): when it raises, nothing is stored. ``window``: a compaction's (``COMPACTED``)."""
    now = now_ms()
    exp = now + ttl_ms
    ids_json = _json(ids)

    def row(parent: str | None, chain: str, conv_ref: tuple[str, int] | None, copied: bytes | None) -> tuple[Any, ...]:
        base_conv, base_seq = conv_ref or (None, None if window is None else COMPACTED)
        return (response_id, owner, parent, 0, 1, exp, chain, ids_json, base_conv, base_seq, copied, n_input, items,
                body)

    if window is not None:  # a chain of its own, standing on its window: nothing to vanish
        _insert(conn, row(None, "[]", None, window))
        return
    try:
        if also is None and not prev_id and conv is None:
            # One statement, atomic on its own (its index entries by trigger): no BEGIN and COMMIT
            # of its own to hand to SQLite (or, in a batch, no savepoint).
            conn.execute(_PLAIN, (response_id, owner, exp, ids_json, n_input, items, body))
            return
        with transaction(conn):
            if also is not None:
                also(conn, now, exp)
            if prev_id:
                found = conn.execute(
                    "SELECT chain FROM responses WHERE id = ? AND owner = ?", (prev_id, owner)
                ).fetchone()
                if found is None:  # an expired or deleted predecessor is still here while it has kids
                    raise _Vanished
                chain: list[str] = orjson.loads(found[0])
                chain.append(prev_id)
                conn.execute("UPDATE responses SET kids = kids + 1 WHERE id = ?", (prev_id,))
                root = conn.execute("SELECT base_conv FROM responses WHERE id = ?", (chain[0],)).fetchone()
                if root[0] is not None:
                    _keep_conversation(conn, owner, root[0], exp, now)
                conn.execute(_CHAINED, (response_id, owner, prev_id, exp, _json(chain), ids_json, n_input, items, body))
            else:
                if conv is not None:
                    _keep_conversation(conn, owner, conv[0], exp, now)
                _insert(conn, row(None, "[]", conv, None))
        return
    except _Vanished:
        pass
    snapshot = encode_items(base)
    if len(body) + len(items) + len(snapshot) > limit:
        raise ObjectTooLarge(len(body) + len(items) + len(snapshot), limit)
    with transaction(conn):
        if also is not None:
            also(conn, now, exp)
        _insert(conn, row(None, "[]", None, snapshot))


# The two common rows with what they lack written as literals, not bound: sqlite3 binds a str, an
# int or a float as it is, but a None only after looking for an adapter for it (two attribute
# lookups, one raising and clearing an AttributeError), about 0.5 µs a value on the writer thread.
_PLAIN = "INSERT INTO responses VALUES (?, ?, NULL, 0, 1, ?, '[]', ?, NULL, NULL, NULL, ?, ?, ?)"
_CHAINED = "INSERT INTO responses VALUES (?, ?, ?, 0, 1, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?)"


def _insert(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """The response's row; the trigger ``responses_index`` indexes its items (``sqlite_schema``)."""
    conn.execute("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


def get_body(conn: sqlite3.Connection, owner: str, response_id: str) -> bytes | None:
    row = conn.execute(
        "SELECT live, expires_at, body FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
    ).fetchone()
    return row[2] if _live(row, now_ms()) else None


def get_history(conn: sqlite3.Connection, owner: str, response_id: str) -> list[Item] | None:
    now = now_ms()
    with transaction(conn, write=False):
        row = conn.execute(
            "SELECT r.live, r.expires_at, r.chain, r.items, r.base_conv, r.base_seq, r.base_items, j.state "
            "FROM responses r LEFT JOIN jobs j ON j.response_id = r.id WHERE r.id = ? AND r.owner = ?",
            (response_id, owner),
        ).fetchone()
        if not _live(row, now):
            return None
        if row[7] is not None and row[7] != "ended":  # a background response not finished yet
            raise ResponsePending(response_id)
        base = row[4:7]
        ancestors = []
        if row[2] != "[]":
            ancestors = conn.execute(
                "SELECT j.value, r.items, r.base_conv, r.base_seq, r.base_items FROM json_each(?) j "
                "LEFT JOIN responses r ON r.id = j.value ORDER BY j.key",
                (row[2],),
            ).fetchall()
            base = ancestors[0][2:5]
        prefix: list[bytes] = []
        if base[0] is not None:
            prefix = _conversation_prefix(conn, owner, response_id, base[0], base[1], now)
        parts: list[bytes] = [] if base[2] is None else [base[2]]
        for rid, items, *_ in ancestors:
            if items is None:
                raise HistoryIncomplete(response_id, f"the items of {rid} are gone")
            parts.append(items)
        parts.append(row[3])
        if base[1] == COMPACTED:  # the chain's root is a compaction: its window stands for its own items
            del parts[1]
    return decode_objects(prefix) + decode_arrays(parts) if prefix else decode_arrays(parts)


def _conversation_prefix(
    conn: sqlite3.Connection, owner: str, response_id: str, conv_id: str, seq: int, now: int
) -> list[bytes]:
    conv = conn.execute("SELECT expires_at FROM conversations WHERE id = ? AND owner = ?", (conv_id, owner)).fetchone()
    if conv is None or conv[0] <= now:
        raise HistoryIncomplete(response_id, f"its conversation {conv_id} was deleted", conv_id)
    rows = conn.execute("SELECT body FROM conversation_items WHERE conv = ? AND seq <= ? ORDER BY seq", (conv_id, seq))
    return [body for (body,) in rows]


def get_input(conn: sqlite3.Connection, owner: str, response_id: str) -> list[Item] | None:
    row = conn.execute(
        "SELECT live, expires_at, n_input, items FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
    ).fetchone()
    if not _live(row, now_ms()):
        return None
    return decode_arrays([row[3]])[: row[2]]


def delete_response(conn: sqlite3.Connection, owner: str, response_id: str) -> bool:
    now = now_ms()
    with transaction(conn):
        row = conn.execute(
            "SELECT live, expires_at, ids FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
        ).fetchone()
        if not _live(row, now):
            return False
        conn.execute("UPDATE responses SET live = 0, body = NULL WHERE id = ?", (response_id,))
        _unindex(conn, owner, response_id, row[2])
        _free(conn, response_id, now)
    return True


def _unindex(conn: sqlite3.Connection, owner: str, rid: str, ids_json: str) -> None:
    """Drop the index entries that still point at this response's items."""
    conn.execute(
        "DELETE FROM item_index WHERE owner = ? AND loc = ? AND item_id IN (SELECT value FROM json_each(?))",
        (owner, "r:" + rid, ids_json),
    )


def _free(conn: sqlite3.Connection, rid: str | None, now: int, budget: int = 1000) -> int:
    """Drop ``rid`` if nothing needs it any more, then its parent if that frees it, and so on, at
    most ``budget`` rows (an ancestor left over is expired with no kids: the next sweep finds it)."""
    freed = 0
    while rid is not None and freed < budget:
        row = conn.execute(
            "SELECT live, expires_at, kids, parent, owner, ids FROM responses WHERE id = ?", (rid,)
        ).fetchone()
        if row is None or row[2] > 0 or _live(row, now):
            break
        if row[0]:  # expired without a DELETE: its items were still indexed
            _unindex(conn, row[4], rid, row[5])
        conn.execute("DELETE FROM responses WHERE id = ?", (rid,))
        freed += 1
        rid = row[3]
        if rid is not None:
            conn.execute("UPDATE responses SET kids = kids - 1 WHERE id = ?", (rid,))
    return freed


# Every live holder of the wanted items, newest first (``sqlite_schema``): a response with its
# liveness checked here, a conversation with the item's JSON. Holders of one millisecond: a
# conversation first (its items are appended after its response's put), then the later id.
_HOLDERS = (
    "SELECT x.item_id, x.loc, x.pos, ci.body FROM item_index x "
    "LEFT JOIN responses r ON substr(x.loc, 1, 2) = 'r:' AND r.id = substr(x.loc, 3) AND r.owner = x.owner "
    "LEFT JOIN conversations c ON substr(x.loc, 1, 2) = 'c:' AND c.id = substr(x.loc, 3) AND c.owner = x.owner "
    "AND c.expires_at > :now "
    "LEFT JOIN conversation_items ci ON ci.conv = c.id AND ci.item_id = x.item_id "
    "WHERE x.owner = :owner AND x.item_id IN (SELECT value FROM json_each(:ids)) "
    "AND (r.live = 1 AND r.expires_at > :now OR ci.body IS NOT NULL) "
    "ORDER BY coalesce(r.expires_at, x.pos) DESC, substr(x.loc, 1, 2) = 'c:' DESC, x.loc DESC"
)


def get_items(conn: sqlite3.Connection, owner: str, item_ids: Sequence[str]) -> dict[str, Item]:
    """Items by id, wherever the owner stored them: of each id's live holders, read in one query
    newest first, the first (a response's items are read only for the one it takes)."""
    found: dict[str, Item] = {}
    with transaction(conn, write=False):
        holders = conn.execute(_HOLDERS, {"now": now_ms(), "owner": owner, "ids": _json(list(item_ids))}).fetchall()
        decoded: dict[str, list[Item]] = {}
        for item_id, loc, pos, body in holders:
            if item_id in found:  # (a newer holder had it)
                continue
            if body is not None:
                found[item_id] = orjson.loads(body)
                continue
            rid = loc[2:]
            if rid not in decoded:
                (items,) = conn.execute("SELECT items FROM responses WHERE id = ?", (rid,)).fetchone()
                decoded[rid] = decode_arrays([items])
            if pos < len(decoded[rid]):
                found[item_id] = decoded[rid][pos]
    return found


def sweep_responses(conn: sqlite3.Connection, now: int, batch: int) -> int:
    """Free up to ``batch`` expired responses nothing needs (and the ancestors that frees)."""
    doomed = conn.execute(
        "SELECT id FROM responses WHERE expires_at <= ? AND kids = 0 LIMIT ?", (now, batch)
    ).fetchall()
    freed = 0
    for (rid,) in doomed:
        freed += _free(conn, rid, now, batch - freed)
        if freed >= batch:
            break
    return freed
