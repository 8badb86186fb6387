"""The job runner: a transport like the SSE and JSON paths, whose "client" is the store.

It consumes one ``Exchange`` (built by ``Runtime.exchange``, so the same breakers, upstream pool
and translator as every other request): ``response.created`` and ``response.queued`` (the Response
``queued``, as the POST stored it), the Response stored ``in_progress``, then ``response.in_progress``
and each batch of events logged (``EventLog``) and handed to the original client's ``LiveFeed`` if
it streams, and at the end the final Response, its output items and the last events in one write —
before the terminal event reaches anyone, so a client that saw it finds the response finished (as
one that saw ``response.in_progress`` finds it at least in progress).

The job's ``stop`` future is the exchange's ``disconnected``: whatever completes it (a cancel, a
lost lease, shutdown, a full log) ends the upstream request at once, as a client leaving would.
How it then ends:

=================  ============================================================================
stop reason        what the store and the live client get
=================  ============================================================================
``cancelled``      already ``cancelled`` by whoever cancelled it; the live stream just ends, and the
                   events it got that the log lacks are logged as the log is closed
``lost``           already ended by someone else (a reaper, a cancel); the same
``shutdown``       ``failed`` (``bodies.SHUTDOWN_MESSAGE``), with ``error`` + ``response.failed``
``log``            ``failed`` (``LOG_FULL_MESSAGE`` / ``STORE_LOST_MESSAGE``), as far as it can be stored
=================  ============================================================================
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import orjson

from ..exchange import Exchange
from ..failures import Failure
from ..relay import Batch, _Keepalive
from ..resources.auth import scrub
from ..runtime import Runtime
from ..state import append_turn
from ..store import Item, NewResponse, Store, StoreError
from ..translate.context import ResponseContext
from ..translate.response import response_error
from . import bodies
from .eventlog import EventLog, JobLost, LogFull, StoreLost
from .feed import LiveFeed
from .registry import Stop

log = logging.getLogger("proxy.background")


@dataclass(slots=True)
class JobRequest:
    """What a job keeps of the request that created it (the key only in memory, for upstream)."""

    owner: str
    ctx: ResponseContext
    chat: dict[str, Any]
    headers: dict[str, str]
    secret: str
    input_items: list[Item]
    conversation_id: str | None
    request_id: str


def encode(batch: Batch) -> tuple[list[bytes], bytes]:
    """Each event's JSON (what the log keeps) and the batch's SSE bytes (what a client reads)."""
    datas = [orjson.dumps(ev) for ev in batch]
    frames = b"".join(b"event: " + ev["type"].encode() + b"\ndata: " + data + b"\n\n" for ev, data in zip(batch, datas))
    return datas, frames


class JobRun:
    """One run of one job (``run`` is what ``Jobs.launch`` awaits)."""

    def __init__(
        self, job: JobRequest, runtime: Runtime, store: Store, worker: str, feed: LiveFeed | None
    ) -> None:
        self.job = job
        self.runtime = runtime
        self.store = store
        self.feed = feed
        self.rid = job.ctx.response_id
        self.outcome = "failed"
        self.log: EventLog | None = None
        self._worker = worker

    async def run(self, stop: Stop) -> None:
        job, ctx = self.job, self.job.ctx
        self.log = events = EventLog(
            self.store, job.owner, self.rid, self._worker, keep_events=ctx.stream,
            on_failure=lambda exc: stop("log"),
        )
        # The backend always streams to a job, streamed to its client or not: a long run is bounded by
        # the silence between chunks (BACKEND_IDLE_TIMEOUT_SECS), not by a whole-call deadline.
        exchange = self.runtime.exchange(
            chat=job.chat, ctx=replace(ctx, stream=True), headers=job.headers, secret=job.secret,
            disconnected=stop.future, emit_events=ctx.stream,
        )
        self.runtime.metrics.background_job("started")
        try:
            async with exchange:
                terminal = await self._generate(exchange, events, stop)
                if terminal is not None:
                    await self._finish(exchange, events, terminal)
        except (JobLost, StoreLost, LogFull) as exc:
            await self._ended_by(exc, exchange)
        finally:
            if self.feed is not None:
                self.feed.close(clean=self.outcome != "broken")
        if self.outcome in ("completed", "incomplete", "failed"):
            self.runtime.metrics.background_job(self.outcome)
        log.info(
            "background_ended: response_id=%s request_id=%s model=%s status=%s",
            self.rid, job.request_id, ctx.model, self.outcome,
        )

    async def _generate(self, exchange: Exchange, events: EventLog, stop: Stop) -> Batch | None:
        """Run the exchange to its terminal batch (returned, not yet published), or to a stop."""
        translator = exchange.translator
        self._publish(translator.queue())
        await events.start(orjson.dumps(exchange.response))
        self._publish(exchange.start())
        try:
            await exchange.open()
        except Failure as failure:
            if stop.reason is None:
                message = scrub(failure.message, self.job.secret)
                return translator.fail(message, failure.code or "server_error", response_code=failure.response_code)
        else:
            async for batch in exchange.batches():
                if isinstance(batch, _Keepalive):
                    if self.feed is not None:
                        self.feed.keepalive()
                elif translator.done:
                    return batch
                else:
                    self._publish(batch)
        reason = stop.reason or "lost"
        if reason == "shutdown":
            return translator.fail(bodies.SHUTDOWN_MESSAGE, "server_error")
        if reason == "log" and events.failure is not None:
            raise events.failure
        raise JobLost(self.rid)  # cancelled, or ended by someone else: already stored as such

    def _publish(self, batch: Batch) -> None:
        assert self.log is not None
        if not batch or isinstance(self.log.failure, JobLost):
            return  # (lost: what the live client got is what the log gets, nothing more)
        datas, frames = encode(batch)
        self.log.add(datas)
        if self.feed is not None:
            self.feed.publish(frames)

    async def _finish(self, exchange: Exchange, events: EventLog, terminal: Batch) -> None:
        final = exchange.response
        status = final["status"]
        datas, frames = encode(terminal)
        output = cast(list[Item], final["output"])  # (the translator's typed items are plain dicts)
        stored = NewResponse(self.rid, orjson.dumps(final), self.job.input_items, output)
        await events.finish(stored, datas, status)
        if self.job.conversation_id is not None:
            await self._append_to_conversation(stored.input_items + stored.output_items)
        self.outcome = status
        if self.feed is not None:
            self.feed.publish(frames)

    async def _append_to_conversation(self, items: Sequence[Item]) -> None:
        assert self.job.conversation_id is not None
        try:
            if not await append_turn(
                self.store, self.job.owner, self.job.conversation_id, list(items), f"response_id={self.rid}"
            ):
                log.warning("response_id=%s: its conversation was deleted meanwhile; not appended", self.rid)
        except StoreError as exc:
            log.error("response_id=%s: appending to its conversation failed: %s", self.rid, exc)

    async def _ended_by(self, exc: Exception, exchange: Exchange) -> None:
        """The job could not end by itself: say so as clearly as the store and the feed still allow."""
        if isinstance(exc, JobLost):
            self.outcome = "ended_elsewhere"  # counted where it was cancelled or reaped
            if self.feed is not None:
                self.feed.close(clean=True)  # (its stream ends now, whatever the store does next)
            assert self.log is not None
            await self.log.close_cancelled()
            return
        message = bodies.LOG_FULL_MESSAGE if isinstance(exc, LogFull) else bodies.STORE_LOST_MESSAGE
        translator = exchange.translator
        tail = [] if translator.done else translator.fail(message, "server_error")
        # Stored without its output and without more events: what could not be stored is the problem.
        doc = dict(exchange.response, status="failed", output=[], completed_at=None)
        doc["error"] = response_error("server_error", message)
        failed = NewResponse(self.rid, orjson.dumps(doc), self.job.input_items, [])
        try:
            if not await self.store.finish_background(self.job.owner, failed, self._worker, 0, [], "failed"):
                self.outcome = "ended_elsewhere"
                return
            self.outcome = "failed"
            log.error("response_id=%s: background job stopped: %s", self.rid, message)
        except StoreError as err:
            self.outcome = "broken"  # counted by the reaper that will end it
            log.error(
                "response_id=%s: background job stopped (%s) and its failure could not be stored (%s); "
                "its lease will run out and a reaper will mark it failed", self.rid, message, err,
            )
        if self.feed is not None and tail:
            self.feed.publish(encode(tail)[1])
