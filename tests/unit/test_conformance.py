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
    resp = dict(good[-1]["response"], billing={"payer": "developer"})
    with pytest.raises(AssertionError, match="unknown top-level keys"):
        check_response(resp)


def test_conversation_key_only_in_openai_shape(good):
    """Exception 6: `conversation` may stand beside the 31 keys, as {"id": "conv_…"} only."""
    check_response(dict(good[-1]["response"], conversation={"id": "conv_1"}))
    for bad in (None, {"id": "resp_1"}, {"id": "conv_1", "extra": 1}):
        with pytest.raises(AssertionError):
            check_response(dict(good[-1]["response"], conversation=bad))


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


# --------------------------------------------------------------- reasoning summaries


SUMMARY_CHUNKS = [
    _ch({"reasoning_content": "think "}),
    _ch({"reasoning_content": "hard"}),
    _ch({"content": "Hi"}, "stop"),
    {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
]


@pytest.fixture
def good_summary() -> list[dict]:
    events = _events(SUMMARY_CHUNKS, reasoning_as_summary=True)
    check_stream(events)
    return copy.deepcopy(events)


def _renumber(events):
    for i, e in enumerate(events):
        e["sequence_number"] = i
    return events


def test_good_summary_stream_passes(good_summary):
    final = check_stream(good_summary)
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": "think hard"}]
    cut = _events([_ch({"reasoning_content": "x"}, "length")], reasoning_as_summary=True)
    assert check_stream(cut)["output"][0]["status"] == "incomplete"


def test_summary_delta_before_part_added_rejected(good_summary):
    i = good_summary.index(_find(good_summary, "response.reasoning_summary_part.added"))
    good_summary[i], good_summary[i + 1] = good_summary[i + 1], good_summary[i]
    with pytest.raises(AssertionError, match="before reasoning_summary_part.added"):
        check_stream(_renumber(good_summary))


def test_summary_done_text_mismatch_rejected(good_summary):
    _find(good_summary, "response.reasoning_summary_text.done")["text"] = "think harder"
    with pytest.raises(AssertionError, match="concatenated deltas"):
        check_stream(good_summary)


def test_summary_done_twice_rejected(good_summary):
    done = _find(good_summary, "response.reasoning_summary_text.done")
    good_summary.insert(good_summary.index(done) + 1, dict(done))
    with pytest.raises(AssertionError, match="after the summary part's text done"):
        check_stream(_renumber(good_summary))


def test_summary_part_never_done_rejected(good_summary):
    good_summary.remove(_find(good_summary, "response.reasoning_summary_part.done"))
    with pytest.raises(AssertionError, match="open summary part"):
        check_stream(_renumber(good_summary))


def test_summary_part_added_with_text_rejected(good_summary):
    _find(good_summary, "response.reasoning_summary_part.added")["part"]["text"] = "x"
    with pytest.raises(AssertionError, match="summary part added as"):
        check_stream(good_summary)


def test_summary_index_out_of_order_rejected(good_summary):
    for e in good_summary:
        if "summary_index" in e:
            e["summary_index"] = 1
    with pytest.raises(AssertionError, match="summary_index 1 out of order"):
        check_stream(good_summary)


def test_final_summary_must_equal_done_parts(good_summary):
    done = _find(good_summary, "response.output_item.done")
    done["item"]["summary"] = [{"type": "summary_text", "text": "something else"}]
    with pytest.raises(AssertionError, match="item summary != its done summary parts"):
        check_stream(good_summary)


def test_summary_item_with_content_rejected(good_summary):
    item = good_summary[-1]["response"]["output"][0]
    item["content"] = [{"type": "reasoning_text", "text": "think hard"}]
    with pytest.raises(AssertionError, match="both summary and content"):
        check_response(good_summary[-1]["response"])


def test_summary_without_summary_events_rejected(good):
    item = _find(good, "response.output_item.done")["item"]
    assert item["type"] == "reasoning"
    item["summary"] = [{"type": "summary_text", "text": "think"}]
    with pytest.raises(AssertionError, match="reasoning summary without summary events"):
        check_stream(good)


def test_summary_part_on_a_reasoning_text_item_rejected(good):
    added = _find(good, "response.content_part.added")
    bogus = {"type": "response.reasoning_summary_part.added", "item_id": added["item_id"],
             "output_index": added["output_index"], "summary_index": 0, "part": {"type": "summary_text", "text": ""}}
    good.insert(good.index(added) + 1, bogus)
    with pytest.raises(AssertionError, match="summary part added to an item streaming reasoning_text"):
        check_stream(_renumber(good))


def test_summary_part_status_must_match_the_item(good_summary):
    bad = copy.deepcopy(good_summary)
    _find(bad, "response.reasoning_summary_part.done")["status"] = "incomplete"
    with pytest.raises(AssertionError, match="exactly when the item is"):
        check_stream(bad)
    cut = _events([_ch({"reasoning_content": "x"}, "length")], reasoning_as_summary=True)
    del _find(cut, "response.reasoning_summary_part.done")["status"]
    with pytest.raises(AssertionError, match="exactly when the item is"):
        check_stream(cut)


# ------------------------------------------------- a background response's queued start


def _queued_events() -> list[dict]:
    ctx = ResponseContext(response_id="resp_q", created_at=1, model="m", echo=default_echo(background=True))
    t = StreamTranslator(ctx)
    ev = t.queue() + t.start()
    for c in GOOD_CHUNKS:
        ev += t.feed(c)
    return ev + t.finish()


def _renumbered(events: list[dict]) -> list[dict]:
    return [dict(e, sequence_number=i) for i, e in enumerate(events)]


def test_a_queued_start_passes():
    events = _queued_events()
    assert [e["type"] for e in events[:4]] == [
        "response.created", "response.queued", "response.in_progress", "response.output_item.added"
    ]
    assert check_stream(events)["status"] == "completed"


def test_a_queued_response_that_fails_before_it_starts_passes_and_nothing_else_after_queued():
    ctx = ResponseContext(response_id="resp_q", created_at=1, model="m", echo=default_echo(background=True))
    t = StreamTranslator(ctx)
    events = t.queue() + t.fail("the response store is unavailable", "server_error")
    assert [e["type"] for e in events] == ["response.created", "response.queued", "error", "response.failed"]
    assert check_stream(events)["status"] == "failed"
    good = _queued_events()
    created, queued = good[0], good[1]
    for tail in (good[3:4] + events[2:], events[3:], events[2:3] + good[-1:]):
        with pytest.raises(BAD):
            check_stream(_renumbered([created, queued, *tail]))
            pytest.fail(str([e["type"] for e in tail]))


def test_a_queued_start_out_of_its_grammar_is_rejected():
    good = _queued_events()
    created, queued, in_progress, rest = good[0], good[1], good[2], good[3:]

    def status(ev: dict, value: str) -> dict:
        return dict(ev, response=dict(ev["response"], status=value))

    bad = {
        "created queued, no queued event": [created, in_progress, *rest],
        "queued, no in_progress": [created, queued, *rest],
        "queued before created": [queued, created, in_progress, *rest],
        "queued twice": [created, queued, queued, in_progress, *rest],
        "queued after in_progress": [created, in_progress, queued, *rest],
        "queued later on": [created, queued, in_progress, rest[0], queued, *rest[1:]],
        "created in_progress, then queued": [status(created, "in_progress"), queued, in_progress, *rest],
        "queued event with an in_progress Response": [created, status(queued, "in_progress"), in_progress, *rest],
        "in_progress event with a queued Response": [created, queued, status(in_progress, "queued"), *rest],
        "ends after its head": [created, queued, in_progress],
    }
    for what, events in bad.items():
        with pytest.raises(BAD):
            check_stream(_renumbered(events))
            pytest.fail(what)
    plain = [dict(e, response=dict(e["response"], background=False)) if "response" in e else e for e in good]
    with pytest.raises(AssertionError, match="not a background one"):
        check_stream(plain)


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
