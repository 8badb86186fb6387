"""A stateless stand-in for OpenAI's ``encrypted_content`` on reasoning items.

Clients such as Codex run with ``store: false`` and replay every reasoning item
of the previous turn with its ``encrypted_content``. We keep no state, so the
blob itself carries the reasoning text back to us: ``rpx1.`` followed by
base64url (unpadded) of the zlib-compressed UTF-8 text. Plain encoding is
enough by default because the client has already seen that text; an operator
who wants to be sure a replayed blob was produced by this proxy can pass a
``key``: the blob then becomes ``rpx1s.`` + base64url(HMAC-SHA256[:16] + payload).

``decode_reasoning`` never raises: blobs from OpenAI, from another proxy, stubs
such as ``"enc_stub_opaque_blob"``, truncated or tampered blobs all decode to
``None`` and the caller falls back to the item's visible text.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib

PREFIX = "rpx1."
SIGNED_PREFIX = "rpx1s."
_MAC_LEN = 16
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


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_LEN]


def encode_reasoning(text: str, key: bytes | None = None) -> str:
    """Pack reasoning ``text`` into an opaque ``encrypted_content`` string.

    With ``key`` the blob is authenticated (HMAC) so only this proxy's
    operator can mint blobs ``decode_reasoning(..., key)`` accepts.
    """
    payload = zlib.compress(text.encode("utf-8"), 6)
    if key is None:
        return PREFIX + _b64encode(payload)
    return SIGNED_PREFIX + _b64encode(_mac(key, payload) + payload)


def decode_reasoning(blob: object, key: bytes | None = None) -> str | None:
    """Return the text packed by ``encode_reasoning``, or ``None`` if ``blob`` is not ours.

    Without ``key`` only unsigned blobs are accepted; with ``key`` only blobs
    signed with that key.
    """
    if not isinstance(blob, str):
        return None
    try:
        if key is None:
            if not blob.startswith(PREFIX):
                return None
            payload = _b64decode(blob[len(PREFIX):])
        else:
            if not blob.startswith(SIGNED_PREFIX):
                return None
            raw = _b64decode(blob[len(SIGNED_PREFIX):])
            mac, payload = raw[:_MAC_LEN], raw[_MAC_LEN:]
            if len(mac) != _MAC_LEN or not hmac.compare_digest(mac, _mac(key, payload)):
                return None
        inflater = zlib.decompressobj()
        data = inflater.decompress(payload, MAX_DECODED_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            return None  # too large, truncated, or trailing garbage
        if inflater.unused_data:
            return None
        return data.decode("utf-8")
    except (ValueError, binascii.Error, zlib.error, UnicodeError):
        return None
