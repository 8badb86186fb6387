"""Waiting for one thing while watching the client and a clock, without a task per wait.

The relay waits for each upstream read while the client may leave and a
keepalive, idle or total timeout may fall due; opening the upstream request
waits the same way. Racing each wait in a task of its own with
``asyncio.wait`` costs a task, a future, callbacks and a timer per read:
measured, more CPU than translating the chunk that arrives. An ``Interrupt``
instead lets the waiting task await the operation itself and, when the
client leaves or the wait's due time passes, cancels that task — which is
safe only for operations that lose nothing when cancelled (an aiohttp body
read; an upstream request being abandoned anyway) — and un-cancels it, as
``asyncio.timeout`` does. Its one timer is re-armed lazily: a wait that ends
before its due time only moves the due time, so a stream of reads sets no
timer per read.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

NEVER = float("inf")
"""A due time that never comes."""


class Interrupted(Exception):
    """The wait was interrupted: the client left (``disconnected`` is done) or its due time passed."""


class Interrupt:
    """Interrupts ``wait()`` when ``disconnected`` completes or the wait's ``due`` passes."""

    __slots__ = ("_disconnected", "_loop", "_task", "_due", "_fired", "_timer", "_timer_at")

    def __init__(self, disconnected: asyncio.Future[None]) -> None:
        self._disconnected = disconnected
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None  # the task in wait(), while it waits
        self._due = NEVER  # time.monotonic() instant the current wait ends
        self._fired = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = NEVER
        disconnected.add_done_callback(self._interrupt)

    async def wait(self, operation: Coroutine[Any, Any, T], due: float = NEVER) -> T:
        """``await operation``, or raise ``Interrupted`` when the client leaves or ``due`` passes.

        ``operation`` must be safe to cancel (see the module docstring). A
        cancellation from elsewhere still propagates as ``CancelledError``.
        """
        if self._disconnected.done():
            operation.close()
            raise Interrupted
        self._due = due
        if due < self._timer_at:
            self._arm(due)
        # With the loop given, current_task() skips get_running_loop(), which on CPython 3.11 makes
        # a getpid() system call each time (loadtest.syscall_census); wait() runs on that loop.
        task = asyncio.current_task(self._loop)
        assert task is not None
        self._task = task
        try:
            result = await operation
        except asyncio.CancelledError:
            if not self._fired:
                raise
            self._fired = False
            if task.uncancel() > 0:  # cancelled from elsewhere as well
                raise
            raise Interrupted from None
        except BaseException:
            if self._fired:  # the operation turned our cancellation into another error
                self._fired = False
                task.uncancel()
            raise
        finally:
            self._task = None
            self._due = NEVER
        if self._fired:  # the operation finished anyway: take our cancellation back
            self._fired = False
            task.uncancel()
        return result

    def close(self) -> None:
        """Stop watching (idempotent)."""
        self._disconnected.remove_done_callback(self._interrupt)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = NEVER

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        # loop.call_at takes the loop's clock; ours is time.monotonic().
        self._timer = self._loop.call_at(self._loop.time() + max(0.0, at - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = NEVER
        due = self._due
        if due == NEVER:
            return  # no wait in progress: the next one arms its own
        if time.monotonic() < due:
            self._arm(due)  # the wait that armed it ended; this one is due later
            return
        self._interrupt()

    def _interrupt(self, _: object = None) -> None:
        task = self._task
        if task is not None and not self._fired:
            self._fired = True
            task.cancel()
