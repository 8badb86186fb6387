"""Ending a background job from any worker of any instance: a client's cancel, a reaper's claim.

Both read the job, rewrite its stored Response (``bodies.ended``) and end it with
``Store.end_background``, which compares the version they read: if the job's worker wrote its body
meanwhile (it started, or finished), they read again. So a cancel racing the job's own end
returns whichever happened first, and two reapers claiming one dead job end it once.
"""
from __future__ import annotations

from ..store import Store
from . import bodies

ATTEMPTS = 5  # a job writes its body twice in its life (start, end): a few reads always settle it


async def cancel(store: Store, owner: str, response_id: str) -> tuple[bytes, bool] | None:
    """The Response after a cancel, and whether this call cancelled it (False: it had already
    ended, and is returned as it ended: the caller answers for that end). None: no background
    job of this owner has that id."""
    body: bytes | None = None
    for _ in range(ATTEMPTS):
        snap = await store.background_job(owner, response_id)
        if snap is None or snap.body is None:
            return None
        body = snap.body
        if snap.state == "ended" or bodies.is_final(bodies.parse(body)):
            return body, False
        cancelled = bodies.ended(body, "cancelled")
        result = await store.end_background(
            owner, response_id, cancelled, version=snap.version, outcome="cancelled"
        )
        if result == "ok":
            return cancelled, True
        if result == "gone":
            return None
    assert body is not None
    return body, False  # (never seen: the job kept writing; what it wrote last is the answer)


async def reap(store: Store, owner: str, response_id: str) -> bool:
    """End a job whose lease ran out as ``failed`` (``bodies.LOST_MESSAGE``); True if this call did."""
    for _ in range(ATTEMPTS):
        snap = await store.background_job(owner, response_id)
        body = b"" if snap is None or snap.body is None else bodies.ended(snap.body, "failed", bodies.LOST_MESSAGE)
        result = await store.end_background(
            owner, response_id, body, version=snap.version if snap else 0, outcome="lost", only_expired=True
        )
        if result != "changed":
            return result == "ok"
    return False
