"""``StreamTranslator``: reads chat chunks and drives the item builders.

It parses each chunk (choice 0 wherever it sits, the delta's fields, the
``<think>`` splitter over content, ``finish_reason``, usage, error chunks) and
hands each piece to its part: ``segments`` (reasoning and message, at most
one open), ``tool_calls`` (fragments matched to their call). Those parts'
builders shape the items, and the emitter (``events``) the events.

Calls the client may not get (outside ``allowed_tools``, past
``max_tool_calls``, never named) are in ``dropped_calls`` and ``warnings``.

``finish_reason`` closes every open item; terminal events come only from
``finish()``, because the usage-only chunk (``choices: []``) arrives after the
finish reason. ``finish()`` without a finish reason means the upstream stream
was cut: that is a failure, never ``completed``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from ..context import ResponseContext
from ..ids import new_id as random_id
from ..response import response_error, response_object
from ..shapes import Event, ItemStatus, Response
from ..think import ThinkSplitter
from ..usage import map_usage
from .chunks import FAILED_REASONS, INCOMPLETE_REASONS, MALFORMED, TRUNCATED_MESSAGE, choice_zero, upstream_error
from .events import Emitter
from .message import convert_logprobs
from .segments import Segments
from .silent import SilentEmitter
from .tool_calls import ToolCalls

__all__ = ["TRUNCATED_MESSAGE", "StreamTranslator"]


class Phase(Enum):
    STREAMING = 0  # reading deltas
    FINISHED = 1  # finish_reason seen: items closed, waiting for usage and the end
    DONE = 2  # terminal event sent; every call is a no-op


_STREAMING, _FINISHED, _DONE = Phase.STREAMING, Phase.FINISHED, Phase.DONE


class StreamTranslator:
    """Chat chunks in, Responses events out; ``response`` is the Response so far.

    ``emit_events=False`` (JSON mode) runs the same state machine without
    building events. ``clock`` (seconds) stamps ``completed_at``; ``new_id``
    mints item and call ids (``new_id("msg")`` → ``"msg_…"``).
    """

    def __init__(
        self,
        ctx: ResponseContext,
        *,
        emit_events: bool = True,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[str], str] = random_id,
    ) -> None:
        self.ctx = ctx
        self._emit = emit_events
        self._clock = clock
        self._em = em = Emitter() if emit_events else SilentEmitter()
        self._think = ThinkSplitter()
        self._segments = segments = Segments(ctx, em, new_id)
        # The open segment's builder is called directly for each token (the fast paths in _delta).
        self._message = segments.message
        self._reasoning = segments.reasoning
        self._logprobs = ctx.include_logprobs
        self._calls = ToolCalls(ctx, em, new_id, segments.close)
        # What the translator tells its caller besides events: calls kept from
        # the client (by name), and why, for the log.
        self.dropped_calls = self._calls.dropped
        self.warnings = self._calls.warnings
        self._phase = _STREAMING
        self._incomplete: str | None = None  # the incomplete_details reason, once finished
        self._usage: Any = None
        self._response = response_object(ctx, status="in_progress")

    # ------------------------------------------------------------------ API

    @property
    def response(self) -> Response:
        return self._response

    @property
    def done(self) -> bool:
        return self._phase is _DONE

    def start(self) -> list[Event]:
        """``response.created`` and ``response.in_progress`` with the in-progress snapshot."""
        if not self._emit or self._phase is _DONE:
            return []
        em = self._em
        out = em.out = []
        em.response_created(response_object(self.ctx, status="in_progress"))
        em.response_in_progress(response_object(self.ctx, status="in_progress"))
        return out

    def feed(self, chunk: Any) -> list[Event]:
        """Translate one parsed ``chat.completion.chunk`` (any JSON value: a bad one fails the response)."""
        phase = self._phase
        if phase is _DONE:
            return []
        out: list[Event] = []
        self._em.out = out
        try:
            if "error" in chunk and chunk["error"]:
                return self._fail(*upstream_error(chunk["error"]))
            usage = chunk.get("usage")
            if usage:
                self._usage = usage
            choices = chunk.get("choices")
            if not choices or phase is not _STREAMING:
                return out
            choice = choices[0]
            if choice.get("index", 0) not in (0, None):
                # n > 1 (a backend default we never ask for): only choice 0
                # is translated, wherever it sits in the list.
                choice = choice_zero(choices)
                if choice is None:
                    return out
            delta = choice.get("delta")
            if delta:
                self._delta(delta, choice)
            finish = choice.get("finish_reason")
            if finish:
                if finish in FAILED_REASONS:
                    return self._fail(f"upstream reported finish_reason {finish!r}", "server_error")
                self._phase = _FINISHED
                self._incomplete = INCOMPLETE_REASONS.get(finish)
                self._close_all(failed=False)
        except MALFORMED:
            # Events already built from this chunk keep their sequence numbers.
            return self._fail("malformed chunk from upstream", "server_error")
        return out

    def finish(self) -> list[Event]:
        """Upstream ended: close open items and emit exactly one terminal event."""
        if self._phase is _DONE:
            return []
        em = self._em
        out = em.out = []
        if self._phase is _STREAMING:
            return self._fail(TRUNCATED_MESSAGE, "server_error")
        usage = map_usage(self._usage)
        if self._incomplete:
            self._response = response_object(self.ctx, status="incomplete", output=em.output(), usage=usage,
                                             incomplete_details={"reason": self._incomplete})
            em.response_incomplete(self._response)
        else:
            self._response = response_object(self.ctx, status="completed", output=em.output(), usage=usage,
                                             completed_at=int(self._clock()))
            em.response_completed(self._response)
        self._phase = _DONE
        return out

    def fail(self, message: str, code: str = "server_error") -> list[Event]:
        """End the response as failed: an ``error`` event, then ``response.failed``."""
        if self._phase is _DONE:
            return []
        self._em.out = []
        return self._fail(message, code)

    # ------------------------------------------------------------- endings

    def _fail(self, message: str, code: str) -> list[Event]:
        em = self._em
        self._close_all(failed=True)
        em.error(code, message)
        self._response = response_object(self.ctx, status="failed", output=em.output(),
                                         usage=map_usage(self._usage), error=response_error(code, message))
        em.response_failed(self._response)
        self._phase = _DONE
        return em.out

    def _close_all(self, *, failed: bool) -> None:
        """Close every open item (finish_reason, or failure).

        On finish the last item gets status ``incomplete`` when the response is
        incomplete; on failure every item still open is ``incomplete``.
        """
        r, c = self._think.flush()
        if r:
            self._segments.reason(r)
        if c:
            self._segments.text(c, None)
        self._calls.open_ready(force=True)
        last = self._em.last_index
        incomplete = self._incomplete is not None

        def status(index: int) -> ItemStatus:
            return "incomplete" if failed or (incomplete and index == last) else "completed"

        self._calls.close_all(status)
        self._segments.close_all(status)

    # --------------------------------------------------------------- deltas

    def _delta(self, delta: Any, choice: Any) -> None:
        content = delta.get("content")
        # Most deltas have one field ({"content": token}, {"reasoning_content": token},
        # {"tool_calls": [fragment]}): once that is handled there is nothing else to look up.
        single = len(delta) == 1
        if content is None or not single:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning and type(reasoning) is str:
                if self._reasoning.is_open:  # straight to the open item
                    self._reasoning.delta(reasoning)
                else:
                    self._segments.reason(reasoning)
                if single:
                    return
            elif single:
                tool_calls = delta.get("tool_calls")
                if tool_calls:
                    self._calls.feed(tool_calls)
                    return
        if content:
            if type(content) is list:  # rare: content parts in a delta
                content = "".join(p.get("text") or "" for p in content if type(p) is dict)
            if type(content) is str:
                lp = None
                if self._logprobs:
                    logprobs = choice.get("logprobs")
                    if type(logprobs) is dict:
                        lp = convert_logprobs(logprobs.get("content"))
                think = self._think
                if think.passthrough:
                    message = self._message
                    if message.is_open:  # the common case: straight to the open message
                        message.text(content, lp)
                    else:
                        self._segments.text(content, lp)
                else:
                    r, c = think.feed(content)
                    if r:
                        self._segments.reason(r)
                    if c:
                        self._segments.text(c, lp)
        if single and content is not None:
            return
        refusal = delta.get("refusal")
        if refusal and type(refusal) is str:
            self._segments.refusal(refusal)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._calls.feed(tool_calls)
        else:
            fc = delta.get("function_call")  # legacy single-call form
            if fc:
                self._calls.feed([{"index": 0, "function": fc}])
