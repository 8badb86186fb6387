"""Server-sent events: decode the upstream chat stream, encode our events.

Decoding works on bytes and splits on ``\\n`` only. A multi-byte UTF-8
character never contains the byte 0x0A, so every line we cut is a whole byte
sequence and a character split between two network reads survives: we never
decode a partial line. ``data`` payloads are returned as bytes for
``orjson.loads`` (which decodes UTF-8 itself); ``\\r\\n`` line ends are handled
by dropping the trailing ``\\r``. Comment lines (``: keep-alive``) and the
``event:``/``id:``/``retry:`` fields of upstream are ignored: chat chunks carry
everything in ``data``.

The buffer is bounded (``max_event_bytes``): an oversized event raises
``EventTooLarge`` so the caller fails the response loudly instead of silently
dropping data (the reference proxy cleared its buffer and carried on).
"""
from __future__ import annotations

from collections.abc import Callable

import orjson

from .shapes import Event

__all__ = ["DONE", "KEEPALIVE", "EventTooLarge", "SSEDecoder", "encode_event"]

DONE: bytes = b"data: [DONE]\n\n"
KEEPALIVE: bytes = b": keep-alive\n\n"

_dumps = orjson.dumps


class EventTooLarge(Exception):
    """One upstream SSE event (or line) exceeded the decoder's byte limit."""


class SSEDecoder:
    """Incremental SSE decoder for the upstream byte stream.

    ``feed`` returns the ``data`` payload of every event completed by the
    bytes so far (multi-line data joined with ``b"\\n"``); ``flush`` at EOF
    returns the last event even without a trailing blank line. The payload of
    the final chat event is ``b"[DONE]"``; recognising it is the caller's job.
    """

    __slots__ = ("_max", "_rewrite", "_buf", "_buf_len", "_data", "_size", "_error")

    def __init__(self, max_event_bytes: int = 1_048_576, rewrite: Callable[[bytes], bytes] | None = None) -> None:
        self._max = max_event_bytes
        # Applied to whole lines before they are read (the relay masks the upstream key with
        # it: once per read, not per event; a key never spans a line).
        self._rewrite = rewrite
        # Bytes after the last complete line, as the reads that brought them:
        # joined only once their line ends, so a long line arriving in many
        # small reads costs linear time, not quadratic.
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._data: list[bytes] = []  # data lines of the event being built
        self._size = 0  # bytes held in self._data
        self._error = False  # the event being built is an error (event: error, or an error: line)

    def feed(self, data: bytes) -> list[bytes]:
        cut = data.rfind(b"\n")
        if cut < 0:
            if data:
                self._buf.append(data)
                self._buf_len += len(data)
                if self._buf_len + self._size > self._max:
                    self._reset()
                    raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
            return []
        if self._buf:
            self._buf.append(data)
            buf = b"".join(self._buf)
            cut += len(buf) - len(data)
        else:
            buf = data
        rest = buf[cut + 1:]
        self._buf = [rest] if rest else []
        self._buf_len = len(rest)
        out: list[bytes] = []
        lines = buf if cut + 1 == len(buf) else buf[:cut + 1]  # whole lines, each with its "\n"
        if self._rewrite is not None:
            lines = self._rewrite(lines)
        if self._data or self._error or b"\r" in lines:
            for line in lines[:-1].split(b"\n"):
                self._line(line, out)
        else:
            self._blocks(lines, out)
        if self._buf_len + self._size > self._max:
            self._reset()
            raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
        return out

    def _blocks(self, lines: bytes, out: list[bytes]) -> None:
        """Whole lines, no event under way: cut at blank lines, so the common event (one
        ``data: `` line) costs one slice; any other block goes line by line."""
        # The common read, told in C: only "data: " lines, each followed by a blank line. Cut at
        # the separators in one split; the cut is right when the read holds no other "\n" than
        # theirs (two each) and the last two. One count, not a second search: a read that is
        # not this shape pays the split for nothing and goes the general way.
        if lines.startswith(b"data: ") and lines.endswith(b"\n\n"):
            payloads = lines.split(b"\n\ndata: ")
            if lines.count(b"\n") != 2 * len(payloads):
                self._blocks_general(lines, out)
                return
            payloads[0] = payloads[0][6:]
            payloads[-1] = payloads[-1][:-2]
            if len(lines) > self._max and max(map(len, payloads)) >= self._max:
                self._reset()
                raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
            out += payloads
            return
        self._blocks_general(lines, out)

    def _blocks_general(self, lines: bytes, out: list[bytes]) -> None:
        """Any whole lines: block by block, a lone ``data: `` line still one slice."""
        blocks = lines.split(b"\n\n")
        last = blocks.pop()  # lines of an event whose blank line has not come yet ("" if none)
        line = self._line
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                if len(block) - 5 > self._max:
                    self._reset()
                    raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
                out.append(block[6:])
            elif block:
                for one in block.split(b"\n"):
                    line(one, out)
                line(b"", out)
        if last:
            for one in last[:-1].split(b"\n"):
                line(one, out)

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        if self._buf:
            line = b"".join(self._buf)
            self._buf = []
            self._buf_len = 0
            if self._rewrite is not None:
                line = self._rewrite(line)
            self._line(line, out)
        if self._data or self._error:
            self._dispatch(out)
        return out

    def _reset(self) -> None:
        self._buf = []
        self._buf_len = 0
        self._data = []
        self._size = 0
        self._error = False

    def _dispatch(self, out: list[bytes]) -> None:
        data = self._data
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        if self._error:
            payload = _error_payload(payload)
            self._error = False
        out.append(payload)
        self._data = []
        self._size = 0

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data or self._error:
                self._dispatch(out)
            return
        if line.startswith(b"data"):
            rest = line[4:]
            if not rest:
                value = b""
            elif rest[0] == 58:  # b":"
                value = rest[2:] if rest[1:2] == b" " else rest[1:]
            else:
                return  # a field like "database:" — not ours
        elif line.startswith(b"event"):
            if _field_value(line, 5) == b"error":
                self._error = True
            return
        elif line.startswith(b"error"):
            error = _field_value(line, 5)
            if error is None:
                return
            self._error = True
            value = error
        else:
            return  # comments (":"), id:, retry: and unknown fields are ignored
        self._size += len(value) + 1
        if self._size > self._max:
            self._reset()
            raise EventTooLarge(f"SSE event exceeds {self._max} bytes")
        self._data.append(value)


