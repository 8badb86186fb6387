"""Circuit breakers shared by every worker process of a host: one per model, one for the host.

Multi-model backends (Chutes, OpenRouter: one URL, many models that fail
independently) need failures scoped the way they happen: a model that
returns 5xx must be refused on its own, without taking the other models
down, and a dead model with little traffic must still trip even though
other models keep succeeding. So there is one breaker per upstream model,
and a host breaker for what says nothing about a model.

Gunicorn forks N workers; breakers in each worker's memory would need N
times ``threshold`` failures to open and would send N probes at once. So all
state lives in one ``SharedTable`` (``table``: a host frame and a fixed
number of model slots, in shared memory, lock-free to read; ``shm``: the
memory, the seqlock frames and the locks) that the gunicorn master creates
before forking (``shared_table()`` from ``conf/gunicorn.conf.py``,
get-or-create so a SIGHUP reload keeps it) and every worker inherits,
respawned ones included. Each breaker follows the state machine in
``machine``; ``breakers`` holds the API.

**Verdicts** (``Verdict``, one per request, ``Breakers.record``):

* ``SUCCESS`` — the backend answered and the answer is not its failure (2xx,
  and 4xx such as 400/401/404/429): resets the model's failure count and the
  host's; closes a breaker whose probe it was.
* ``MODEL_FAILURE`` — the backend answered for this model and failed (5xx,
  a broken or cut stream): counts for the model (it opens after ``threshold``
  in a row: successes of *other* models do not reset it), and for the host's
  "down for all models" rule below.
* ``HOST_FAILURE`` — no answer at all (connect refused, DNS, TLS, connect
  timeout): counts for the host only; a model probe that meets one is
  released, not failed.
* ``NONE`` — no verdict (the client left, our own bug, refused before
  sending): changes nothing, releases any probe the request held.

**The host breaker opens** when either holds, with ``threshold`` its
threshold too:

1. *unreachable*: ``threshold`` host failures in a row, with no backend
   answer (success or model failure) between them;
2. *down for all models*: ``threshold`` failures of any kind since the last
   success on any model, among them model failures of at least two distinct
   models.

So one dead model, even at 100 % of the traffic, never opens the host
breaker: it trips its own and is refused alone. The host's
``consecutive_failures`` (what ``/health`` shows) counts every failure since
the last success on any model.

**Probes.** One half-open probe per breaker across all workers. ``acquire``
checks the host first (refusing with ``BreakerOpen(scope="host")``), then the
model (``scope="model"``); a request refused by its model's breaker never
takes the host's probe. When the host probe's request fails for a model that
was itself open (it was that model's probe too), the host probe is released
rather than failed: a model known to be failing says nothing new about the
host.

**More models than slots**: see ``table`` (a model takes a slot on its first
failure; closed slots are evicted, least recently written first, clean ones
before failing ones; open slots never; a model that finds no slot is
untracked: admitted, and counted).

Times come from ``time.monotonic()``; on Linux CLOCK_MONOTONIC is
system-wide, so a timestamp written by one worker is comparable in another.
"""
from __future__ import annotations

from .breakers import Breakers
from .permits import BreakerOpen, BreakerState, Permit, Verdict
from .table import SharedTable

__all__ = [
    "BreakerOpen",
    "BreakerState",
    "Breakers",
    "Permit",
    "SharedTable",
    "Verdict",
    "shared_table",
]

_shared: SharedTable | None = None


def shared_table(slots: int = 256) -> SharedTable:
    """This process tree's table: created on the first call, the same one after.

    Call it in the gunicorn master before it forks (``conf/gunicorn.conf.py``);
    workers then get the inherited table. ``slots`` matters only on the first
    call: a reload with another ``CIRCUIT_BREAKER_MODEL_SLOTS`` keeps the
    table (and its state) until the next restart.
    """
    global _shared
    if _shared is None:
        _shared = SharedTable(slots)
    return _shared
