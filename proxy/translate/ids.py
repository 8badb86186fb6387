"""Unique ids for Responses objects (``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``, …).

OpenAI ids are opaque strings; clients only compare them. 128 random bits in
hex are unique without coordination between workers, and ``os.urandom`` +
``bytes.hex`` costs well under a microsecond, so ids can be minted per event.
"""
from __future__ import annotations

import os

_urandom = os.urandom


def new_id(prefix: str) -> str:
    """Return ``"<prefix>_<32 lowercase hex digits>"``, e.g. ``new_id("resp")``."""
    return prefix + "_" + _urandom(16).hex()
