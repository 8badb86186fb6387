"""SSEDecoder and encode_event: the SSE wire format in both directions."""
from __future__ import annotations

import orjson
import pytest

from proxy.translate.sse import DONE, KEEPALIVE, EventTooLarge, SSEDecoder, encode_event


def decode_all(pieces: list[bytes], **kw) -> list[bytes]:
    d = SSEDecoder(**kw)
    out: list[bytes] = []
    for p in pieces:
        out += d.feed(p)
    return out + d.flush()


STREAM = (
    b": upstream comment\n"
    b"event: ignored\nid: 7\nretry: 100\n"
    b'data: {"t":"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"}\n\n'
    b"data: first\ndata: second\n\n"
    b"data:nospace\n\n"
    b"data: [DONE]\n\n"
)
WANT = [
    '{"t":"héllo ✓ 😀"}'.encode(),
    b"first\nsecond",
    b"nospace",
    b"[DONE]",
]


def test_lf_stream():
    assert decode_all([STREAM]) == WANT


def test_crlf_stream():
    assert decode_all([STREAM.replace(b"\n", b"\r\n")]) == WANT


@pytest.mark.parametrize("crlf", [False, True])
def test_split_at_every_byte(crlf):
    raw = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    for i in range(len(raw) + 1):
        assert decode_all([raw[:i], raw[i:]]) == WANT, i


def test_one_byte_at_a_time_keeps_multibyte_characters():
    raw = STREAM.replace(b"\n", b"\r\n")
    events = decode_all([raw[i : i + 1] for i in range(len(raw))])
    assert events == WANT
    assert orjson.loads(events[0])["t"] == "héllo ✓ 😀"


def test_flush_returns_last_event_without_blank_line():
    d = SSEDecoder()
    assert d.feed(b'data: {"a":1}\n\ndata: {"b":2}') == [b'{"a":1}']
    assert d.flush() == [b'{"b":2}']
    assert d.flush() == []


def test_flush_with_single_newline():
    assert decode_all([b"data: x\n"]) == [b"x"]


def test_comment_only_stream_yields_nothing():
    assert decode_all([b": keep-alive\n\n: again\n\n"]) == []


def test_blank_lines_without_data_dispatch_nothing():
    assert decode_all([b"\n\n\nevent: x\n\n"]) == []


def test_field_named_like_data_prefix_is_ignored():
    assert decode_all([b"database: 1\ndata: y\n\n"]) == [b"y"]


def test_oversized_line_without_newline_raises():
    d = SSEDecoder(max_event_bytes=100)
    d.feed(b"data: " + b"x" * 50)
    with pytest.raises(EventTooLarge):
        d.feed(b"x" * 60)


def test_oversized_event_across_lines_raises():
    d = SSEDecoder(max_event_bytes=100)
    with pytest.raises(EventTooLarge):
        d.feed(b"".join(b"data: " + b"y" * 30 + b"\n" for _ in range(4)))


def test_event_at_the_limit_passes():
    payload = b"z" * 90
    assert decode_all([b"data: " + payload + b"\n\n"], max_event_bytes=100) == [payload]


def test_encode_event_format():
    ev = {"type": "response.output_text.delta", "sequence_number": 3, "delta": "a\nb ✓"}
    raw = encode_event(ev)
    head, data, blank, end = raw.split(b"\n")
    assert head == b"event: response.output_text.delta"
    assert data.startswith(b"data: ") and orjson.loads(data[6:]) == ev
    assert blank == b"" and end == b""


def test_constants():
    assert DONE == b"data: [DONE]\n\n"
    assert KEEPALIVE.startswith(b":") and KEEPALIVE.endswith(b"\n\n")
    # Our own output decodes with our decoder (comments skipped).
    raw = encode_event({"type": "x", "v": 1}) + KEEPALIVE + DONE
    assert decode_all([raw]) == [b'{"type":"x","v":1}', b"[DONE]"]


def test_long_line_in_many_small_reads():
    # Pieces are buffered and joined once the line ends (linear, not quadratic).
    payload = b'{"x": "' + b"a" * 200_000 + b'"}'
    raw = b"data: " + payload + b"\n\n"
    dec = SSEDecoder()
    out = []
    for i in range(0, len(raw), 7):
        out += dec.feed(raw[i:i + 7])
    assert out == [payload]
    assert dec.flush() == []


def test_size_limit_counts_buffered_pieces():
    dec = SSEDecoder(max_event_bytes=100)
    for _ in range(9):
        assert dec.feed(b"data: " + b"a" * 4) == []
    with pytest.raises(EventTooLarge):
        dec.feed(b"a" * 60)


ERRORS = (
    # llama.cpp: the failure as an `error:` field line, then [DONE]
    b'error: {"code":500,"message":"Context size has been exceeded.","type":"server_error"}\n\n'
    b"data: [DONE]\n\n"
    # Groq: an `event: error` block whose data is already an error chunk
    b'event: error\ndata: {"error":{"message":"Tool call validation failed","code":"tool_use_failed"}}\n\n'
    # an error event with plain text, and one with nothing at all
    b"event:error\ndata: model crashed\n\n"
    b"event: error\n\n"
)


def test_error_events_and_error_lines_become_error_payloads():
    out = [orjson.loads(p) if p != b"[DONE]" else p for p in decode_all([ERRORS])]
    assert out == [
        {"error": {"code": 500, "message": "Context size has been exceeded.", "type": "server_error"}},
        b"[DONE]",
        {"error": {"message": "Tool call validation failed", "code": "tool_use_failed"}},
        {"error": "model crashed"},
        {"error": {"message": "the backend reported an error without details"}},
    ]


@pytest.mark.parametrize("crlf", [False, True])
def test_error_payloads_survive_any_split(crlf):
    raw = ERRORS.replace(b"\n", b"\r\n") if crlf else ERRORS
    want = decode_all([raw])
    for i in range(len(raw) + 1):
        assert decode_all([raw[:i], raw[i:]]) == want, i


def test_other_event_names_and_error_like_fields_change_nothing():
    assert decode_all([b"event: message\ndata: x\n\nerrors: 1\nevent: errorx\ndata: y\n\n"]) == [b"x", b"y"]


def test_rewrite_sees_whole_lines_only():
    """``rewrite`` (the relay's key masking) gets whole lines, so a key split across reads is caught."""
    seen: list[bytes] = []

    def rewrite(lines: bytes) -> bytes:
        seen.append(lines)
        return lines.replace(b"sk-SECRET", b"sk-***")

    stream = b'data: {"k":"sk-SECRET"}\n\nevent: error\ndata: bad sk-SECRET\n\ndata: sk-SECRET'
    for cut in range(1, len(stream)):
        seen.clear()
        out = decode_all([stream[:cut], stream[cut:]], rewrite=rewrite)
        assert out == [b'{"k":"sk-***"}', b'{"error":"bad sk-***"}', b"sk-***"], cut
        assert all(chunk.endswith(b"\n") for chunk in seen[:-1])
