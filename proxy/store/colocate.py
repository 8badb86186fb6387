"""Keep a store thread on the CPU of the event loop that hands it work.

Why: a job handed to a thread on another CPU, and its result handed back, wake an idle CPU
twice per call. In a virtual machine each of those wake-ups is an inter-processor interrupt
and a VM exit, charged to the process as system time. Measured on the 2-vCPU VMs CI runs on
(``python -m loadtest.handoff``): a job's round trip with one SQLite call in it costs about
60 µs of CPU when the two threads run on different CPUs, and 14 µs when they share one (with
the result handed back through ``inbox``, which keeps the loop there). That difference was the
largest part of what storing a response cost on SQLite.

So before each hand-off the caller asks which CPU it runs on (``sched_getcpu``, read from the
vDSO with no system call), and moves the thread there when that changed. A worker's event loop
seldom migrates once its store thread shares its CPU, so the move itself (one
``sched_setaffinity``) happens on about one call in ten (``loadtest.handoff``). The thread stays
on the loop's CPU: the worker's loop and its SQLite work take turns there, as a thread-per-core
server would, instead of bouncing between cores. Where the platform offers neither call, or the
kernel refuses the move (a seccomp filter, a cpuset that shrank), the thread is left where the
scheduler puts it, as before.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable


def _cpu_reader() -> Callable[[], int] | None:
    """libc's ``sched_getcpu`` (glibc and musl have it), or None where there is nothing to follow."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn


_current_cpu = _cpu_reader()


class CpuFollower:
    """Moves one thread (by its ``native_id``) to the CPU of whoever calls ``follow()``."""

    __slots__ = ("_thread_id", "_cpu")

    def __init__(self, thread_id: int | None) -> None:
        self._thread_id = thread_id if _current_cpu is not None else None
        self._cpu = -1

    @property
    def cpu(self) -> int:
        """The CPU the thread was last moved to (-1: never, or following is off)."""
        return self._cpu if self._thread_id is not None else -1

    def follow(self) -> None:
        if self._thread_id is None:
            return
        cpu = _current_cpu()  # type: ignore[misc]  # (not None when a thread id is kept)
        if cpu == self._cpu or cpu < 0:
            return
        try:
            os.sched_setaffinity(self._thread_id, {cpu})
        except OSError:  # refused, or the thread is gone: stop following, leave it to the scheduler
            thread_id, self._thread_id = self._thread_id, None
            try:
                os.sched_setaffinity(thread_id, os.sched_getaffinity(0))
            except OSError:
                pass
            return
        self._cpu = cpu
