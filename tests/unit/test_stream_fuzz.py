"""Property test: ``StreamTranslator.feed`` survives any chunk-shaped dict.

A malformed upstream chunk must never raise out of the translator (the relay
would drop the client's stream without a terminal event, and Codex reports
"stream disconnected"). There is no catch-all in ``feed``: a chunk of a shape it
cannot read must be refused by the shape check (``proxy/translate/stream/shape.py``)
before any of it is used, so this test is the proof that the check covers every read. Whatever was fed, the events emitted so far plus
``finish()`` — or ``fail()`` — form a stream the conformance checker accepts,
ending in exactly one terminal event; JSON mode builds the same response.
"""
from __future__ import annotations

import itertools

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.translate.context import ResponseContext
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_response, check_stream, default_echo

_WORDS = st.sampled_from(
    ["", "f", "g", "ns__f", "apply_patch", "call_1", "call_2", "stop", "length", "tool_calls", "content_filter",
     "error", "function_call", "weird_reason", "assistant", "<think>", "</think>", " ", "\n\n", "é😀", '{"input":"x"}',
     '{"a":', "1}"]
)
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6), _WORDS,
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.one_of(_WORDS, st.text(max_size=4)), inner, max_size=3)),
    max_leaves=8,
)


def anyof(good: st.SearchStrategy, weight: int = 3) -> st.SearchStrategy:
    return st.integers(0, weight).flatmap(lambda k: JSON if k == 0 else good)


def shaped(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: anyof(s) for k, s in keys.items()})


FUNCTION = shaped({"name": _WORDS, "arguments": st.one_of(_WORDS, st.text(max_size=6))})
TOOL_CALL = shaped(
    {"index": st.integers(-1, 3), "id": _WORDS, "type": st.just("function"), "function": FUNCTION}
)
LOGPROB = shaped(
    {"token": _WORDS, "logprob": st.floats(-5, 0), "bytes": st.lists(st.integers(0, 255), max_size=3),
     "top_logprobs": st.lists(shaped({"token": _WORDS, "logprob": st.floats(-5, 0)}), max_size=2)}
)
TEXT_PART = shaped({"type": st.just("text"), "text": _WORDS})
PART = st.one_of(
    shaped({"type": _WORDS, "text": _WORDS}),
    shaped({"type": st.just("thinking"), "thinking": st.one_of(_WORDS, st.lists(TEXT_PART, max_size=2))}),
)
DETAIL = shaped(
    {"type": st.sampled_from(["reasoning.text", "reasoning.summary", "reasoning.encrypted", "other"]),
     "text": _WORDS, "summary": _WORDS, "data": _WORDS, "signature": _WORDS}
)
DELTA = shaped(
    {
        "role": _WORDS,
        "content": st.one_of(_WORDS, st.text(max_size=6), st.lists(PART, max_size=2)),
        "reasoning_details": st.lists(DETAIL, max_size=2),
        "reasoning_content": st.one_of(_WORDS, st.text(max_size=6)),
        "reasoning": st.one_of(_WORDS, st.text(max_size=6)),
        "refusal": st.one_of(_WORDS, st.text(max_size=6)),
        "tool_calls": st.lists(TOOL_CALL, max_size=3),
        "function_call": FUNCTION,
    }
)
CHOICE = shaped(
    {
        "index": st.integers(0, 2),
        "delta": DELTA,
        "finish_reason": st.one_of(st.none(), _WORDS),
        "logprobs": shaped({"content": st.lists(LOGPROB, max_size=2)}),
    }
)
USAGE = shaped(
    {
        # orjson parses integers beyond 64 bits as floats: 1e30 is a real possibility.
        "prompt_tokens": st.one_of(st.integers(-1, 100), st.integers(0, 2**64 - 1), st.floats(0, 1e300)),
        "completion_tokens": st.one_of(st.integers(-1, 100), st.integers(0, 2**64 - 1)),
        "total_tokens": st.integers(-1, 300),
        "prompt_tokens_details": shaped({"cached_tokens": st.integers(0, 9)}),
        "completion_tokens_details": shaped({"reasoning_tokens": st.integers(0, 9)}),
    }
)
CHUNK = shaped(
    {
        "id": _WORDS,
        "object": st.just("chat.completion.chunk"),
        "choices": st.lists(CHOICE, max_size=3),
        "usage": USAGE,
        "error": st.one_of(st.none(), shaped({"message": _WORDS, "code": _WORDS})),
        "x_groq": shaped({"usage": USAGE, "id": _WORDS}),
    }
)
CTX = st.fixed_dictionaries(
    {
        "custom_tools": st.sampled_from([frozenset(), frozenset({"apply_patch", "f"})]),
        "namespaced": st.sampled_from([{}, {"ns__f": ("ns", "f")}]),
        "allowed_tools": st.sampled_from([None, frozenset({"f"}), frozenset()]),
        "include_encrypted_reasoning": st.booleans(),
        "reasoning_as_summary": st.booleans(),
        "include_logprobs": st.booleans(),
    }
)


def _run(chunks: list, ctx_kw: dict, ending: str, emit: bool) -> tuple[list[dict], dict]:
    counter = itertools.count()
    ctx = ResponseContext(response_id="resp_z", created_at=1, model="m", echo=default_echo(), **ctx_kw)
    t = StreamTranslator(ctx, emit_events=emit, new_id=lambda prefix: f"{prefix}_{next(counter):04d}")
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    if ending == "fail":
        events += t.fail("client went away", "backend_error")
    else:  # "finish": the connection closed; "clean": [DONE]
        events += t.finish(clean=ending == "clean")
    assert t.done
    assert t.finish() == [] and t.fail("again") == [] and t.feed({"choices": []}) == []
    # Every event must serialize as we send it.
    for ev in events:
        orjson.dumps(ev)
    return events, t.response


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.one_of(CHUNK, CHUNK, CHUNK, JSON), max_size=8),
    ctx_kw=CTX,
    ending=st.sampled_from(["finish", "clean", "fail"]),
)
def test_feed_never_raises_and_stream_stays_valid(chunks, ctx_kw, ending):
    events, final = _run(chunks, ctx_kw, ending, emit=True)
    assert check_stream(events) == final
    _, json_final = _run(chunks, ctx_kw, ending, emit=False)
    check_response(json_final)
    strip = lambda r: {**r, "completed_at": None}  # noqa: E731
    assert strip(json_final) == strip(final)


def test_arguments_too_deep_to_re_encode_are_malformed_not_a_crash():
    """orjson parses 1024 levels but encodes 254: an arguments object in between (TGI sends the
    object itself) cannot become the arguments string. That is the chunk's fault, named as such.
    (Not in the golden corpus: a trace of it cannot be recorded, for the same reason.)"""
    deep = orjson.loads(b"[" * 300 + b"]" * 300)
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "f", "arguments": deep}}]}}]}
    events, final = _run([{"choices": [{"index": 0, "delta": {"content": "kept"}}]}, chunk], {}, "finish", emit=True)
    assert check_stream(events) == final and final["status"] == "failed"
    assert final["error"]["message"] == "malformed chunk from upstream: choices[].delta.tool_calls[].function.arguments"
