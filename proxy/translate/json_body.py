"""A client's JSON document (a request body, a WebSocket message) parsed with the cyclic garbage
collector paused.

``orjson`` makes every array and object of the document a new GC-tracked list or dict, and
CPython runs a collection every 700 of them, a full one as they pile up: parsing a legal 10 MB
body of 3.3M empty arrays took 0.9 s here with the collector on, against 0.15 s paused plus
0.15 s for the one collection that follows. That time blocks the worker's event loop, so every
stream it serves stalls with it. Paused, nothing is lost: a parsed JSON document holds no
reference cycle, and the collector picks up whatever else was allocated meanwhile (only the
parse itself runs while it is off: ``orjson.loads`` never yields to the loop or runs Python
code). A typical body (the 160 KB Codex request) parses in the same time either way.
"""
from __future__ import annotations

import gc
from typing import Any

import orjson

__all__ = ["loads"]


def loads(raw: bytes | str) -> Any:
    """``orjson.loads(raw)`` with the collector paused (it raises ``orjson.JSONDecodeError`` as that does)."""
    if not gc.isenabled():  # someone else paused it: theirs to resume
        return orjson.loads(raw)
    gc.disable()
    try:
        return orjson.loads(raw)
    finally:
        gc.enable()
