"""Split a leading ``<think>…</think>`` block out of streamed chat content.

Some backends (DeepSeek-R1 distills, QwQ, Qwen3 templates without a reasoning
parser) put the model's reasoning inline, as ``<think>reasoning</think>answer``
in ``delta.content``. Only a think block at the very *start* of the content
(leading whitespace ignored) is reasoning: a model that writes "<think>" in the
middle of an answer is quoting it, and treating that as reasoning would eat
part of the answer.

Tags can be split across chunks at any character, so the splitter holds back
the shortest suffix that might still become a tag and releases it once the next
chunk decides. It is a pure state machine over ``str`` (UTF-8 decoding happens
per complete SSE line before we see the text, so no character is ever split).
"""
from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

# States
_START = 0  # only whitespace and/or a prefix of OPEN_TAG seen so far
_THINK = 1  # inside the think block
_AFTER = 2  # just after CLOSE_TAG: drop the whitespace separating it from the answer
_PASS = 3  # plain content from here on

_EMPTY = ("", "")


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    n = min(len(text), len(tag) - 1)
    while n:
        if tag.startswith(text[-n:]):
            return n
        n -= 1
    return 0


class ThinkSplitter:
    """Feed content pieces; get ``(reasoning, content)`` pieces back.

    ``feed`` and ``flush`` return a pair of strings (either may be empty). The
    concatenation of all reasoning pieces is the think block's text; of all
    content pieces, the answer (with the whitespace right after ``</think>``
    removed). Content without a leading think block passes through unchanged,
    leading whitespace included.
    """

    __slots__ = ("_state", "_held", "_ws", "passthrough")

    def __init__(self) -> None:
        self._state = _START
        # True once content can no longer contain reasoning: a plain attribute,
        # not a property, because callers test it for every content delta.
        self.passthrough = False
        # In _START: a proper prefix of OPEN_TAG seen after the leading
        # whitespace; in _THINK: a possible start of CLOSE_TAG.
        self._held = ""
        # Leading whitespace pieces seen in _START. A list, so a model that
        # streams thousands of "\n" tokens before anything else costs linear time.
        self._ws: list[str] = []

    def _pass(self) -> None:
        self._state = _PASS
        self.passthrough = True

    def feed(self, text: str) -> tuple[str, str]:
        state = self._state
        if state == _PASS:
            return ("", text)
        if not text:
            return _EMPTY
        if state == _START:
            if self._held:
                buf = self._held + text
            else:
                buf = text.lstrip()
                if len(buf) < len(text):
                    self._ws.append(text[: len(text) - len(buf)])
                if not buf:
                    return _EMPTY
            # buf starts with the first non-whitespace character.
            if buf.startswith(OPEN_TAG):
                self._held = ""
                self._ws = []
                self._state = _THINK
                return self._feed_think(buf[len(OPEN_TAG):])
            if OPEN_TAG.startswith(buf):
                self._held = buf  # still could become "<think>"
                return _EMPTY
            self._held = ""
            self._pass()
            if self._ws:
                buf = "".join(self._ws) + buf
                self._ws = []
            return ("", buf)
        if state == _THINK:
            return self._feed_think(text)
        # _AFTER
        stripped = text.lstrip()
        if not stripped:
            return _EMPTY
        self._pass()
        return ("", stripped)

    def _feed_think(self, text: str) -> tuple[str, str]:
        buf = self._held + text if self._held else text
        end = buf.find(CLOSE_TAG)
        if end >= 0:
            self._held = ""
            self._state = _AFTER
            reasoning = buf[:end]
            rest = buf[end + len(CLOSE_TAG):]
            if rest:
                return (reasoning, self.feed(rest)[1])
            return (reasoning, "")
        keep = _partial_suffix(buf, CLOSE_TAG)
        if keep:
            self._held = buf[-keep:]
            return (buf[:-keep], "")
        self._held = ""
        return (buf, "")

    def flush(self) -> tuple[str, str]:
        """At the end of the content: release whatever is held back.

        An unterminated think block is all reasoning (the model ran out of
        tokens while thinking); a held start (whitespace, "<thi") is content.
        """
        held, self._held = self._held, ""
        if self._state == _START and (held or self._ws):
            self._pass()
            lead, self._ws = "".join(self._ws), []
            return ("", lead + held)
        if held and self._state == _THINK:
            return (held, "")
        return _EMPTY
