"""Property test: ``translate_request`` on any JSON input returns or raises ``InvalidRequest`` (a 400).

Any other exception would surface as a 500 from the resource, so the fuzzer
puts arbitrary JSON values into every field, at the top level and nested
(input items, content parts, tool outputs, tools, namespace tools,
tool_choice, text.format, reasoning, metadata, include), around a valid
request so that validation reaches the deep fields.
"""
from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.translate.errors import InvalidRequest
from proxy.translate.request import TranslationPolicy, translate_request

# Scalars include the values that trip naive code: bools (int subclass),
# huge/negative ints, floats, the empty string and strings that look like enums.
_WORDS = st.sampled_from(
    [
        "", "auto", "none", "required", "function", "custom", "namespace", "message", "user", "assistant",
        "system", "developer", "input_text", "output_text", "refusal", "input_image", "input_file",
        "input_audio", "reasoning", "function_call", "function_call_output", "custom_tool_call",
        "custom_tool_call_output", "item_reference", "json_schema", "json_object", "text", "grammar",
        "allowed_tools", "web_search", "high", "low", "f", "ns", "é✓😀", "a" * 70,
        "reasoning.encrypted_content", "message.output_text.logprobs", "rpx1.!!", "rpx1.eJwrSS0u",
    ]
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    _WORDS,
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_WORDS, st.text(max_size=6)), inner, max_size=4),
    ),
    max_leaves=12,
)


def shaped(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """Objects with plausible keys, each either well-typed, arbitrary JSON, or absent."""
    fields = {k: st.one_of(s, JSON) for k, s in keys.items()}
    return st.fixed_dictionaries({}, optional=fields)


PART = shaped(
    {
        "type": _WORDS,
        "text": st.text(max_size=5),
        "refusal": st.text(max_size=5),
        "image_url": st.one_of(st.just("https://x/i.png"), st.fixed_dictionaries({"url": st.text(max_size=5)})),
        "file_id": _WORDS,
        "file_data": st.text(max_size=5),
        "file_url": st.text(max_size=5),
        "filename": st.text(max_size=5),
        "detail": _WORDS,
        "input_audio": JSON,
        "annotations": st.just([]),
        "logprobs": st.just([]),
    }
)
PARTS = st.one_of(st.text(max_size=5), st.lists(PART, max_size=3))
ITEM = shaped(
    {
        "type": _WORDS,
        "role": _WORDS,
        "id": _WORDS,
        "status": _WORDS,
        "content": PARTS,
        "call_id": _WORDS,
        "name": _WORDS,
        "namespace": _WORDS,
        "arguments": st.one_of(st.just("{}"), st.text(max_size=5)),
        "input": st.text(max_size=5),
        "output": PARTS,
        "summary": st.lists(PART, max_size=2),
        "encrypted_content": _WORDS,
    }
)
FUNCTION_TOOL = shaped(
    {
        "type": st.sampled_from(["function", "custom"]),
        "name": _WORDS,
        "description": st.text(max_size=5),
        "parameters": st.just({"type": "object", "properties": {}}),
        "strict": st.booleans(),
        "format": shaped({"type": _WORDS, "syntax": _WORDS, "definition": st.text(max_size=5)}),
    }
)
TOOL = st.one_of(
    FUNCTION_TOOL,
    shaped({"type": st.just("namespace"), "name": _WORDS, "description": _WORDS, "tools": st.lists(FUNCTION_TOOL, max_size=3)}),
    shaped({"type": _WORDS}),
)
TOOL_REF = shaped({"type": _WORDS, "name": _WORDS, "namespace": _WORDS})
TOOL_CHOICE = st.one_of(
    _WORDS,
    TOOL_REF,
    shaped({"type": st.just("allowed_tools"), "mode": _WORDS, "tools": st.lists(TOOL_REF, max_size=3)}),
)
TEXT = shaped(
    {
        "format": shaped(
            {
                "type": _WORDS,
                "name": _WORDS,
                "schema": st.just({"type": "object"}),
                "strict": st.booleans(),
                "description": st.text(max_size=5),
            }
        ),
        "verbosity": _WORDS,
    }
)
REASONING = shaped({"effort": _WORDS, "summary": _WORDS, "generate_summary": _WORDS})

FIELDS: dict[str, st.SearchStrategy] = {
    "model": st.sampled_from(["m", "", "a b", "x" * 300]),
    "input": st.one_of(st.text(max_size=5), st.lists(ITEM, max_size=5)),
    "instructions": st.text(max_size=5),
    "tools": st.lists(TOOL, max_size=4),
    "tool_choice": TOOL_CHOICE,
    "text": TEXT,
    "reasoning": REASONING,
    "metadata": st.dictionaries(st.text(max_size=70), st.text(max_size=5), max_size=3),
    "include": st.lists(_WORDS, max_size=3),
    "stream": st.booleans(),
    "store": st.booleans(),
    "background": st.booleans(),
    "parallel_tool_calls": st.booleans(),
    "max_output_tokens": st.integers(-5, 10**6),
    "max_tool_calls": st.integers(-5, 50),
    "temperature": st.floats(-1, 3),
    "top_p": st.floats(-1, 2),
    "presence_penalty": st.floats(-3, 3),
    "frequency_penalty": st.floats(-3, 3),
    "top_logprobs": st.integers(-1, 25),
    "user": _WORDS,
    "safety_identifier": _WORDS,
    "prompt_cache_key": _WORDS,
    "service_tier": _WORDS,
    "truncation": _WORDS,
    "client_metadata": JSON,
    "stream_options": JSON,
    "previous_response_id": JSON,
    "conversation": JSON,
    "prompt": JSON,
}
_REQUIRED = ("model", "input")
_STATEFUL = ("previous_response_id", "conversation", "prompt", "background")


def mostly(good: st.SearchStrategy, weight: int = 4) -> st.SearchStrategy:
    """``good`` most of the time, arbitrary JSON otherwise: a 400 on one field
    must not stop the fuzzer from reaching the others."""
    return st.integers(0, weight).flatmap(lambda k: JSON if k == 0 else good)


BODY = st.fixed_dictionaries(
    {"model": mostly(st.just("m"), 8), "input": mostly(FIELDS["input"], 6)},
    optional={
        k: mostly(st.none() if k in _STATEFUL else s) for k, s in FIELDS.items() if k not in _REQUIRED
    },
)
POLICY = st.builds(
    TranslationPolicy,
    builtin_tools=st.sampled_from(["drop", "reject"]),
    max_tokens_field=st.sampled_from(["max_tokens", "max_completion_tokens"]),
    forward_verbosity=st.booleans(),
    reasoning_in_history=st.booleans(),
    forward_prompt_cache_key=st.booleans(),
    forward_prompt_cache_retention=st.booleans(),
    forward_prompt_cache_options=st.booleans(),
    forward_service_tier=st.booleans(),
)


def _check(body, policy) -> None:
    try:
        chat, ctx = translate_request(body, policy, now=1)
    except InvalidRequest as e:
        assert e.message and isinstance(e.message, str)
        return
    # A success must be sendable upstream and describe a usable conversation.
    orjson.dumps(chat)
    orjson.dumps(ctx.echo)
    assert chat["messages"], chat
    assert chat["stream"] is True


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY, policy=POLICY)
def test_translate_request_never_crashes(body, policy):
    _check(body, policy)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON, policy=POLICY)
