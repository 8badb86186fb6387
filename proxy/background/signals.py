"""Knowing when SIGTERM arrived, so background jobs get the graceful timeout from that moment.

uvicorn handles SIGTERM itself: it stops accepting connections, waits for the open ones, and only
then runs the ASGI lifespan shutdown — which may be long after the signal, when gunicorn's kill is
near. So the worker chains a handler of its own before uvicorn's (installed by the time the
lifespan starts): the jobs' countdown starts with the signal, in parallel with the connections'.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("proxy.background")


def on_shutdown_signal(callback: Callable[[], None]) -> None:
    """Call ``callback`` in the running loop on SIGTERM or SIGINT, then the handler that was there.

    Outside the main thread (an app served by a test's thread) signals cannot be caught: nothing
    is installed, and the lifespan shutdown alone starts the countdown.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: object = previous) -> None:
            loop.call_soon_threadsafe(callback)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # nobody else handles it: die of it, as before
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        try:
            signal.signal(sig, handler)
        except ValueError:
            log.debug("not in the main thread: background jobs start their shutdown at lifespan end")
            return
