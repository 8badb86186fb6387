"""Chat Completions ``usage`` → Responses ``usage``.

The details objects are always present (new openai SDKs require
``input_tokens_details.cache_write_tokens``), with zeros where the backend
reported nothing: a missing number is "none that we know of", and clients
that sum usage must not crash on ``null``.

``output_tokens`` includes reasoning, as OpenAI counts it. xAI reports reasoning
outside ``completion_tokens`` (its total is prompt + completion + reasoning); that
is recognised by the total alone: every other server's total is prompt +
completion (reasoning included there), which differs from prompt + completion +
reasoning whenever there is reasoning, so the rule cannot fire on their numbers
unless a total is wrong by exactly the reasoning count. Servers that send no total
are taken as inclusive.
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
    reasoning_tokens = _int(completion.get("reasoning_tokens"))
    reported_total = _int(u.get("total_tokens"))
    total = reported_total or input_tokens + output_tokens
    if reasoning_tokens and reported_total == input_tokens + output_tokens + reasoning_tokens:
        output_tokens += reasoning_tokens  # xAI: completion_tokens excludes reasoning
    # Cache writes: OpenAI-style details, or the Anthropic-style top-level name
    # some compatible servers (LiteLLM, OpenRouter) pass through.
    cache_write = _int(prompt.get("cache_write_tokens")) or _int(u.get("cache_creation_input_tokens"))
    # Cache hits: OpenAI-style details, or DeepSeek's top-level name (older DeepSeek sends only that).
    cached = _int(prompt.get("cached_tokens")) or _int(u.get("prompt_cache_hit_tokens"))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cached,
            "cache_write_tokens": cache_write,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": total,
    }




# What map_usage reads (a details object: the keys read in it); ``stream.shape.unmapped_usage``
# names every other non-empty field.
READ_FIELDS: dict[str, frozenset[str] | None] = {
    "prompt_tokens": None, "completion_tokens": None, "total_tokens": None, "cache_creation_input_tokens": None,
    # DeepSeek: the hits are read; the misses are prompt_tokens minus them, nothing more.
    "prompt_cache_hit_tokens": None, "prompt_cache_miss_tokens": None,
    "prompt_tokens_details": frozenset({"cached_tokens", "cache_write_tokens"}),
    "completion_tokens_details": frozenset({"reasoning_tokens"}),
}
