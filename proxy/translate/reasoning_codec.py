"""A stateless stand-in for OpenAI's ``encrypted_content`` on reasoning items.

Clients such as Codex run with ``store: false`` and replay every reasoning item
of the previous turn with its ``encrypted_content``. We keep no state, so the
blob itself carries the reasoning text back to us: ``rpx1.`` followed by
base64url (unpadded) of the zlib-compressed UTF-8 text. An encoding, not a
secret, and unsigned: the client has already seen that text, and a forged blob
can only put words in the model's past reasoning that the client could have
written into ``input`` anyway.

``decode_reasoning`` never raises: blobs from OpenAI, from another proxy, stubs
such as ``"enc_stub_opaque_blob"``, truncated or tampered blobs all decode to
``None`` and the caller falls back to the item's visible text.
"""
from __future__ import annotations

import base64
import binascii
import zlib

PREFIX = "rpx1."
# Refuse to inflate more than this (a tiny hostile blob must not expand into
# gigabytes of memory).
MAX_DECODED_BYTES = 16 * 1024 * 1024


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # urlsafe_b64decode silently drops characters outside the alphabet unless
    # validated; a blob that is not ours must not half-decode.
    raw = text.encode("ascii")
    raw += b"=" * (-len(raw) % 4)
    return base64.b64decode(raw, altchars=b"-_", validate=True)


def encode_reasoning(text: str) -> str:
    """Pack reasoning ``text`` into an opaque ``encrypted_content`` string."""
    return pack(PREFIX, text)


def decode_reasoning(blob: object) -> str | None:
    """Return the text packed by ``encode_reasoning``, or ``None`` if ``blob`` is not ours."""
    return unpack(PREFIX, blob)


def pack(prefix: str, text: str) -> str:
    """``prefix`` + base64url (unpadded) of the zlib-compressed UTF-8 ``text``.

    The stateless carrier of every opaque blob we hand out (reasoning here,
    compaction summaries in ``proxy.translate.compaction``); the prefix says
    what a blob holds, so one kind is never read as another.
    """
    return prefix + _b64encode(zlib.compress(text.encode("utf-8"), 6))


def unpack(prefix: str, blob: object) -> str | None:
    """The text ``pack(prefix, …)`` packed, or None for anything else (never raises)."""
    if not isinstance(blob, str) or not blob.startswith(prefix):
        return None
    try:
        payload = _b64decode(blob[len(prefix):])
        inflater = zlib.decompressobj()
        data = inflater.decompress(payload, MAX_DECODED_BYTES)
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            return None  # too large, truncated, or trailing garbage
        return data.decode("utf-8")
    except (ValueError, binascii.Error, zlib.error, UnicodeError):
        return None
