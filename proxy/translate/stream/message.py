"""The message item: text and refusal parts, held leading whitespace, logprobs.

One ``MessageBuilder`` per translator, reused for each message item it opens
(a message interrupted by reasoning or a tool call is closed, and later text
opens a new item). Its life: ``open`` (``output_item.added``) → per part
``content_part.added`` → ``output_text.delta`` / ``output_text.annotation.added`` /
``refusal.delta`` … →
``*.done`` + ``content_part.done`` → ``close`` (``output_item.done``).
Switching between text and refusal closes the current part and opens the
next, at the next ``content_index``.

A message is only opened once there is non-whitespace text or a refusal:
whitespace alone (the ``"\\n\\n"`` many models put between reasoning and tool
calls) does not make a message, so ``hold`` keeps it, with its logprobs, and
releases it in front of the first real text.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from ..shapes import (
    ItemStatus,
    Logprob,
    MessageItem,
    MessagePart,
    OutputTextPart,
    RefusalPart,
    TopLogprob,
    UrlCitation,
)
from .events import Emitter


class Part(Enum):
    """The kind of the content part being written."""

    NONE = 0
    TEXT = 1
    REFUSAL = 2


_NONE, _TEXT, _REFUSAL = Part.NONE, Part.TEXT, Part.REFUSAL


class MessageBuilder:
    """Owns the open message item (if ``is_open``) and the whitespace held before one."""

    __slots__ = ("_em", "_new_id", "is_open", "item_id", "index", "_content", "_part", "_part_index", "_buf",
                 "_lp", "_notes", "_held", "_held_lp")

    def __init__(self, emitter: Emitter, new_id: Callable[[str], str]) -> None:
        self._em = emitter
        self._new_id = new_id
        self.is_open = False
        self.item_id = ""
        self.index = -1
        self._content: list[MessagePart] = []  # closed parts
        self._part = _NONE
        self._part_index = 0  # content_index of the part being written
        self._buf: list[str] = []
        self._lp: list[Logprob] = []
        self._notes: list[UrlCitation] = []  # the text part's annotations
        # Leading whitespace (and its logprobs) seen while no message is open.
        # Pieces are kept in lists: a model looping on "\n" tokens must not make this quadratic.
        self._held: list[str] = []
        self._held_lp: list[Logprob] = []

    # ------------------------------------------------------------ lifecycle

    def hold(self, text: str, lp: list[Logprob] | None) -> tuple[str, list[Logprob] | None] | None:
        """Before opening: keep whitespace-only ``text`` (→ None), else return the
        text to open with, the held whitespace in front of it."""
        if text.isspace():
            self._held.append(text)
            if lp:
                self._held_lp.extend(lp)
            return None
        if self._held:
            self._held.append(text)
            text = "".join(self._held)
            self._held = []
            if self._held_lp:
                if lp:
                    self._held_lp.extend(lp)
                lp = self._held_lp
                self._held_lp = []
        return text, lp

    def open(self) -> None:
        self.item_id = item_id = self._new_id("msg")
        item: MessageItem = {"id": item_id, "type": "message", "status": "in_progress", "content": [],
                             "role": "assistant"}
        self.index = self._em.output_item_added(item)
        self.is_open = True
        self._content = []
        self._part = _NONE

    def close(self, status: ItemStatus) -> None:
        if self._part is not _NONE:
            self._close_part()
        item: MessageItem = {"id": self.item_id, "type": "message", "status": status, "content": self._content,
                             "role": "assistant"}
        self.is_open = False
        self._content = []
        self._em.output_item_done(self.index, item)

    # --------------------------------------------------------------- deltas

    def text(self, text: str, lp: list[Logprob] | None) -> None:
        """Append to the open message's text part (opening one if needed)."""
        if self._part is not _TEXT:
            self._open_part(_TEXT)
        self._buf.append(text)
        if lp:
            self._lp.extend(lp)
        self._em.output_text_delta(self.item_id, self.index, self._part_index, text, lp)

    def annotate(self, citations: list[UrlCitation]) -> None:
        """Add annotations to the open message's text part (opening one if needed)."""
        if self._part is not _TEXT:
            self._open_part(_TEXT)
        notes = self._notes
        for citation in citations:
            notes.append(citation)
            self._em.output_text_annotation_added(self.item_id, self.index, self._part_index, len(notes) - 1, citation)

    def refusal(self, text: str) -> None:
        """Append to the open message's refusal part (opening one if needed)."""
        if self._part is not _REFUSAL:
            self._open_part(_REFUSAL)
        self._buf.append(text)
        self._em.refusal_delta(self.item_id, self.index, self._part_index, text)

    # ---------------------------------------------------------------- parts

    def _open_part(self, kind: Part) -> None:
        if self._part is not _NONE:
            self._close_part()
        self._part = kind
        self._part_index = len(self._content)
        self._buf = []
        self._lp = []
        self._notes = []
        part: MessagePart
        if kind is _TEXT:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            part = {"type": "refusal", "refusal": ""}
        self._em.content_part_added(self.item_id, self.index, self._part_index, part)

    def _close_part(self) -> None:
        text = "".join(self._buf)
        ci = self._part_index
        em = self._em
        part: MessagePart
        if self._part is _TEXT:
            text_part: OutputTextPart = {"type": "output_text", "text": text, "annotations": self._notes,
                                         "logprobs": self._lp}
            self._content.append(text_part)
            em.output_text_done(self.item_id, self.index, ci, text, text_part["logprobs"])
            part = text_part
        else:
            refusal_part: RefusalPart = {"type": "refusal", "refusal": text}
            self._content.append(refusal_part)
            em.refusal_done(self.item_id, self.index, ci, text)
            part = refusal_part
        self._part = _NONE
        self._buf = []
        self._lp = []
        self._notes = []
        em.content_part_done(self.item_id, self.index, ci, part)


# ------------------------------------------------------------------ logprobs


def _logprob(value: Any) -> float:
    return float(value) if (type(value) is float or type(value) is int) else 0.0


def _token_bytes(value: Any, token: str) -> list[int]:
    if type(value) is list and all(type(b) is int for b in value):
        return value
    return list(token.encode())


def convert_logprobs(entries: Any) -> list[Logprob]:
    """Chat ``logprobs.content[]`` → Responses logprob objects (``bytes`` filled in).

    Total over any input: a malformed entry is skipped or its odd field
    replaced, never passed through (clients validate these) or raised on.
    """
    out: list[Logprob] = []
    if type(entries) is not list:
        return out
    for e in entries:
        if type(e) is not dict:
            continue
        token = e.get("token")
        if type(token) is not str:
            continue
        tops: list[TopLogprob] = []
        top = e.get("top_logprobs")
        for t in top if type(top) is list else ():
            if type(t) is dict and type(t.get("token")) is str:
                tops.append(
                    {
                        "token": t["token"],
                        "logprob": _logprob(t.get("logprob")),
                        "bytes": _token_bytes(t.get("bytes"), t["token"]),
                    }
                )
        out.append(
            {
                "token": token,
                "logprob": _logprob(e.get("logprob")),
                "bytes": _token_bytes(e.get("bytes"), token),
                "top_logprobs": tops,
            }
        )
    return out
