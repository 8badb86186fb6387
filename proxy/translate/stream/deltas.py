"""The delta of a chat chunk: reasoning, text, refusal and tool-call fragments to their builders.

Every delta field the translator maps is read here, after the shape check
(``shape``) admitted the chunk: reasoning from ``reasoning_content``, ``reasoning`` or
``reasoning_details`` (``parts``); content as a string (through the ``<think>``
splitter, with logprobs) or as a list of parts; refusals; url citations
(``annotations``); tool calls, also in the legacy ``function_call`` form. The
common one-field deltas take fast paths that look nothing else up, and a token
for the open item goes straight to its builder.
"""
from __future__ import annotations

from typing import Any

from ..context import ResponseContext
from ..shapes import ItemStatus
from ..think import ThinkSplitter
from .message import convert_logprobs
from .parts import content_parts, reasoning_details_text, url_citations
from .segments import Segments
from .tool_calls import ToolCalls


class DeltaReader:
    """Routes one response's deltas, and closes its items at the end (``think`` flushed first)."""

    __slots__ = ("think", "unmapped", "_segments", "_calls", "_message", "_reasoning", "_logprobs")

    def __init__(self, ctx: ResponseContext, segments: Segments, calls: ToolCalls, unmapped: set[str]) -> None:
        self.think = ThinkSplitter()
        self.unmapped = unmapped
        self._segments = segments
        self._calls = calls
        # The open segment's builder is called directly for each token (the fast paths in read).
        self._message = segments.message
        self._reasoning = segments.reasoning
        self._logprobs = ctx.include_logprobs

    def read(self, delta: dict[str, Any], choice: dict[str, Any]) -> None:
        """One non-empty, shape-checked delta of choice 0."""
        content = delta.get("content")
        # Most deltas have one field ({"content": token}, {"reasoning_content": token},
        # {"tool_calls": [fragment]}): once that is handled there is nothing else to look up.
        single = len(delta) == 1
        if content is None or not single:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if not single:
                details = delta.get("reasoning_details")
                if details:  # read once: OpenRouter sends the same text as `reasoning` too
                    text = reasoning_details_text(details, self.unmapped)
                    if not (reasoning and type(reasoning) is str):
                        reasoning = text
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
                details = delta.get("reasoning_details")
                if details:
                    text = reasoning_details_text(details, self.unmapped)
                    if text:
                        self._segments.reason(text)
                    return
        if content:
            if type(content) is str:
                if self._logprobs or not self.think.passthrough or not self._message.is_open:
                    self._content(content, choice)
                else:  # the common token: straight to the open message
                    self._message.text(content, None)
            else:  # a list of parts (shape-checked): Mistral's thinking parts, then text
                for is_reasoning, text in content_parts(content):
                    if is_reasoning:
                        self._segments.reason(text)
                    else:
                        self._content(text, choice)
        if single and content is not None:
            return
        refusal = delta.get("refusal")
        if refusal and type(refusal) is str:
            self._segments.refusal(refusal)
        annotations = delta.get("annotations")
        if annotations:  # after the delta's own text, which they may point into
            citations = url_citations(annotations, self.unmapped)
            if citations:
                self._segments.annotate(citations)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._calls.feed(tool_calls)
        else:
            fc = delta.get("function_call")  # legacy single-call form
            if fc and (fc.get("name") or fc.get("arguments")):
                self._calls.feed([{"index": 0, "function": fc}])

    def close_all(self, *, failed: bool, incomplete: bool, last: int) -> None:
        """Close every open item, the text the ``<think>`` splitter held first.

        On finish the last item (output_index ``last``) gets status ``incomplete`` when the
        response is ``incomplete``; on failure every item still open is ``incomplete``.
        """
        r, c = self.think.flush()
        if r:
            self._segments.reason(r)
        if c:
            self._segments.text(c, None)
        self._calls.open_ready(force=True)

        def status(index: int) -> ItemStatus:
            return "incomplete" if failed or (incomplete and index == last) else "completed"

        self._calls.close_all(status)
        self._segments.close_all(status)

    def token(self, content: str, choice: dict[str, Any]) -> None:
        """The common delta, ``{"content": token}`` with a non-empty token (``feed`` checked it)."""
        if self._logprobs or not self.think.passthrough or not self._message.is_open:
            self._content(content, choice)
        else:  # straight to the open message
            self._message.text(content, None)

    def _content(self, content: str, choice: dict[str, Any]) -> None:
        """Message text: through the ``<think>`` splitter, with the choice's logprobs."""
        lp = None
        if self._logprobs:
            logprobs = choice.get("logprobs")
            if type(logprobs) is dict:
                lp = convert_logprobs(logprobs.get("content"))
        think = self.think
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
