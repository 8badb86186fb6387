"""The stateless encrypted_content codec: round trips, and never raises on foreign blobs."""
from __future__ import annotations

import base64
import zlib

from hypothesis import given
from hypothesis import strategies as st

from proxy.translate.reasoning_codec import MAX_DECODED_BYTES, PREFIX, decode_reasoning, encode_reasoning


@given(st.text())
def test_round_trip_any_text(text: str) -> None:
    blob = encode_reasoning(text)
    assert blob.startswith(PREFIX)
    assert blob.isascii() and "=" not in blob and "+" not in blob and "/" not in blob
    assert decode_reasoning(blob) == text


def test_unicode_and_large_text() -> None:
    text = "Denke nach… 思考 🎉\n" * 20_000
    blob = encode_reasoning(text)
    assert len(blob) < len(text)  # compressed
    assert decode_reasoning(blob) == text


def test_foreign_blobs_are_none() -> None:
    for blob in [
        "enc_stub_opaque_blob",
        "gAAAAABoZ...openai-style",
        "",
        PREFIX,
        PREFIX + "!!!not-base64!!!",
        PREFIX + "héllo",
        PREFIX + base64.urlsafe_b64encode(b"not zlib").decode().rstrip("="),
        encode_reasoning("hello")[:-4],  # truncated
        None,
        123,
        {"x": 1},
    ]:
        assert decode_reasoning(blob) is None  # type: ignore[arg-type]


def test_invalid_utf8_payload_is_none() -> None:
    blob = PREFIX + base64.urlsafe_b64encode(zlib.compress(b"\xff\xfe")).decode().rstrip("=")
    assert decode_reasoning(blob) is None


def test_trailing_garbage_is_none() -> None:
    payload = zlib.compress(b"hello") + b"junk"
    blob = PREFIX + base64.urlsafe_b64encode(payload).decode().rstrip("=")
    assert decode_reasoning(blob) is None


def test_decompression_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\0" * (MAX_DECODED_BYTES + 1), 9)
    blob = PREFIX + base64.urlsafe_b64encode(bomb).decode().rstrip("=")
    assert len(blob) < 100_000
    assert decode_reasoning(blob) is None


@given(st.text(max_size=200))
def test_arbitrary_strings_never_raise(blob: str) -> None:
    decode_reasoning(blob)
    decode_reasoning(PREFIX + blob)
