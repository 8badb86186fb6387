"""Reasoning and message: the two "segments", of which at most one is open.

Output order: a reasoning item, then a message item (only once there is
non-whitespace text or a refusal), then one item per tool call in order of
first appearance. Switching from one segment to the other (or starting a tool
call) closes the open segment, so events of one segment are never interleaved
with another's and a late segment simply becomes a new item with the next
``output_index`` (reasoning → text → reasoning gives three items).
"""
from __future__ import annotations

from collections.abc import Callable

from ..context import ResponseContext
from ..shapes import ItemStatus, Logprob, UrlCitation
from .events import Emitter
from .message import MessageBuilder
from .reasoning import ReasoningSummary, ReasoningText


class Segments:
    """Routes reasoning, text and refusals to their item, opening and closing as they alternate."""

    __slots__ = ("message", "reasoning")

    def __init__(self, ctx: ResponseContext, emitter: Emitter, new_id: Callable[[str], str]) -> None:
        self.message = MessageBuilder(emitter, new_id)
        shape = ReasoningSummary if ctx.reasoning_as_summary else ReasoningText
        self.reasoning = shape(emitter, new_id, encrypted=ctx.include_encrypted_reasoning)

    def reason(self, text: str) -> None:
        if self.message.is_open:
            self.message.close("completed")
        reasoning = self.reasoning
        if not reasoning.is_open:
            reasoning.open()
        reasoning.delta(text)

    def text(self, text: str, lp: list[Logprob] | None) -> None:
        message = self.message
        if not message.is_open:
            held = message.hold(text, lp)
            if held is None:
                return  # whitespace alone does not make a message (yet)
            text, lp = held
            self._open_message()
        message.text(text, lp)

    def refusal(self, text: str) -> None:
        if not self.message.is_open:
            self._open_message()
        self.message.refusal(text)

    def annotate(self, citations: list[UrlCitation]) -> None:
        """Citations of the message's text; they open the message if no text did yet (OpenRouter
        sends them first)."""
        if not self.message.is_open:
            self._open_message()
        self.message.annotate(citations)

    def _open_message(self) -> None:
        if self.reasoning.is_open:
            self.reasoning.close("completed")
        self.message.open()

    def close(self) -> None:
        """Before a tool call's item: close whichever segment is open."""
        if self.message.is_open:
            self.message.close("completed")
        if self.reasoning.is_open:
            self.reasoning.close("completed")

    def close_all(self, status: Callable[[int], ItemStatus]) -> None:
        """At the end: ``status`` maps the open item's output_index to its final status."""
        if self.message.is_open:
            self.message.close(status(self.message.index))
        if self.reasoning.is_open:
            self.reasoning.close(status(self.reasoning.index))
