"""Unique ids for Responses objects (``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``, …).

OpenAI ids are opaque strings; clients only compare them. Ours are 32 lowercase hex digits after
the prefix: the creation time (8 digits of Unix seconds, as OpenAI's own ids begin, then 5 of
microseconds) and 76 random bits, unique without coordination between workers or hosts.

Why the time first: the store indexes responses and items by id. Random ids land at random
places of those B-trees, so each put dirties leaves of its own all over the file (on SQLite, WAL
frames written and pages read back); ids that grow with time append to the rightmost leaves,
which puts queued together share. Measured with ``loadtest/store_overhead.py --micro``.
"""
from __future__ import annotations

import os
import time

_urandom = os.urandom
_time_ns = time.time_ns


def new_id(prefix: str) -> str:
    """Return ``"<prefix>_<32 lowercase hex digits>"``, e.g. ``new_id("resp")``: 13 of time, 19 random."""
    seconds, micros = divmod(_time_ns() // 1000, 1_000_000)
    return f"{prefix}_{seconds << 20 | micros:013x}{_urandom(10).hex()[:19]}"  # (micros < 2**20)
