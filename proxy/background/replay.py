"""``GET /v1/responses/{id}?stream=true&starting_after=N``: a background response's events again.

The events after ``N`` are read from the store's log, then followed as the job logs more, from
any worker of any instance, until the log closes: the same JSON, so the same sequence numbers, as
the original stream. While nothing comes, an SSE comment every ``keepalive_secs`` keeps the
connection (and intermediaries) alive and notices a client that left. (OpenAI sends an event,
``{"type": "keepalive", "sequence_number": N}``, that the openai SDK has no type for — it comes out
as a ``ResponseAudioDeltaEvent`` — and that stricter SDKs failed on; a comment reaches no client.)
A store that fails while following is retried a few times; then the stream ends without
``[DONE]``, so the client can tell it was cut and resume from the last sequence number it saw.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from ..store import EventPage, Store, StoreUnavailable
from ..translate.sse import DONE, KEEPALIVE
from .bodies import sse_frame

log = logging.getLogger("proxy.background")

RETRIES = 3
RETRY_SECS = 1.0


async def replay(
    store: Store, owner: str, response_id: str, page: EventPage, after: int, *, keepalive_secs: float
) -> AsyncGenerator[bytes, None]:
    """The SSE bytes from ``page`` (the first read, already made) until the log closes."""
    failures = 0
    while True:
        if page.events:
            after += len(page.events)
            yield b"".join(map(sse_frame, page.events))
        elif not page.ended:
            yield KEEPALIVE
        if page.ended:
            yield DONE
            return
        try:
            found = await store.read_events(owner, response_id, after, wait_secs=keepalive_secs)
        except StoreUnavailable as exc:
            failures += 1
            if failures > RETRIES:
                log.warning("response_id=%s: stream resume ends early, the store is unavailable: %s", response_id, exc)
                return
            await asyncio.sleep(RETRY_SECS)
            page = EventPage([], False)
            continue
        if found is None:  # deleted (or expired) while followed
            return
        failures = 0
        page = found
