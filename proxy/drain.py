"""The instance's draining state: set by the gunicorn master on SIGTERM, read by every worker's ``/health``.

Why a pre-stop drain at all: when a whole instance stops, the last copy of its
listening socket closes, and the kernel resets every connection it had already
completed but no worker had accepted yet (the accept backlog). A load balancer
that sent a request on one of those cannot replay it (a POST may already be
billed). With ``SHUTDOWN_DRAIN_SECS`` set, the master's first SIGTERM only
raises this flag: ``/health`` answers 503 ``"draining"`` while everything else
is served as usual, the balancer's health checks take the instance out of
rotation, and only then, ``SHUTDOWN_DRAIN_SECS`` later, does gunicorn's own
graceful stop begin (listener closed, streams finished). SIGHUP never drains:
its new workers keep serving on the same socket.

The flag is one byte of anonymous shared memory (``MAP_SHARED``), created in
the master before it forks (``conf/gunicorn.conf.py``; get-or-create, so a
SIGHUP reload keeps it), so every worker, respawned ones included, reads the
byte the master writes.

A worker's own stop, as a WebSocket connection sees it, is ``STOPPING``: an ASGI scope
extension the worker's WebSocket protocol (``proxy.worker.DrainingWebSocketProtocol``) puts
on every connection it accepts, an ``asyncio.Future`` done when the worker begins to shut
down, so the connection can end after its running response instead of under it. A scope
without it (the app served by another server, or a test's) never stops on its own.
"""
from __future__ import annotations

import asyncio
import mmap
import os
import signal
import threading
from typing import Any

STOPPING = "proxy.stopping"


def stopping_future(scope: dict[str, Any]) -> asyncio.Future[None] | None:
    """A WebSocket connection's stop signal (``STOPPING``), if its server gives one."""
    found = (scope.get("extensions") or {}).get(STOPPING)
    return found if isinstance(found, asyncio.Future) else None


class DrainFlag:
    """A process-tree-wide boolean: False until ``start()``, then True for good."""

    def __init__(self) -> None:
        self._mm = mmap.mmap(-1, 1)  # fileno -1: MAP_SHARED | MAP_ANONYMOUS, inherited across fork

    def start(self) -> None:
        self._mm[0] = 1

    @property
    def active(self) -> bool:
        return self._mm[0] == 1


_flag: DrainFlag | None = None


def shared_flag() -> DrainFlag:
    """This process tree's flag: created on the first call (in the master), the same one after."""
    global _flag
    if _flag is None:
        _flag = DrainFlag()
    return _flag


def current() -> DrainFlag | None:
    """The flag a worker inherited, or None when no master created one (the app run on its own)."""
    return _flag


def drain_before_stop(arbiter: Any, secs: float, flag: DrainFlag) -> None:
    """Make gunicorn's master drain for ``secs`` on its first SIGTERM before stopping gracefully.

    ``arbiter`` is gunicorn's ``Arbiter``: it dispatches each signal to
    ``handle_<name>`` read from the instance, so replacing ``handle_term`` on it
    is enough (``conf/gunicorn.conf.py`` points ``handle_int`` at the result
    too). The first call raises the flag and arms a timer that sends the
    master SIGTERM again when the drain is over; that second SIGTERM, or one
    from outside during the drain (an impatient operator), runs gunicorn's own
    handler, which stops the arbiter. ``secs`` of 0 changes nothing.
    """
    if secs <= 0:
        return
    stop = arbiter.handle_term
    timer: threading.Timer | None = None

    def handle_term() -> None:
        nonlocal timer
        if timer is None:
            flag.start()
            arbiter.log.info("Draining for %g s before stopping: /health answers 503 \"draining\"", secs)
            timer = threading.Timer(secs, os.kill, (os.getpid(), signal.SIGTERM))
            timer.daemon = True
            timer.start()
            return
        timer.cancel()
        stop()

    arbiter.handle_term = handle_term
