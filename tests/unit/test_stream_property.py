"""Property tests: network-read boundaries and chunk boundaries never change the result."""
from __future__ import annotations

import itertools

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.translate.context import ResponseContext
from proxy.translate.sse import SSEDecoder
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_stream, default_echo

# Text built from tokens, so tag fragments and multi-byte characters are common.
TEXT = st.lists(
    st.sampled_from(list("ab <>/\n\r\t\"\\{}") + ["é", "✓", "😀", "中", "\u2028", "think", "<think>", "</think>"]),
    max_size=20,
).map("".join)


def translate_payloads(payloads: list[bytes], **ctx_kw) -> list[dict]:
    """Feed decoded SSE payloads through a translator with deterministic ids and clock (two runs
    compared across a second boundary must not differ in ``completed_at``: a CI flake)."""
    counter = itertools.count()
    ctx = ResponseContext(response_id="resp_p", created_at=1, model="m", echo=default_echo(), **ctx_kw)
    t = StreamTranslator(ctx, new_id=lambda prefix: f"{prefix}_{next(counter):04d}", clock=lambda: 2.0)
    events = t.start()
    for p in payloads:
        if p == b"[DONE]":
            break
        events += t.feed(orjson.loads(p))
    events += t.finish()
    return events


def build_chunks(reasoning: list[str], content: list[str], args: list[str]) -> list[dict]:
    chunks = []
    for r in reasoning:
        chunks.append({"choices": [{"index": 0, "delta": {"reasoning_content": r}, "finish_reason": None}]})
    for c in content:
        chunks.append({"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]})
    for i, a in enumerate(args):
        call = {"index": 0, "function": {"arguments": a}}
        if i == 0:
            call.update(id="call_1", function={"name": "f", "arguments": a})
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    return chunks


def to_sse(chunks: list[dict], crlf: bool, comments: bool) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    out = b""
    for c in chunks:
        if comments:
            out += b": ping" + nl + nl
        out += b"data: " + orjson.dumps(c) + nl + nl
    return out + b"data: [DONE]" + nl + nl


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reasoning=st.lists(TEXT, max_size=3),
    content=st.lists(TEXT, max_size=4),
    args=st.lists(TEXT, max_size=3),
    crlf=st.booleans(),
    comments=st.booleans(),
    drop_final_blank=st.booleans(),
    summary=st.booleans(),
    data=st.data(),
)
def test_read_boundaries_do_not_matter(reasoning, content, args, crlf, comments, drop_final_blank, summary, data):
    chunks = build_chunks(reasoning, content, args)
    raw = to_sse(chunks, crlf, comments)
    if drop_final_blank:
        raw = raw[: -4 if crlf else -2]  # EOF right after "data: [DONE]"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    pieces = [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])]

    whole = SSEDecoder()
    reference = whole.feed(raw) + whole.flush()
    dec = SSEDecoder()
    payloads: list[bytes] = []
    for p in pieces:
        payloads += dec.feed(p)
    payloads += dec.flush()
    assert payloads == reference
    assert len(payloads) == len(chunks) + 1 and payloads[-1] == b"[DONE]"

    events = translate_payloads(payloads, reasoning_as_summary=summary)
    assert events == translate_payloads(reference, reasoning_as_summary=summary)
    final = check_stream(events)
    # The text survives exactly (modulo the think/whitespace rules checked elsewhere).
    if not any(c.strip() for c in content):
        assert all(it["type"] != "message" for it in final["output"])


@settings(max_examples=200, deadline=None)
@given(
    reasoning=TEXT,
    answer=TEXT.filter(lambda s: s.strip() != ""),
    lead=st.sampled_from(["", " ", "\n\n"]),
    summary=st.booleans(),
    data=st.data(),
)
def test_content_chunk_boundaries_do_not_matter(reasoning, answer, lead, summary, data):
    # Keep the answer from starting with whitespace (stripped after </think>)
    # and the reasoning free of the close tag, so the expectation is exact.
    while "</think>" in reasoning:
        reasoning = reasoning.replace("</think>", "")
    answer = answer.lstrip()
    full = f"{lead}<think>{reasoning}</think>\n{answer}"
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(full) - 1)), max_size=8))))
    pieces = [full[a:b] for a, b in zip([0] + cuts, cuts + [len(full)])]
    chunks = [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces if p]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = translate_payloads([orjson.dumps(c) for c in chunks], reasoning_as_summary=summary)
    final = check_stream(events)
    field = "summary" if summary else "content"
    got_r = "".join(p["text"] for it in final["output"] if it["type"] == "reasoning" for p in it[field])
    got_t = "".join(p["text"] for it in final["output"] if it["type"] == "message" for p in it["content"])
    assert got_r == reasoning
    assert got_t == answer
