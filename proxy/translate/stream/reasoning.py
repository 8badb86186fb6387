"""The reasoning item, in its two shapes: reasoning text, or a summary.

**Reasoning events use OpenAI's names** (``ReasoningText``, the default):
``response.reasoning_text.delta`` / ``response.reasoning_text.done`` with one
``reasoning_text`` content part. The Open Responses schema spells these
``response.reasoning.delta/.done``; the openai SDK and Codex parse only the
OpenAI names, so those are what we emit (the conformance checker maps the
names when validating against the Open Responses models). The item is
``{id, type, summary: [], content: [{type: "reasoning_text", text}], status}``.

**Reasoning as a summary** (``ReasoningSummary``) when the request set
``reasoning.summary`` (``ctx.reasoning_as_summary``): Codex and the Agents SDK
display summaries and hide raw reasoning text, and a chat backend has no
separate summary, so the whole reasoning becomes one summary part. The item is
``{id, type, summary: [{type: "summary_text", text}], status}`` with no
``content`` key (as OpenAI sends it), and the events are
``output_item.added`` → ``reasoning_summary_part.added`` (``summary_index`` 0,
empty text) → ``reasoning_summary_text.delta``* →
``reasoning_summary_text.done`` → ``reasoning_summary_part.done`` (with
``status: "incomplete"`` when cut short) → ``output_item.done``. Both specs
share these names.

``encrypted_content`` (``include: ["reasoning.encrypted_content"]``) holds the
full text in either shape: it is what a replayed item gives back upstream.

One builder per translator, reused for each reasoning item: reasoning that
comes back after text or a tool call is a new item at the next output_index.
"""
from __future__ import annotations

from collections.abc import Callable

from ..reasoning_codec import encode_reasoning
from ..shapes import ItemStatus, ReasoningItem, ReasoningTextPart, SummaryTextPart
from .events import Emitter


class ReasoningBuilder:
    """Buffering, ids and ``encrypted_content``; the shape is the subclass's."""

    __slots__ = ("_em", "_new_id", "_encrypted", "is_open", "item_id", "index", "_buf")

    def __init__(self, emitter: Emitter, new_id: Callable[[str], str], *, encrypted: bool) -> None:
        self._em = emitter
        self._new_id = new_id
        self._encrypted = encrypted
        self.is_open = False
        self.item_id = ""
        self.index = -1
        self._buf: list[str] = []

    def open(self) -> None:
        self.item_id = self._new_id("rs")
        self._buf = []
        self.is_open = True
        self._opened()

    def close(self, status: ItemStatus) -> None:
        text = "".join(self._buf)
        item = self._item(text, status)
        if self._encrypted:
            item["encrypted_content"] = encode_reasoning(text)
        self.is_open = False
        self._buf = []
        self._closed(text, item, status)

    # The shape: one of each per subclass.

    def _opened(self) -> None:
        raise NotImplementedError

    def delta(self, text: str) -> None:
        """Append ``text`` (the subclass emits it: one call per token, no dispatch in between)."""
        raise NotImplementedError

    def _item(self, text: str, status: ItemStatus) -> ReasoningItem:
        raise NotImplementedError

    def _closed(self, text: str, item: ReasoningItem, status: ItemStatus) -> None:
        raise NotImplementedError


class ReasoningText(ReasoningBuilder):
    """``reasoning_text`` content, ``response.reasoning_text.*`` events."""

    __slots__ = ()

    def _opened(self) -> None:
        em = self._em
        self.index = em.output_item_added(
            {"id": self.item_id, "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
        )
        em.content_part_added(self.item_id, self.index, 0, {"type": "reasoning_text", "text": ""})

    def delta(self, text: str) -> None:
        self._buf.append(text)
        self._em.reasoning_text_delta(self.item_id, self.index, text)

    def _item(self, text: str, status: ItemStatus) -> ReasoningItem:
        part: ReasoningTextPart = {"type": "reasoning_text", "text": text}
        return {"id": self.item_id, "type": "reasoning", "summary": [], "content": [part], "status": status}

    def _closed(self, text: str, item: ReasoningItem, status: ItemStatus) -> None:
        em = self._em
        em.reasoning_text_done(self.item_id, self.index, text)
        em.content_part_done(self.item_id, self.index, 0, item["content"][0])
        em.output_item_done(self.index, item)


class ReasoningSummary(ReasoningBuilder):
    """One ``summary_text`` part, ``response.reasoning_summary_*`` events."""

    __slots__ = ()

    def _opened(self) -> None:
        em = self._em
        self.index = em.output_item_added({"id": self.item_id, "type": "reasoning", "summary": [],
                                           "status": "in_progress"})
        em.reasoning_summary_part_added(self.item_id, self.index, {"type": "summary_text", "text": ""})

    def delta(self, text: str) -> None:
        self._buf.append(text)
        self._em.reasoning_summary_text_delta(self.item_id, self.index, text)

    def _item(self, text: str, status: ItemStatus) -> ReasoningItem:
        # OpenAI's summary-mode items carry no `content` key at all.
        part: SummaryTextPart = {"type": "summary_text", "text": text}
        return {"id": self.item_id, "type": "reasoning", "summary": [part], "status": status}

    def _closed(self, text: str, item: ReasoningItem, status: ItemStatus) -> None:
        em = self._em
        em.reasoning_summary_text_done(self.item_id, self.index, text)
        em.reasoning_summary_part_done(self.item_id, self.index, item["summary"][0], status == "incomplete")
        em.output_item_done(self.index, item)
