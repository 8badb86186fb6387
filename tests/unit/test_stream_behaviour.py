"""StreamTranslator API contract: snapshots, sequence numbers, idempotence, fail(), JSON mode."""
from __future__ import annotations

import orjson

from proxy.translate.context import ResponseContext
from proxy.translate.response import response_object
from proxy.translate.stream import TRUNCATED_MESSAGE, StreamTranslator
from tests.conformance import check_response, check_stream, default_echo


def make(**kw) -> StreamTranslator:
    emit = kw.pop("emit_events", True)
    ctx = ResponseContext(response_id="resp_b", created_at=100, model="m", echo=default_echo(), **kw)
    return StreamTranslator(ctx, emit_events=emit)


def ch(delta, finish=None):
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_start_events_carry_in_progress_snapshot():
    t = make()
    created, in_progress = t.start()
    assert created["type"] == "response.created" and created["sequence_number"] == 0
    assert in_progress["type"] == "response.in_progress" and in_progress["sequence_number"] == 1
    for ev in (created, in_progress):
        r = check_response(ev["response"])
        assert r["status"] == "in_progress" and r["output"] == [] and r["usage"] is None
        assert r["completed_at"] is None
    assert t.response["status"] == "in_progress" and not t.done


def test_a_background_response_starts_queued_then_in_progress_numbered_on():
    """``queue()`` (a background job's head): created and queued with the Response ``queued``,
    the same as the queued Response the POST stores; then ``start()`` sends in_progress alone."""
    ctx = ResponseContext(response_id="resp_b", created_at=100, model="m", echo=default_echo(background=True))
    t = StreamTranslator(ctx)
    head = t.queue()
    assert [(e["type"], e["sequence_number"]) for e in head] == [("response.created", 0), ("response.queued", 1)]
    for ev in head:
        assert check_response(ev["response"]) == response_object(t.ctx, status="queued")
    assert head[0]["response"] is not head[1]["response"]
    assert t.queue() == []  # once
    (began,) = t.start()
    assert (began["type"], began["sequence_number"]) == ("response.in_progress", 2)
    assert check_response(began["response"])["status"] == "in_progress"
    events = head + [began] + t.feed(ch({"content": "hi"}, "stop")) + t.finish(clean=True)
    assert check_stream(events)["status"] == "completed"
    quiet = StreamTranslator(ctx, emit_events=False)
    assert quiet.queue() == [] and quiet.start() == []  # JSON mode: no events


