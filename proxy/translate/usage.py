"""Chat Completions ``usage`` → Responses ``usage``.

The details objects are always present (new openai SDKs require
``input_tokens_details.cache_write_tokens``), with zeros where the backend
reported nothing: a missing number is "none that we know of", and clients
that sum usage must not crash on ``null``.
"""
from __future__ import annotations

from typing import Any

from .shapes import Usage

# Larger counts are garbage. orjson parses integers beyond 64 bits as floats,
# and int() of such a float (or a sum of two u64s) is an integer orjson cannot
# serialize: the whole response would fail to encode.
_MAX_TOKENS = 2**53


def _int(value: Any) -> int:
    # bool is an int subclass; a backend sending true/false here is broken.
    if type(value) is int and 0 <= value <= _MAX_TOKENS:
        return value
    if type(value) is float and 0 <= value <= _MAX_TOKENS:
        return int(value)
    return 0


def _dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def map_usage(usage: Any) -> Usage:
    """Translate one chat ``usage`` dict (or ``None``) into a Responses usage dict."""
    u = _dict(usage)
    prompt = _dict(u.get("prompt_tokens_details"))
    completion = _dict(u.get("completion_tokens_details"))
    input_tokens = _int(u.get("prompt_tokens"))
    output_tokens = _int(u.get("completion_tokens"))
    total = _int(u.get("total_tokens")) or input_tokens + output_tokens
    # Cache writes: OpenAI-style details, or the Anthropic-style top-level name
    # some compatible servers (LiteLLM, OpenRouter) pass through.
    cache_write = _int(prompt.get("cache_write_tokens")) or _int(u.get("cache_creation_input_tokens"))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _int(prompt.get("cached_tokens")),
            "cache_write_tokens": cache_write,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": _int(completion.get("reasoning_tokens"))},
        "total_tokens": total,
    }

