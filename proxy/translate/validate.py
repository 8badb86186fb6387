"""Type and range checks for a Responses request, each failing as a 400 naming ``param``.

The checks follow the Open Responses spec's ``CreateResponseBody`` limits. The
messages say what was expected and what arrived, so a client author can fix the
request without reading our code. JSON booleans are Python ``bool`` (a subclass
of ``int``): every numeric check rejects them explicitly.
"""
from __future__ import annotations

from typing import Any, TypeGuard

import orjson

from .errors import InvalidRequest

MAX_MODEL_LEN = 256
MAX_INPUT_STRING = 10_485_760  # spec: input string maxLength
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_ID_STRING = 64  # prompt_cache_key (the spec's bound)
# safety_identifier: OpenAI's bound (the openai SDK documents 128; the Open Responses spec says 64):
# an identifier OpenAI takes, such as a SHA-512 hex digest, is never a 400 here. ``user``, which
# it replaces and which fills the same chat field, has the same.
MAX_SAFETY_IDENTIFIER = 128
MAX_NESTING = 200  # levels of arrays and objects a request may nest (see check_nesting)
# orjson reads 1024 levels but writes no more than 254.
_WRITABLE_NESTING = 254


def check_nesting(doc: Any, what: str = "The request body", raw: bytes | str | None = None) -> None:
    """Refuse a parsed document nested more than ``MAX_NESTING`` levels deep. ``raw``, the text it
    was parsed from: one holding fewer opening brackets than that cannot nest so deep, and most
    requests are settled by counting them (two C scans) instead of writing the document.

    orjson reads 1024 levels but writes only 254, and what the proxy writes from a request — the
    chat request, the echoed Response, its events, the store's records — nests the request's
    values a few levels deeper than the request itself: a body orjson read could fail only
    there, as a 500 or a broken stream. Written once inside the headroom left (C speed, about a
    fifth of the read), it either fits or is refused here, before anything happens.
    """
    if raw is not None:
        brackets = raw.count("[") + raw.count("{") if isinstance(raw, str) else raw.count(b"[") + raw.count(b"{")
        if brackets <= MAX_NESTING:
            return
    wrapped = doc
    for _ in range(_WRITABLE_NESTING - MAX_NESTING):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        if "Recursion" not in str(exc):
            raise
        raise InvalidRequest(
            f"{what} nests arrays and objects more than {MAX_NESTING} levels deep.", None, "invalid_json"
        ) from None


def type_name(value: Any) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A short rendering of a bad value (never the whole of a huge payload)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    return "a value of type " + type_name(value)


def fail(param: str, expected: str, value: Any) -> InvalidRequest:
    """``Invalid '<param>': expected <expected>, got <value>.``"""
    return InvalidRequest(f"Invalid '{param}': expected {expected}, got {_show(value)}.", param)


def missing(param: str, what: str = "") -> InvalidRequest:
    extra = f" ({what})" if what else ""
    return InvalidRequest(f"Missing required parameter: '{param}'{extra}.", param, "missing_required_parameter")


def wrong(param: str, expected: str, value: Any, what: str = "") -> InvalidRequest:
    """The error for a required field that is not ``expected``: missing when absent or null
    (code ``missing_required_parameter``), else wrong-typed, so both read as OpenAI's do."""
    return missing(param, what) if value is None else fail(param, expected, value)


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def opt_number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | int | None:
    """An optional number in ``[lo, hi]`` (null counts as absent)."""
    value = body.get(key)
    if value is None:
        return None
    if not is_number(value) or not (lo <= value <= hi) or value != value:
        raise fail(key, f"a number between {lo:g} and {hi:g}", value)
    return value


def opt_int(body: dict[str, Any], key: str, lo: int, hi: int | None = None) -> int | None:
    """An optional integer ``>= lo`` (and ``<= hi``); null counts as absent."""
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"greater than or equal to {lo}"
        raise fail(key, f"an integer {rng}", value)
    return value


def opt_bool(body: dict[str, Any], key: str, param: str | None = None) -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise fail(param or key, "a boolean", value)


def opt_str(body: dict[str, Any], key: str, param: str | None = None, max_len: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(param or key, "a string", value)
    if max_len is not None and len(value) > max_len:
        raise InvalidRequest(
            f"Invalid '{param or key}': string too long, expected at most {max_len} characters, got {len(value)}.",
            param or key,
            "string_above_max_length",
        )
    return value


def opt_object(body: dict[str, Any], key: str, param: str | None = None) -> dict[str, Any] | None:
    """An optional JSON object (null counts as absent)."""
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise fail(param or key, "an object", value)
    return value


def opt_enum(body: dict[str, Any], key: str, allowed: tuple[str, ...], param: str | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise fail(param or key, "one of " + ", ".join(repr(a) for a in allowed), value)
    return value


def check_strings(obj: dict[str, Any], keys: tuple[str, ...], param: str) -> None:
    """Optional string fields of a nested object (``<param>.<key>``; null counts as absent)."""
    for key in keys:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise fail(f"{param}.{key}", "a string", value)


def req_str(obj: dict[str, Any], key: str, param: str) -> str:
    """A required non-empty string field of a nested object."""
    value = obj.get(key)
    if value is None:
        raise missing(param)
    if not isinstance(value, str):
        raise fail(param, "a string", value)
    if not value:
        raise InvalidRequest(f"Invalid '{param}': expected a non-empty string.", param, "empty_string")
    return value


def model_name(body: dict[str, Any]) -> str:
    """``model``: a non-empty string without whitespace or control characters."""
    value = body.get("model")
    if value is None:
        raise missing("model", "the name of the model to use")
    if not isinstance(value, str):
        raise fail("model", "a string", value)
    if not value:
        raise InvalidRequest("Invalid 'model': expected a non-empty string.", "model", "empty_string")
    if len(value) > MAX_MODEL_LEN:
        raise InvalidRequest(
            f"Invalid 'model': expected at most {MAX_MODEL_LEN} characters, got {len(value)}.", "model"
        )
    # Every whitespace character but the space is unprintable (Unicode's Cc and Z categories),
    # so this is "no whitespace or control character" without a loop over the name.
    if not value.isprintable() or " " in value:
        raise InvalidRequest(
            "Invalid 'model': the model name must not contain whitespace or control characters.", "model"
        )
    return value


def metadata(body: dict[str, Any]) -> dict[str, str]:
    """``metadata``: at most 16 string pairs, keys ≤ 64 and values ≤ 512 characters."""
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("metadata", "an object of string key-value pairs", value)
    if len(value) > MAX_METADATA_PAIRS:
        raise InvalidRequest(
            f"Invalid 'metadata': expected at most {MAX_METADATA_PAIRS} key-value pairs, got {len(value)}.",
            "metadata",
        )
    for k, v in value.items():
        if len(k) > MAX_METADATA_KEY:
            raise InvalidRequest(
                f"Invalid 'metadata': keys must be at most {MAX_METADATA_KEY} characters, "
                f"got a key of {len(k)} characters.",
                "metadata",
            )
        if not isinstance(v, str):
            raise InvalidRequest(
                f"Invalid 'metadata': values must be strings, got {type_name(v)} for key {k!r}.", "metadata"
            )
        if len(v) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"Invalid 'metadata': values must be at most {MAX_METADATA_VALUE} characters, "
                f"got {len(v)} for key {k!r}.",
                "metadata",
            )
    return value
