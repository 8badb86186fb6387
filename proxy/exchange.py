"""One Responses request's round trip to the backend, and the owner of what it holds.

An ``Exchange`` takes three resources — a circuit-breaker permit, an open
upstream response (one of the worker's pooled connections) and a task watching
for the client to leave — and releases each exactly once in ``aclose()``,
whatever happened: a normal end, a failure, the client leaving, the request
task being cancelled, or a stream that no one ever iterated. The request scope
(``proxy.resources.scope``) closes every exchange of its request after the
response is sent, so a transport that forgets, or never runs, leaks nothing.

Transports consume it: the SSE and JSON paths of ``POST /v1/responses`` (and
later background jobs and the WebSocket mode) iterate ``batches()`` and encode
or store the events; none of them touches the breaker or the upstream pool.
``on_terminal`` runs before the batch holding the terminal event is handed
out — the place where a stored response is written, so a client that saw the
terminal event can always find it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import httpx
import orjson

from .breaker import BreakerOpen, Breakers, Permit
from .failures import Cause, Failure, Verdict, client_gone, internal
from .interrupt import NEVER, Interrupt, Interrupted
from .metrics import Metrics
from .relay import KEEPALIVE, Batch, Outcome, _Keepalive, redactor, relay
from .settings import Settings
from .translate.context import ResponseContext
from .translate.shapes import Response
from .translate.stream import StreamTranslator
from .upstream import Upstream

TerminalHook = Callable[[Response], Awaitable[None]]

log = logging.getLogger("proxy.exchange")


class Exchange:
    """See the module docstring. Use as ``async with Exchange(...) as ex:``."""

    __slots__ = (
        "ctx", "translator", "outcome", "_chat", "_headers", "_breakers", "_metrics", "_upstream", "_settings",
        "_secret", "_masked", "_disconnected", "_deadline", "_permit", "_response", "_closed", "_on_terminal",
        "_created", "_interrupt",
    )

    live = 0  # exchanges of this worker not yet closed (leak checks, metrics)

    def __init__(
        self,
        *,
        chat: dict[str, Any],
        ctx: ResponseContext,
        headers: dict[str, str],
        breakers: Breakers,
        metrics: Metrics,
        upstream: Upstream,
        settings: Settings,
        secret: str,
        masked_secret: str,
        disconnected: asyncio.Future[None],
        emit_events: bool,
        on_terminal: TerminalHook | None = None,
    ) -> None:
        self.ctx = ctx
        self.translator = StreamTranslator(ctx, emit_events=emit_events)
        self.outcome = Outcome()
        if not ctx.stream and settings.json_upstream == "json":
            # A JSON client's answer is asked for as one JSON body: its cost is then
            # flat in the answer's length (no chunk to parse, translate and drop).
            chat["stream"] = False
            chat.pop("stream_options", None)
            headers["accept"] = "application/json"
        self._chat = chat
        self._headers = headers
        self._breakers = breakers
        self._metrics = metrics
        self._created = time.perf_counter()
        self._upstream = upstream
        self._settings = settings
        self._secret = secret
        self._masked = masked_secret
        self._disconnected = disconnected
        self._deadline = None if ctx.stream else time.monotonic() + settings.backend_timeout_secs
        self._permit: Permit | None = None
        self._response: httpx.Response | None = None
        self._closed = False
        self._on_terminal = on_terminal
        self._interrupt: Interrupt | None = None  # the open's and the relay's waits share it
        Exchange.live += 1

    @property
    def failure(self) -> Failure | None:
        return self.outcome.failure

    @property
    def response(self) -> Response:
        """The Response object: in progress until the terminal event, final after."""
        return self.translator.response

    async def __aenter__(self) -> Exchange:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Take a breaker permit and open the upstream stream.

        Raises ``Failure`` (breaker open, backend refused or unreachable, pool
        full, no answer in time) or, when the client left while we waited,
        ``Failure(CLIENT_GONE)``; in every case nothing is held any more.
        """
        try:
            try:
                self._permit = self._breakers.acquire(self.ctx.model)
            except BreakerOpen as exc:
                what = f"Model {exc.model!r} is" if exc.scope == "model" else "The backend is"
                raise Failure(
                    Cause.BREAKER_OPEN, f"{what} failing and the circuit breaker is open; retry later.",
                    "circuit_open", headers={"Retry-After": str(exc.retry_after)},
                ) from None
            self._response = await self._open_racing()
        except Failure as failure:
            self.outcome.failure = failure
            await self.aclose()
            raise
        except BaseException:
            await self.aclose()
            raise

    def start(self) -> Batch:
        """``response.created`` and ``response.in_progress`` (nothing in JSON mode; only
        ``response.in_progress`` after the translator's ``queue()``, a background job's head)."""
        return self.translator.start()

    async def batches(self, *, first_wait_secs: float | None = None) -> AsyncGenerator[Batch | _Keepalive, None]:
        """The translated events, one batch per upstream read, then nothing after the terminal one.

        Yields ``KEEPALIVE`` when the backend is silent (streams only; the first
        one after ``first_wait_secs`` when that is sooner). Ends
        early, without a terminal event, when the client leaves. A bug of ours
        still ends the response with a terminal event (``failure`` says INTERNAL),
        and the iteration ends normally after it.
        """
        assert self._response is not None, "open() first"
        settings = self._settings
        translator = self.translator
        timed = not self.ctx.stream  # time to first event: streams only
        # Closed here, not left to the loop: a transport stops asking after the terminal batch,
        # so the relay is still suspended at its last yield; dropped, the loop's async-generator
        # finalizer would close it in a task of its own (one per request).
        relaying = relay(
            self._response, translator, self.outcome,
            disconnected=self._disconnected,
            keepalive_secs=settings.keepalive_secs if self.ctx.stream else None,
            first_keepalive_secs=first_wait_secs,
            deadline=self._deadline,
            max_event_bytes=settings.max_event_bytes,
            idle_timeout_secs=settings.backend_idle_timeout_secs,
            redact=redactor(self._secret, self._masked),
            interrupt=self._interrupt,
        )
        try:
            async for batch in relaying:
                if not timed and batch is not KEEPALIVE:
                    timed = True
                    self._metrics.first_event("/v1/responses", time.perf_counter() - self._created)
                if batch is not KEEPALIVE and translator.done and self._on_terminal is not None:
                    await self._on_terminal(translator.response)
                yield batch
        except Exception:
            if translator.done:
                raise
            # A bug of ours (Cause.INTERNAL) must still end the client's answer: the
            # stream with an `error` event and response.failed, then [DONE] and a clean
            # close (re-raising here broke the connection under the client right after
            # response.failed), a JSON client with a 500; it says nothing about the
            # backend's health (the verdict is NONE), and it is logged here, once.
            log.exception("response_id=%s model=%s: internal error while relaying the answer",
                          self.ctx.response_id, self.ctx.model)
            failure = internal()
            self.outcome.failure = failure
            batch = translator.fail(failure.message, failure.code or "server_error",
                                    response_code=failure.response_code)
            if self._on_terminal is not None:
                await self._on_terminal(translator.response)
            yield batch
        finally:
            await relaying.aclose()

    async def run_to_end(self) -> Response:
        """The whole exchange with nobody streaming it (compaction's summary, a token count):
        open, read every batch, close; the finished Response, or raise its ``Failure``."""
        async with self:
            await self.open()
            async for _ in self.batches():
                pass
        if self.failure is not None:
            raise self.failure
        return self.response

    def verdict(self) -> Verdict:
        """What this exchange says about the backend (read by ``aclose``)."""
        failure = self.outcome.failure
        if failure is not None:
            return failure.verdict
        return Verdict.SUCCESS if self.translator.done else Verdict.NONE

    async def aclose(self) -> None:
        """Release everything this exchange holds; safe to call any number of times."""
        if self._closed:
            return
        self._closed = True
        Exchange.live -= 1
        self._disconnected.cancel()
        if self._interrupt is not None:
            self._interrupt.close()
        try:
            if self._response is not None:
                await self._response.aclose()
        finally:
            self._report()

    def _report(self) -> None:
        permit, self._permit = self._permit, None
        if permit is None:
            return
        self._breakers.record(permit, self.verdict())
        failure = self.outcome.failure
        if failure is not None and failure.kind is not None:
            self._metrics.upstream_error(failure.kind)

    async def _open_racing(self) -> httpx.Response:
        """Open upstream, abandoned when the client leaves or (JSON mode) the deadline passes.

        The open is awaited in this task and interrupted (``proxy.interrupt``):
        cancelling it closes its connection and frees its slot (``Upstream.open``),
        which is what abandoning it means; no task is raced against the client.
        """
        read_timeout = None if self._chat["stream"] else self._settings.backend_timeout_secs
        opening = self._upstream.open(orjson.dumps(self._chat), self._headers, read_timeout)
        interrupt = self._interrupt = Interrupt(self._disconnected)
        try:
            return await interrupt.wait(opening, self._deadline if self._deadline is not None else NEVER)
        except Interrupted:
            if self._disconnected.done():
                raise client_gone() from None
            raise Failure(
                Cause.BACKEND_TIMEOUT, "The backend did not answer in time.", "backend_timeout", kind="timeout"
            ) from None