def test_translate_request_arbitrary_body(body, policy):
    _check(body, policy)


# ------------------------------------------------------------------ one path at a time
#
# Real Codex requests (every field valid) with exactly one value, at any depth,
# replaced by arbitrary JSON: reaches every nested check with the rest valid.

_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "codex_requests.json"
_CODEX = [v for k, v in orjson.loads(_FIXTURES.read_bytes()).items() if not k.startswith("_")]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


_CODEX_PATHS = [(n, p) for n, body in enumerate(_CODEX) for p in _paths(body) if p]


def _replace(value, path, new):
    """A copy of ``value`` with ``path`` set to ``new`` (only the spine is copied)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    out = list(value)
    out[head] = _replace(value[head], rest, new)
    return out


def _delete(value, path):
    head, rest = path[0], path[1:]
    if rest:
        return _replace(value, path[:1], _delete(value[head], rest))
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != head}
    return [v for i, v in enumerate(value) if i != head]


def test_codex_fixtures_translate():
    for body in _CODEX:
        translate_request(body, TranslationPolicy(), now=1)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.sampled_from(_CODEX_PATHS),
    new=st.one_of(JSON, PART, ITEM, TOOL),
    delete=st.booleans(),
    policy=POLICY,
)
def test_codex_request_with_one_value_replaced(where, new, delete, policy):
    n, path = where
    body = _delete(_CODEX[n], path) if delete else _replace(_CODEX[n], path, new)
    _check(body, policy)
