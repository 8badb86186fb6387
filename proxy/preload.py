"""Third-party libraries imported once in the gunicorn master, before the workers fork.

Why: a worker that imports them itself holds a private copy of every module,
class and function object they create. Imported in the master, those pages
are inherited by every worker and stay shared, provided nothing writes to
them: ``gc.freeze()`` moves everything the master holds out of the garbage
collector's generations, so a worker's collections no longer touch (and copy)
each object's header. Measured (2 workers, the same load): 101 MB PSS for the
master and workers together without it, 92 MB with it.

``MODULES`` is everything third-party a worker imports, including what the
worker class loads only when it starts serving (uvloop, httptools, uvicorn's
protocol and lifespan), and what the first upstream request does (the IDNA codec; Falcon's app
also pulls in msgpack where it is installed: ``OPTIONAL_MODULES``); ``mimetypes``' table, which Falcon builds
when an app is made, is built here too. Those cost each worker about 0.6 MB of
its own (``python -m loadtest.memmap``: 1.2 MB less PSS with 2 workers at 64
connections). ``tests/unit/test_preload.py`` fails when a worker would import
a library the master did not.

The workers inherit one more setting of the collector: its first generation is collected
every ``GEN0_THRESHOLD`` new container objects instead of CPython's 700. A request leaves no
reference cycle (``tests/integration/test_request_garbage.py``), so its dicts and lists are freed
by their reference counts, and a collection mostly scans objects about to be freed anyway: a
50-chunk stream makes a few thousand of them. Counted with callgrind (``loadtest.instructions``,
one worker, c=16): 3,155k → 3,113k instructions per stream, 1,450k → 1,400k per JSON request;
thresholds of 20,000 and 100,000 gained nothing more.

Only third-party code is preloaded. The proxy's own modules are imported by
each worker, so a reload (SIGHUP: new workers forked from the same master)
still runs the new code of ``proxy/`` after a deploy; a dependency upgrade
needs a restart (SIGTERM, then start), not a reload.
"""
from __future__ import annotations

import gc
import importlib
import importlib.util
import mimetypes

GEN0_THRESHOLD = 7000  # new containers between two first-generation collections (CPython: 700)

# What the workers import (aiohttp, httpx and the websockets protocol pull in the rest).
MODULES = (
    "aiohttp",
    "encodings.idna",
    "falcon",
    "falcon.asgi",
    "hiredis",
    "httptools",
    "httpx",
    "multidict",
    "orjson",
    "redis.asyncio",
    "sqlite3",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvloop",
    "yarl",
)

# Imported by a worker only where installed, never a dependency of ours: Falcon loads msgpack for
# its MessagePack media handler when it is there (the dev requirements bring it, through locust).
# A production install (requirements.txt) has none of them, and must still boot.
OPTIONAL_MODULES = ("msgpack",)


def preload() -> None:
    """Import ``MODULES`` (and the ``OPTIONAL_MODULES`` installed), freeze what the process holds
    and set the collector's first threshold (call in the master, before forking)."""
    for name in MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    mimetypes.init()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