def _field_value(line: bytes, name_length: int) -> bytes | None:
    """The value of a ``name:value`` line (one leading space dropped), None if the name goes on."""
    rest = line[name_length:]
    if not rest:
        return b""
    if rest[0] != 58:  # b":"
        return None
    return rest[2:] if rest[1:2] == b" " else rest[1:]


def _error_payload(data: bytes) -> bytes:
    """An error event's data as an ``{"error": …}`` chunk."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = data.decode("utf-8", "replace").strip()
    if type(value) is dict and value.get("error"):
        return data
    return _dumps({"error": value or {"message": "the backend reported an error without details"}})


def encode_event(event: Event) -> bytes:
    """``event: <type>\\ndata: <one-line JSON>\\n\\n`` — the whole event in one write.

    orjson escapes control characters inside strings, so the JSON never
    contains a raw newline and always fits on one ``data:`` line.
    """
    kind: str = event["type"]
    head = _HEADS.get(kind)
    if head is None:
        head = _head(kind)
    return head + _dumps(event) + b"\n\n"


def encode_events(events: list[Event]) -> bytes:
    """Several events as one write (one ``send`` per upstream read, not per event)."""
    if len(events) == 1:
        return encode_event(events[0])
    heads, dumps = _HEADS, _dumps
    out: list[bytes] = []
    add = out.append
    for event in events:
        kind: str = event["type"]
        head = heads.get(kind)
        if head is None:
            head = _head(kind)
        # Three parts joined once: no two intermediate copies of each event's bytes.
        add(head)
        add(dumps(event))
        add(b"\n\n")
    return b"".join(out)


# ``event: <type>\ndata: `` of each event type, encoded once: a few dozen types, each
# written thousands of times a second.
_HEADS: dict[str, bytes] = {}


def _head(kind: str) -> bytes:
    head = b"event: " + kind.encode() + b"\ndata: "
    if len(_HEADS) < 256:  # the types are our constants; the bound only guards against a bug
        _HEADS[kind] = head
    return head
