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
finish reason.

How a stream ends (issue 12): an error always wins — an ``{"error"}`` chunk
fails the response with the server's message, whatever follows — except after a
finish reason, which stands (usage is still read from the error chunk). A clean
end without a finish reason (``finish(clean=True)`` for ``[DONE]`` or a whole
JSON body; the connection closing right after a usage-only chunk) is completed,
as if the backend had sent ``tool_calls`` (calls open) or ``stop``. Any other end
is a stream cut short: failed, never ``completed``. ``failure`` says why a
response failed, so the caller's taxonomy does not have to guess.

Every chunk's shape is checked before it is read (``shape``); what the
translator cannot map is named in ``unmapped`` for the edge's debug log.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from ..context import ResponseContext
from ..ids import new_id as random_id
from ..response import response_error, response_object
from ..shapes import Event, Response, Usage
from ..usage import map_usage
from .chunks import FAILED_REASONS, INCOMPLETE_REASONS, TRUNCATED_MESSAGE, StreamFailure, upstream_error
from .deltas import DeltaReader
from .events import Emitter
from .segments import Segments
from .shape import (
    CHOICE_KEYS,
    MalformedChunk,
    check_delta,
    choice_known,
    chunk_known,
    chunk_usage,
    extras,
    late_choices,
    other_choices,
    unmapped_usage,
)
from .silent import SilentEmitter
from .tool_calls import ToolCalls

