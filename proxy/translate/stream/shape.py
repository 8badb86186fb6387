"""What a chat chunk must look like before the translator reads it, and what in it we cannot map.

The check runs before any field of a chunk is used (``StreamTranslator.feed`` does the
common chunk inline, with these helpers for everything else). A field
the translator reads must have the type it reads — ``choices`` a list of objects,
``delta`` an object, ``content`` a string, a list of parts or null, a text part's
``text`` a string, ``tool_calls`` a list of objects, ``function`` an object, its
``arguments`` re-encodable, ``finish_reason`` a string, ``function_call`` an object —
or the chunk is malformed (``MalformedChunk``, naming the field): the backend's
fault, and nothing of that chunk is used. Null, and any empty value, means absent.
Once a chunk passes, no exception is expected from reading it: one would be our bug,
and it propagates (``tests/unit/test_stream_fuzz.py`` is the proof that this check
covers every read).

Fields read by total functions are not checked: ``usage`` (``map_usage``),
``logprobs`` (``convert_logprobs``), ``error`` (any value is an error), a tool
call's ``id`` and ``name``, ``reasoning``/``reasoning_content``/``refusal`` (used
only when they are strings) and ``reasoning_details`` (``reasoning_details_text``).

On the way it adds to ``unmapped`` the path of every non-empty field the
translator does not read (``choices[].delta.annotations``, ``x_groq.usage_breakdown``…),
except keys that carry nothing for a Response (``id``, ``object``, ``created``,
``model``…): the edge logs them once per request. The common chunk costs one
subset test of its keys per level; only a chunk with other keys is walked.
"""
from __future__ import annotations

from typing import Any

import orjson

from ..usage import READ_FIELDS
from .chunks import choice_zero

# Chunk keys read by the translator, and keys that carry nothing for a Response.
CHUNK_KEYS = frozenset(
    {"choices", "usage", "error", "id", "object", "created", "model", "system_fingerprint", "service_tier",
     "provider"}
)
_X_GROQ_KEYS = frozenset({"usage", "id"})  # x_groq.usage is read when the chunk has no usage of its own
CHOICE_KEYS = frozenset({"index", "delta", "finish_reason", "logprobs"})
_DELTA_KEYS = frozenset(
    {"role", "content", "reasoning_content", "reasoning", "refusal", "tool_calls", "function_call",
     "reasoning_details", "annotations"}
)
_TOOL_CALL_KEYS = frozenset({"index", "id", "type", "function"})
_FUNCTION_KEYS = frozenset({"name", "arguments"})


# Bound subset tests: ``known(obj)`` is True when every key of ``obj`` is read (one C call each).
chunk_known = CHUNK_KEYS.issuperset
choice_known = CHOICE_KEYS.issuperset
_delta_known = _DELTA_KEYS.issuperset
_tool_call_known = _TOOL_CALL_KEYS.issuperset
_function_known = _FUNCTION_KEYS.issuperset


class MalformedChunk(Exception):
    """A chunk field the translator reads has the wrong type; ``args[0]`` is its path."""


def other_choices(choices: list[Any], unmapped: set[str]) -> dict[str, Any] | None:
    """n > 1, or a first choice that is not 0 (a backend default we never ask for): only choice 0
    is translated, wherever it sits; the others are named. Every choice must be an object."""
    for c in choices:
        if type(c) is not dict:
            raise MalformedChunk("choices[]")
    unmapped.add("choices[index!=0]")
    first: dict[str, Any] = choices[0]
    if first.get("index", 0) in (0, None):
        return first
    return choice_zero(choices)


def check_delta(delta: dict[str, Any], unmapped: set[str]) -> None:
    """Every delta but the common ``{"content": token}`` (which ``feed`` checks inline)."""
    tool_calls = delta.get("tool_calls")
    if tool_calls:  # first: a delta of one argument fragment is done after this loop
        if type(tool_calls) is not list:
            raise MalformedChunk("choices[].delta.tool_calls")
        for tc in tool_calls:
            if type(tc) is not dict:
                raise MalformedChunk("choices[].delta.tool_calls[]")
            index = tc.get("index")
            if type(index) is list or type(index) is dict:  # an identifier: any JSON scalar
                raise MalformedChunk("choices[].delta.tool_calls[].index")
            if not _tool_call_known(tc):
                extras(tc, _TOOL_CALL_KEYS, "choices[].delta.tool_calls[].", unmapped)
            fn = tc.get("function")
            if fn:
                if type(fn) is not dict:
                    raise MalformedChunk("choices[].delta.tool_calls[].function")
                if len(fn) != 1 or type(fn.get("arguments")) is not str:  # not one argument fragment
                    _check_function(fn, "choices[].delta.tool_calls[].function", unmapped)
        if len(delta) == 1:
            return
    if not _delta_known(delta):
        extras(delta, _DELTA_KEYS, "choices[].delta.", unmapped)
    content = delta.get("content")
    if content and type(content) is not str:
        if type(content) is not list:
            raise MalformedChunk("choices[].delta.content")
        _check_parts(content, unmapped)
    annotations = delta.get("annotations")
    if annotations is not None and type(annotations) is not list:
        raise MalformedChunk("choices[].delta.annotations")
    fc = delta.get("function_call")
    if fc:
        if type(fc) is not dict:
            raise MalformedChunk("choices[].delta.function_call")
        _check_function(fc, "choices[].delta.function_call", unmapped)
    for key in ("reasoning_content", "reasoning", "refusal"):
        value = delta.get(key)
        if value and type(value) is not str:
            unmapped.add(f"choices[].delta.{key} (not a string)")


