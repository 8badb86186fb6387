"""The conformance checker itself: it accepts good streams and rejects each kind of bad one."""
from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from proxy.translate.context import ResponseContext
from proxy.translate.sse import DONE, KEEPALIVE, encode_event
from proxy.translate.stream import StreamTranslator
from tests.conformance import RESPONSE_KEYS, check_response, check_stream, default_echo, parse_sse

BAD = (AssertionError, ValidationError)


def _events(chunks, **ctx_kw) -> list[dict]:
    ctx = ResponseContext(response_id="resp_c", created_at=1, model="m", echo=default_echo(), **ctx_kw)
    t = StreamTranslator(ctx)
    ev = t.start()
    for c in chunks:
        ev += t.feed(c)
    return ev + t.finish()


def _ch(delta, finish=None):
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


GOOD_CHUNKS = [
    _ch({"reasoning_content": "think"}),
    _ch({"content": "Hello"}),
    _ch({"content": " there"}),
    _ch({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a":'}}]}),
    _ch({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"),
    {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
]


@pytest.fixture
def good() -> list[dict]:
    events = _events(GOOD_CHUNKS)
    check_stream(events)
    return copy.deepcopy(events)


def _find(events, type_, n=0):
    return [e for e in events if e["type"] == type_][n]


def test_response_keys_are_the_spec_31():
    assert len(RESPONSE_KEYS) == 31


def test_good_stream_passes(good):
    final = check_stream(good)
    assert final["status"] == "completed"


def test_missing_top_level_key_rejected(good):
    resp = dict(good[-1]["response"])
    del resp["prompt_cache_key"]
    with pytest.raises(AssertionError, match="lacks keys"):
        check_response(resp)


def test_extra_top_level_key_rejected(good):
    resp = dict(good[-1]["response"], conversation=None)
    with pytest.raises(AssertionError, match="unknown top-level keys"):
        check_response(resp)


def test_unknown_nested_key_rejected_via_openai_extras(good):
    resp = copy.deepcopy(good[-1]["response"])
    resp["output"][1]["content"][0]["surprise"] = 1
    with pytest.raises(AssertionError, match="surprise"):
        check_response(resp)


def test_wrong_field_type_rejected(good):
    resp = copy.deepcopy(good[-1]["response"])
    resp["usage"]["input_tokens"] = "many"
    with pytest.raises(ValidationError):
        check_response(resp)


def test_completed_without_usage_rejected(good):
    resp = dict(good[-1]["response"], usage=None)
    with pytest.raises(AssertionError):
        check_response(resp)


def test_missing_cache_write_tokens_rejected(good):
    resp = copy.deepcopy(good[-1]["response"])
    del resp["usage"]["input_tokens_details"]["cache_write_tokens"]
    with pytest.raises(BAD):
        check_response(resp)


def test_sequence_gap_rejected(good):
    good[5]["sequence_number"] += 1
    with pytest.raises(AssertionError, match="sequence_number"):
        check_stream(good)


def test_delta_text_mismatch_rejected(good):
    _find(good, "response.output_text.delta")["delta"] = "Jello"
    with pytest.raises(AssertionError, match="concatenated deltas"):
        check_stream(good)


def test_arguments_mismatch_rejected(good):
    _find(good, "response.function_call_arguments.done")["arguments"] = "{}"
    with pytest.raises(AssertionError):
        check_stream(good)


def test_duplicate_output_index_rejected(good):
    _find(good, "response.output_item.added", 1)["output_index"] = 0
    with pytest.raises(AssertionError):
        check_stream(good)


def test_final_output_must_equal_done_items(good):
    good[-1]["response"]["output"] = good[-1]["response"]["output"][:-1]
    with pytest.raises(AssertionError, match="final output"):
        check_stream(good)


def test_open_responses_reasoning_name_rejected(good):
    ev = _find(good, "response.reasoning_text.delta")
    ev["type"] = "response.reasoning.delta"
    with pytest.raises(AssertionError, match="reasoning_text"):
        check_stream(good)


def test_nested_error_event_rejected():
    events = _events([_ch({"content": "x"})])  # truncated -> error + failed
    check_stream(events)
    err = events[-2]
    err["error"] = {"message": err["message"]}
    with pytest.raises(AssertionError, match="flat"):
        check_stream(events)


def test_two_terminal_events_rejected(good):
    extra = dict(good[-1], sequence_number=len(good))
    with pytest.raises(AssertionError, match="terminal"):
        check_stream(good + [extra])


def test_item_done_twice_rejected(good):
    done = _find(good, "response.output_item.done")
    dup = dict(done)
    good.insert(good.index(done) + 1, dup)
    for i, e in enumerate(good):
        e["sequence_number"] = i
    with pytest.raises(AssertionError, match="after output_item.done"):
        check_stream(good)


def test_delta_before_item_added_rejected(good):
    i = good.index(_find(good, "response.output_item.added", 1))
    j = good.index(_find(good, "response.output_text.delta"))
    good[i], good[j] = good[j], good[i]
    for k, e in enumerate(good):
        e["sequence_number"] = k
    with pytest.raises(AssertionError):
        check_stream(good)


def test_output_text_delta_without_logprobs_rejected(good):
    del _find(good, "response.output_text.delta")["logprobs"]
    with pytest.raises(ValidationError):
        check_stream(good)


def test_custom_tool_call_is_validated_by_openai_only():
    events = _events(
        [_ch({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "apply_patch", "arguments": '{"input":"p"}'}}]}, "tool_calls")],
        custom_tools=frozenset({"apply_patch"}),
    )
    final = check_stream(events)
    assert final["output"][0]["type"] == "custom_tool_call"
    bad = copy.deepcopy(final)
    del bad["output"][0]["input"]
    with pytest.raises(ValidationError):
        check_response(bad)


# --------------------------------------------------------------- parse_sse


def test_parse_sse_roundtrip(good):
    raw = b"".join(encode_event(e) for e in good[:3]) + KEEPALIVE + b"".join(encode_event(e) for e in good[3:]) + DONE
    assert parse_sse(raw) == good


def test_parse_sse_requires_done(good):
    with pytest.raises(AssertionError, match="DONE"):
        parse_sse(b"".join(encode_event(e) for e in good))


def test_parse_sse_requires_matching_event_name(good):
    raw = encode_event(good[0]).replace(b"event: response.created", b"event: response.in_progress") + DONE
    with pytest.raises(AssertionError, match="JSON type"):
        parse_sse(raw)


def test_parse_sse_requires_one_line_data():
    raw = b'event: x\ndata: {"type":\ndata: "x"}\n\n' + DONE
    with pytest.raises(AssertionError, match="2 lines"):
        parse_sse(raw)
