"""The original client's live view of a streamed background job, in the worker running it.

The job publishes each batch's SSE bytes here as it logs them; the ``POST`` that created the job
reads them from its subscription, so that client waits for no store round trip. When it
disconnects it just stops reading: the job goes on, and ``GET …?stream=true`` resumes from the
store's log, which holds the same events with the same sequence numbers.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

KEEPALIVE: Final = b""  # a silent backend: the reader may send an SSE comment
_END: Final = None


class LiveFeed:
    """A job's SSE bytes for the one subscriber that created it (a queue; nothing is dropped)."""

    __slots__ = ("_queue", "_closed", "clean")

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False
        self.clean = False  # ended because the job ended (not because the feed broke)

    def publish(self, frames: bytes) -> None:
        if not self._closed and frames:
            self._queue.put_nowait(frames)

    def keepalive(self) -> None:
        if not self._closed:
            self._queue.put_nowait(KEEPALIVE)

    def close(self, *, clean: bool) -> None:
        """No more frames: ``clean`` when the job ended (its last frames are in), not when it broke."""
        if not self._closed:
            self._closed = True
            self.clean = clean
            self._queue.put_nowait(_END)

    async def frames(self) -> AsyncIterator[bytes]:
        """The frames as they come (``KEEPALIVE`` for a silent stretch), until the feed closes."""
        while (frames := await self._queue.get()) is not _END:
            yield frames