__all__ = ["TRUNCATED_MESSAGE", "StreamFailure", "StreamTranslator"]


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
        self._segments = segments = Segments(ctx, em, new_id)
        self._calls = calls = ToolCalls(ctx, em, new_id, segments.close)
        # What the translator tells its caller besides events: calls kept from
        # the client (by name), and why, for the log.
        self.dropped_calls = self._calls.dropped
        self.warnings = self._calls.warnings
        # Why the response failed, when the translator failed it (None after fail()).
        self.failure: StreamFailure | None = None
        # Paths of what the backend sent that no part of the Response carries.
        self.unmapped: set[str] = set()
        self._deltas = deltas = DeltaReader(ctx, segments, calls, self.unmapped)
        self._think = deltas.think
        self._read_delta = deltas.read
        self._token = deltas.token
        self._message = segments.message
        self._logprobs = ctx.include_logprobs
        # The finish reason, as sent or (a clean end without one) inferred.
        self.finish_reason: str | None = None
        self._clean_eof = False  # the last chunk carried usage and nothing else
        self._phase = _STREAMING
        self.done = False  # the terminal event is sent (an attribute: the relay reads it per chunk)
        self._incomplete: str | None = None  # the incomplete_details reason, once finished
        self._usage: dict[str, Any] | None = None  # the backend's own (shape.chunk_usage)
        self._response = response_object(ctx, status="in_progress")
        self._queued = False  # queue() sent the head: created and queued

    # ------------------------------------------------------------------ API

    @property
    def response(self) -> Response:
        return self._response

    @property
    def chat_usage(self) -> dict[str, Any] | None:
        """The backend's own ``usage``, as it sent it (None when it sent none): the Response's
        usage is zeros then, which a caller that needs the count (input_tokens) must not take."""
        return self._usage

    def queue(self) -> list[Event]:
        """``response.created`` and ``response.queued``, each with the Response ``queued``: how a
        background response's stream starts (as OpenAI's does), before its job begins; ``start()``
        then sends ``response.in_progress`` alone. Call it before ``start()``, or not at all."""
        if not self._emit or self._phase is _DONE or self._queued:
            return []
        self._queued = True
        em = self._em
        out = em.out = []
        # Two fresh snapshots: the same dicts as the queued Response the background POST stores.
        em.response_created(response_object(self.ctx, status="queued"))
        em.response_queued(response_object(self.ctx, status="queued"))
        return out

    def start(self) -> list[Event]:
        """``response.created`` and ``response.in_progress`` with the in-progress snapshot
        (``response.in_progress`` alone after ``queue()``: the response was created queued)."""
        if not self._emit or self._phase is _DONE:
            return []
        em = self._em
        out = em.out = []
        # Copies of the in-progress snapshot, each with its own output list: the same dicts
        # response_object builds (whose nested values are the context's, shared by all).
        if not self._queued:
            created = self._response.copy()
            created["output"] = []
            em.response_created(created)
        in_progress = self._response.copy()
        in_progress["output"] = []
        em.response_in_progress(in_progress)
        return out

    def feed(self, chunk: Any, into: list[Event] | None = None) -> list[Event]:
        """Translate one parsed ``chat.completion.chunk`` (any JSON value: a bad one fails the response).

        The events are appended to ``into`` when given (the caller's batch: no list per chunk), and returned.
        """
        out: list[Event] = [] if into is None else into
        phase = self._phase
        if phase is _DONE:
            return out
        self._em.out = out
        if type(chunk) is not dict:
            return self._failed(StreamFailure("malformed", "malformed chunk from upstream: not a JSON object"))
        usage = False
        if chunk.get("usage") or not chunk_known(chunk):  # most chunks have neither (or a null usage)
            usage = self._read_usage(chunk)
        err = chunk.get("error")
        if err:
            return self._error(err, None, None)
        if phase is not _STREAMING:
            if chunk.get("choices"):
                late_choices(chunk, self.unmapped)
            return out
        choices = chunk.get("choices")
        if not choices:
            self._clean_eof = usage
            return out
        # The shape check (shape.py), before anything of the chunk is used; inline for
        # the common chunk (one choice, one token), in shape's helpers for the rest.
        try:
            if type(choices) is not list:
                raise MalformedChunk("choices")
            choice = choices[0]
            if type(choice) is not dict:
                raise MalformedChunk("choices[]")
            if len(choices) > 1 or choice.get("index", 0) not in (0, None):
                zero = other_choices(choices, self.unmapped)
                if zero is None:
                    return out
                choice = zero
            if not choice_known(choice):
                extras(choice, CHOICE_KEYS, "choices[].", self.unmapped)
            delta = choice.get("delta")
            finish = choice.get("finish_reason")
            if finish and type(finish) is not str:
                raise MalformedChunk("choices[].finish_reason")
            token = None  # the text of the common delta, {"content": token}
            if delta:
                if type(delta) is not dict:
                    raise MalformedChunk("choices[].delta")
                if len(delta) != 1:
                    check_delta(delta, self.unmapped)
                else:
                    token = delta.get("content")
                    # One reasoning token needs no check either: it is read only if it is a string.
                    if type(token) is not str:
                        token = None
                        if type(delta.get("reasoning_content")) is not str:
                            check_delta(delta, self.unmapped)
        except MalformedChunk as exc:
            return self._failed(StreamFailure("malformed", f"malformed chunk from upstream: {exc.args[0]}"))
        if token is not None:
            if token:
                message = self._message
                if message.is_open and self._think.passthrough and not self._logprobs:
                    message.text(token, None)  # the common token: straight to the open message
                else:
                    self._token(token, choice)
        elif delta:
            self._read_delta(delta, choice)
        if finish:
            if finish in FAILED_REASONS:
                return self._failed(StreamFailure("finish_error", f"upstream reported finish_reason {finish!r}",
                                                  finish_reason=finish))
            self._finished(finish)
        else:
            self._clean_eof = usage and not delta
        return out

    def feed_error(self, chunk: dict[str, Any], *, code: str, response_code: str) -> list[Event]:
        """A chunk whose ``error`` the caller has classified: the same as ``feed``, but should
        it fail the response, the ``error`` event says ``code`` and ``response.failed``
        ``response_code`` (the openai SDK's enum: e.g. ``invalid_prompt`` for a request the
        backend refused), as the caller's taxonomy decides."""
        if self._phase is _DONE:
            return []
        self._em.out = []
        self._read_usage(chunk)
        return self._error(chunk.get("error"), code, response_code)

    def finish(self, *, clean: bool = False) -> list[Event]:
        """Upstream ended: close open items and emit exactly one terminal event.

        ``clean``: the backend said it was done (``[DONE]``, a whole JSON body). Else
        the connection closed, which is a clean end only right after a usage-only chunk.
        """
        if self._phase is _DONE:
            return []
        em = self._em
        out = em.out = []
        if self._phase is _STREAMING:
            if not (clean or self._clean_eof):
                return self._failed(StreamFailure("truncated", TRUNCATED_MESSAGE))
            self._finished("tool_calls" if self._calls.has_open() else "stop")
        usage = self._usage_out()
        if self._incomplete:
            self._response = response_object(self.ctx, status="incomplete", output=em.output(), usage=usage,
                                             incomplete_details={"reason": self._incomplete})
            em.response_incomplete(self._response)
        else:
            self._response = response_object(self.ctx, status="completed", output=em.output(), usage=usage,
                                             completed_at=int(self._clock()))
            em.response_completed(self._response)
        self._phase = _DONE
        self.done = True
        return out

    def fail(self, message: str, code: str = "server_error", *, response_code: str | None = None) -> list[Event]:
        """End the response as failed: an ``error`` event (``code``), then ``response.failed``.

        ``response_code`` is ``response.failed``'s ``error.code``, which must be one of the
        openai SDK's values; by default ``code`` when it is one, else ``server_error``.
        """
        if self._phase is _DONE:
            return []
        self._em.out = []
        return self._fail(message, code, response_code)

    # ------------------------------------------------------------- endings

    def _read_usage(self, chunk: dict[str, Any]) -> bool:
        """Keep the chunk's usage (``shape.chunk_usage``); True if it had usage."""
        usage = chunk_usage(chunk, self.unmapped)
        if usage is None:
            return False
        self._usage = usage
        return True

    def _error(self, err: Any, code: str | None, response_code: str | None) -> list[Event]:
        if self._phase is _FINISHED:
            # The finish reason stands (OpenRouter: "Token limit reached" after "length").
            self.unmapped.add("error (after finish_reason)")
            return self._em.out
        return self._failed(upstream_error(err), code, response_code)

    def _finished(self, finish: str) -> None:
        self._phase = _FINISHED
        self.finish_reason = finish
        self._incomplete = INCOMPLETE_REASONS.get(finish)
        self._close_all(failed=False)

    def _failed(self, failure: StreamFailure, code: str | None = None,
                response_code: str | None = None) -> list[Event]:
        self.failure = failure
        return self._fail(failure.message, code or failure.code, response_code)

    def _fail(self, message: str, code: str, response_code: str | None) -> list[Event]:
        em = self._em
        self._close_all(failed=True)
        em.error(code, message)
        error = response_error(code, message) if response_code is None else response_error(response_code, message)
        self._response = response_object(self.ctx, status="failed", output=em.output(), usage=self._usage_out(),
                                         error=error)
        em.response_failed(self._response)
        self._phase = _DONE
        self.done = True
        return em.out

    def _usage_out(self) -> Usage:
        if self._usage is not None:
            unmapped_usage(self._usage, self.unmapped)
        return map_usage(self._usage)

    def _close_all(self, *, failed: bool) -> None:
        """Close every open item (finish_reason, or failure): ``DeltaReader.close_all``."""
        self._deltas.close_all(failed=failed, incomplete=self._incomplete is not None, last=self._em.last_index)