def test_events_already_returned_do_not_change():
    t = make()
    start = t.start()
    events = start + t.feed(ch({"content": "Hello"}))
    frozen = orjson.dumps(events)
    events2 = t.feed(ch({"content": " world"}, "stop"))
    events2 += t.feed({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    events2 += t.finish()
    assert orjson.dumps(events) == frozen
    assert start[0]["response"]["output"] == [] and start[0]["response"]["status"] == "in_progress"
    added = [e for e in events if e["type"] == "response.output_item.added"][0]
    assert added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    check_stream(events + events2)


def test_terminal_only_from_finish_so_late_usage_is_read():
    t = make()
    ev = t.start() + t.feed(ch({"content": "a"})) + t.feed(ch({}, "stop"))
    assert not t.done
    assert not any(e["type"].startswith("response.completed") for e in ev)
    # item closed already at finish_reason
    assert ev[-1]["type"] == "response.output_item.done"
    ev += t.feed({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
    ev += t.finish()
    final = check_stream(ev)
    assert final["usage"]["input_tokens"] == 7 and final is t.response and t.done


def test_after_done_everything_is_a_no_op():
    t = make()
    t.start()
    t.feed(ch({"content": "a"}, "stop"))
    assert t.finish()[-1]["type"] == "response.completed"
    assert t.finish() == []
    assert t.feed(ch({"content": "more"})) == []
    assert t.fail("late") == []
    assert t.response["status"] == "completed"


def test_fail_sequence_and_shape():
    t = make()
    ev = t.start() + t.feed(ch({"content": "partial"}))
    ev += t.fail("upstream read timed out", "timeout_code_not_in_openai_list")
    err, failed = ev[-2], ev[-1]
    # The error event keeps the precise code; response.error.code is the SDK's enum.
    assert err == {
        "type": "error",
        "sequence_number": err["sequence_number"],
        "code": "timeout_code_not_in_openai_list",
        "message": "upstream read timed out",
        "param": None,
    }
    assert failed["sequence_number"] == err["sequence_number"] + 1
    final = check_stream(ev)
    assert final["status"] == "failed"
    assert final["error"] == {"code": "server_error", "message": "upstream read timed out"}
    assert final["output"][0]["status"] == "incomplete"
    assert t.done


def test_fail_keeps_known_code():
    t = make()
    ev = t.start() + t.fail("too many requests", "rate_limit_exceeded")
    assert check_stream(ev)["error"]["code"] == "rate_limit_exceeded"


def test_fail_after_finish_reason_before_usage():
    t = make()
    ev = t.start() + t.feed(ch({"content": "a"}, "stop")) + t.fail("connection reset")
    final = check_stream(ev)
    assert final["status"] == "failed" and final["output"][0]["status"] == "completed"


def test_truncated_message():
    t = make()
    ev = t.start() + t.feed(ch({"content": "a"})) + t.finish()
    assert check_stream(ev)["error"]["message"] == TRUNCATED_MESSAGE


def test_json_mode_builds_no_events():
    t = make(emit_events=False)
    assert t.start() == []
    assert t.feed(ch({"reasoning_content": "r"})) == []
    assert t.feed(ch({"content": "<b>ok</b>"}, "stop")) == []
    assert t.finish() == []
    final = check_response(t.response)
    assert [it["type"] for it in final["output"]] == ["reasoning", "message"]
    assert final["output"][1]["content"][0]["text"] == "<b>ok</b>"


def test_json_mode_failure():
    t = make(emit_events=False)
    t.feed(ch({"content": "x"}))
    assert t.fail("boom") == []
    assert check_response(t.response)["status"] == "failed"


def test_sequence_numbers_count_every_event():
    t = make()
    ev = t.start()
    for piece in ["a", "b", "c"]:
        ev += t.feed(ch({"content": piece}))
    ev += t.feed(ch({}, "stop")) + t.finish()
    assert [e["sequence_number"] for e in ev] == list(range(len(ev)))


# ----------------------------------------------------------------- review regressions


def _run(chunks, **kw):
    t = make(**kw)
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    events += t.finish()
    for ev in events:
        orjson.dumps(ev)  # what the relay does with every event
    return check_stream(events)


def test_choice_zero_is_found_when_not_first_in_the_list():
    # n > 1 backends may batch choices; choice 0 must not be lost behind choice 1.
    final = _run(
        [
            {"choices": [{"index": 1, "delta": {"content": "other"}}, {"index": 0, "delta": {"content": "mine"}}]},
            {"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}, {"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
    )
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "mine"


def test_other_choices_alone_are_ignored():
    final = _run([{"choices": [{"index": 1, "delta": {"content": "other"}}]}, ch({"content": "a"}, "stop")])
    assert [p["text"] for p in final["output"][0]["content"]] == ["a"]


def test_abort_finish_reason_fails_instead_of_completing():
    final = _run([ch({"content": "half an ans"}), ch({}, "abort")])
    assert final["status"] == "failed"
    assert final["output"][0]["status"] == "incomplete"


def test_unknown_finish_reason_is_a_normal_stop():
    final = _run([ch({"content": "a"}, "eos_token")])
    assert final["status"] == "completed"


def test_huge_usage_numbers_do_not_break_encoding():
    # orjson parses 1e30 as a float; int() of it is not serializable.
    final = _run(
        [
            ch({"content": "a"}, "stop"),
            {"choices": [], "usage": {"prompt_tokens": 1e30, "completion_tokens": 18446744073709551615}},
        ]
    )
    assert final["usage"]["input_tokens"] == 0 and final["usage"]["output_tokens"] == 0


def test_malformed_logprob_fields_are_repaired_not_passed_through():
    lp = {"content": [{"token": "hi", "logprob": "bad", "bytes": "x", "top_logprobs": 5}]}
    final = _run(
        [{"choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": lp, "finish_reason": "stop"}]}],
        include_logprobs=True,
    )
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["logprobs"] == [
        {"token": "hi", "logprob": 0.0, "bytes": [104, 105], "top_logprobs": []}
    ]


def test_many_whitespace_deltas_before_text_are_kept_exactly():
    final = _run([ch({"content": "\n"}) for _ in range(3000)] + [ch({"content": "x"}, "stop")])
    assert final["output"][0]["content"][0]["text"] == "\n" * 3000 + "x"
    final = _run([ch({"reasoning_content": "r"})] + [ch({"content": " "}) for _ in range(3000)] + [ch({}, "stop")])
    assert [it["type"] for it in final["output"]] == ["reasoning"]


def test_role_only_and_empty_content_deltas_make_no_message():
    final = _run([ch({"role": "assistant", "content": ""}), ch({"content": None}), ch({}, "stop")])
    assert final["output"] == []
