"""Results from store threads back to one event loop, woken through a socket.

Why not ``loop.call_soon_threadsafe``: it wakes the loop through an eventfd (uvloop, libuv)
whose wake-up gives the scheduler no hint that the waker is about to sleep, so a loop woken
while the store thread still runs on its CPU is moved to another, idle one; the store thread
then follows it (``colocate``), and every call pays for waking an idle CPU again. A write to a
Unix socket wakes its reader "synchronously" (the kernel's ``WF_SYNC``: the waker is about to
block), and the loop stays on the CPU it shares with the store thread. Measured on CI's 2-vCPU
VMs, a job's round trip with a SQLite call in it (``python -m loadtest.handoff``, 2026-12-03):
60 µs of CPU with ``call_soon_threadsafe`` and no colocation, 44 µs colocated with it (the loop
moved on 95% of calls, the thread after it), 14 µs colocated with this inbox (11%).

One byte is written per post, after the post is queued, so the loop finds everything posted
before the byte it reads; a post whose byte cannot be written (the socket's buffer full) is
still found, as the bytes already there wake the loop. Bytes and posts are not matched one to
one: a drain settles every post queued, and a later wake-up may find none.
"""
from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import Any

Post = tuple[Callable[..., None], tuple[Any, ...]]


class Inbox:
    """``post(fn, *args)`` from any thread runs ``fn(*args)`` on ``loop``, in posting order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._posts: collections.deque[Post] = collections.deque()
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        loop.add_reader(self._rsock.fileno(), self._drain)

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Called on a store thread; never blocks. ``OSError`` once the inbox is closed."""
        self._posts.append((fn, args))
        try:
            self._wsock.send(b"\0")
        except BlockingIOError:  # the buffer is full of bytes not read yet: the loop will drain this too
            pass

    def _drain(self) -> None:
        try:
            self._rsock.recv(4096)
        except (BlockingIOError, InterruptedError):
            pass
        posts = self._posts
        while posts:
            fn, args = posts.popleft()
            try:
                fn(*args)
            except Exception as exc:  # one post's failure must not strand the others
                self.loop.call_exception_handler({"message": "store inbox: a posted callback failed", "exception": exc})

    def close(self) -> None:
        """Stop listening (on the loop's thread, or once the loop is closed) and close both ends."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self._rsock.fileno())
        self._rsock.close()
        self._wsock.close()