def _check_function(fn: dict[str, Any], path: str, unmapped: set[str]) -> None:
    if not _function_known(fn):
        extras(fn, _FUNCTION_KEYS, path + ".", unmapped)
    args = fn.get("arguments")
    if args and type(args) is not str:
        # Some servers send the arguments object itself; it is re-encoded as the
        # arguments string, which fails for values nested beyond orjson's 254 levels.
        try:
            orjson.dumps(args)
        except orjson.JSONEncodeError:
            raise MalformedChunk(path + ".arguments") from None


def _check_parts(parts: list[Any], unmapped: set[str]) -> None:
    """Content parts: ``text`` → text, ``thinking`` → reasoning (``content_parts`` reads them)."""
    for part in parts:
        if type(part) is not dict:
            unmapped.add("choices[].delta.content[] (not an object)")
            continue
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            text = part.get("text")
            if text and type(text) is not str:
                raise MalformedChunk("choices[].delta.content[].text")
        elif kind == "thinking":
            thinking = part.get("thinking")
            if thinking and type(thinking) is not str:
                if type(thinking) is not list:
                    raise MalformedChunk("choices[].delta.content[].thinking")
                for inner in thinking:
                    if type(inner) is not dict or (inner.get("text") and type(inner.get("text")) is not str):
                        raise MalformedChunk("choices[].delta.content[].thinking[]")
            if part.get("signature"):
                unmapped.add("choices[].delta.content[type=thinking].signature")
        elif not is_empty(part):
            unmapped.add(f"choices[].delta.content[type={kind}]")


def chunk_extras(chunk: dict[str, Any], unmapped: set[str]) -> Any:
    """For a chunk with keys beyond ``CHUNK_KEYS``: name the unread ones; return Groq's
    ``x_groq.usage`` (the only place Groq puts usage), or None."""
    usage = None
    for key, value in chunk.items():
        if key in CHUNK_KEYS:
            continue
        if key == "x_groq" and type(value) is dict:
            usage = value.get("usage")
            extras(value, _X_GROQ_KEYS, "x_groq.", unmapped)
        elif not is_empty(value):
            unmapped.add(key)
    return usage


def chunk_usage(chunk: dict[str, Any], unmapped: set[str]) -> dict[str, Any] | None:
    """The chunk's usage object (Groq's is in ``x_groq``), or None; names the chunk's unread keys."""
    usage = chunk.get("usage")
    if not chunk_known(chunk):
        groq = chunk_extras(chunk, unmapped)
        if not usage:
            usage = groq
    if not usage:
        return None
    if type(usage) is not dict:
        unmapped.add("usage (not an object)")
        return None
    return usage


def late_choices(chunk: dict[str, Any], unmapped: set[str]) -> None:
    """A chunk with choices after the finish reason: nothing of it is used; say what it carried."""
    choices = chunk.get("choices")
    if type(choices) is not list:
        return
    for choice in choices:
        if type(choice) is not dict:
            continue
        extras(choice, CHOICE_KEYS, "choices[].", unmapped)
        delta = choice.get("delta")
        if type(delta) is dict and any(k != "role" and not is_empty(v) for k, v in delta.items()):
            unmapped.add("choices[].delta (after finish_reason)")


def extras(obj: dict[str, Any], known: frozenset[str], prefix: str, unmapped: set[str]) -> None:
    for key, value in obj.items():
        if key not in known and not is_empty(value):
            unmapped.add(prefix + key)


def unmapped_usage(usage: Any, unmapped: set[str]) -> None:
    """Name the non-empty fields of the usage kept for the Response that ``map_usage`` does not read."""
    if type(usage) is not dict:
        if usage:
            unmapped.add("usage (not an object)")
        return
    for key, value in usage.items():
        if key not in READ_FIELDS:
            if not is_empty(value):
                unmapped.add("usage." + key)
            continue
        inner = READ_FIELDS[key]
        if inner is not None and type(value) is dict:
            extras(value, inner, f"usage.{key}.", unmapped)


def is_empty(value: Any) -> bool:
    """True for a value that says nothing: null, "", 0, false, and lists or objects of only those."""
    if not value:
        return True
    if type(value) is dict:
        return all(is_empty(v) for v in value.values())
    if type(value) is list:
        return all(is_empty(v) for v in value)
    return False
