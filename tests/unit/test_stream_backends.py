"""The shapes real servers send beyond the common ones (issue 12), straight through the translator.

How a stream ends (an error always wins, except after a finish reason; a clean end without a
finish reason is completed; a stream cut short is not), content parts, ``reasoning_details``,
usage in ``x_groq`` and xAI's reasoning count, the failure the translator reports and the codes
its caller may set, and what it names as unmapped. Each scenario runs streamed (every event
checked) and in JSON mode, which must end the same. ``tests/unit/test_real_backends_unit.py``
has the recordings these shapes come from.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest

from proxy.translate.stream import StreamTranslator
from proxy.translate.usage import map_usage
from tests.conformance import check_response, check_stream
from tests.unit.test_stream_corpus import NOW, ch, counting_ids, make_ctx, tc, usage_chunk


def run(chunks: list[Any], *, end: str = "done", emit: bool = True, **ctx_kw: Any) -> tuple[dict, StreamTranslator]:
    """Feed ``chunks`` and end as ``end`` says: "done" ([DONE]), "eof" (the connection closed), "none"."""
    t = StreamTranslator(make_ctx(**ctx_kw), emit_events=emit, clock=lambda: NOW, new_id=counting_ids())
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    if end != "none":
        events += t.finish(clean=end == "done")
    assert t.done
    final = check_stream(events) if emit else check_response(t.response)
    return final, t


def both(chunks: list[Any], **kw: Any) -> tuple[dict, StreamTranslator]:
    final, t = run(chunks, **kw)
    json_final, json_t = run(chunks, emit=False, **kw)
    assert {**json_final, "completed_at": None} == {**final, "completed_at": None}
    assert (json_t.failure, json_t.unmapped) == (t.failure, t.unmapped)
    return final, t


def texts(final: dict) -> tuple[str, str]:
    reasoning = "".join(p["text"] for it in final["output"] if it["type"] == "reasoning"
                        for p in it.get("content", []) + it["summary"])
    text = "".join(p["text"] for it in final["output"] if it["type"] == "message" for p in it["content"])
    return reasoning, text


# ----------------------------------------------------------------------- how a stream ends


def test_done_without_finish_reason_is_completed_as_stop() -> None:
    final, t = both([ch({"content": "4"}), usage_chunk(prompt_tokens=22, completion_tokens=5, total_tokens=27)])
    assert final["status"] == "completed" and t.finish_reason == "stop" and t.failure is None
    assert final["output"][0]["status"] == "completed" and final["usage"]["total_tokens"] == 27


def test_done_without_finish_reason_with_open_calls_is_tool_calls() -> None:
    final, t = both([ch({"tool_calls": [tc(0, "0", "f", "{")]}), ch({"tool_calls": [tc(0, "0", None, "}")]})])
    assert final["status"] == "completed" and t.finish_reason == "tool_calls"
    assert [(i["type"], i["status"], i["arguments"]) for i in final["output"]] == [("function_call", "completed", "{}")]


def test_connection_closed_right_after_a_usage_chunk_is_a_clean_end() -> None:
    final, t = both([ch({"content": "4"}), usage_chunk(prompt_tokens=1, completion_tokens=1)], end="eof")
    assert final["status"] == "completed" and t.finish_reason == "stop"


@pytest.mark.parametrize("chunks", [
    [ch({"content": "half an ans"})],
    # usage on every chunk (Perplexity, Together) is not a usage chunk: cut mid-answer
    [ch({"content": "a"}, usage={"prompt_tokens": 1}), ch({"content": "b"}, usage={"prompt_tokens": 1})],
    # an empty usage chunk carries nothing
    [ch({"content": "a"}), usage_chunk()],
    # a usage chunk, then more text: the end came after the text
    [ch({"content": "a"}), usage_chunk(prompt_tokens=1), ch({"content": "b"})],
], ids=["text", "usage-on-every-chunk", "empty-usage", "text-after-usage"])
def test_connection_closed_otherwise_is_a_stream_cut_short(chunks: list[Any]) -> None:
    final, t = both(chunks, end="eof")
    assert final["status"] == "failed" and final["error"]["message"] == "upstream stream ended before completion"
    assert t.failure is not None and t.failure.kind == "truncated" and t.failure.code == "truncated"


def test_an_error_wins_over_the_done_and_usage_that_follow() -> None:
    final, t = both([ch({"content": "The"}), {"error": {"message": "Context size has been exceeded.", "code": 500}},
                     usage_chunk(prompt_tokens=3, completion_tokens=1)])
    assert final["status"] == "failed" and final["error"]["message"] == "upstream error: Context size has been exceeded."
    assert t.failure is not None and t.failure.kind == "upstream_error" and t.failure.error["code"] == 500


def test_an_error_after_the_finish_reason_keeps_the_finish_and_gives_its_usage() -> None:
    """OpenRouter: finish_reason "length", then {"error": "Token limit reached"} carrying the usage."""
    error_chunk = {"error": {"code": 400, "message": "Token limit reached"},
                   "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}],
                   "usage": {"prompt_tokens": 43, "completion_tokens": 10, "total_tokens": 53,
                             "completion_tokens_details": {"reasoning_tokens": 11}}}
    final, t = both([ch({"reasoning": "We need"}, "length"), error_chunk])
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"]["output_tokens"] == 10 and final["usage"]["output_tokens_details"]["reasoning_tokens"] == 11
    assert t.failure is None and "error (after finish_reason)" in t.unmapped


def test_finish_reason_abort_is_a_finish_error() -> None:
    final, t = both([ch({"content": "a"}), ch({}, "abort")], end="none")
    assert final["status"] == "failed"
    assert t.failure is not None and (t.failure.kind, t.failure.finish_reason, t.failure.code) == (
        "finish_error", "abort", "backend_error")


def test_feed_error_takes_the_callers_codes() -> None:
    t = StreamTranslator(make_ctx(), clock=lambda: NOW, new_id=counting_ids())
    events = t.start() + t.feed(ch({"content": "a"}))
    events += t.feed_error({"error": {"message": "too long", "code": "context_length_exceeded"}},
                           code="context_length_exceeded", response_code="invalid_prompt")
    final = check_stream(events)
    assert events[-2]["code"] == "context_length_exceeded"
    assert final["error"] == {"code": "invalid_prompt", "message": "upstream error: too long"}
    assert t.failure is not None and t.failure.code == "context_length_exceeded"


def test_fail_with_a_response_code_and_without() -> None:
    t = StreamTranslator(make_ctx(), clock=lambda: NOW, new_id=counting_ids())
    events = t.start() + t.fail("refused", "invalid_request", response_code="invalid_prompt")
    assert check_stream(events)["error"]["code"] == "invalid_prompt" and events[-2]["code"] == "invalid_request"
    assert t.failure is None  # the caller failed it: the caller knows why


# ------------------------------------------------------------------------- reasoning and text


def test_content_parts_thinking_then_text() -> None:
    """Mistral Magistral: thinking as a list of text parts (or a string), then text parts."""
    final, t = both([
        ch({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "Okay"}]}]}),
        ch({"content": [{"type": "thinking", "thinking": ", the user"}]}),
        ch({"content": [{"type": "text", "text": "To cross"}]}),
        ch({"content": " safely."}, "stop"),
    ], reasoning_as_summary=True)
    assert texts(final) == ("Okay, the user", "To cross safely.")
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"] and t.unmapped == set()


def test_other_content_part_types_are_named() -> None:
    final, t = both([ch({"content": [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "hi"}]},
                        "stop")])
    assert texts(final) == ("", "hi") and t.unmapped == {"choices[].delta.content[type=image_url]"}


def test_reasoning_details_alone_and_never_twice() -> None:
    """Snowflake sends reasoning only in reasoning_details; OpenRouter sends it in both fields."""
    detail = {"type": "reasoning.text", "text": "15 * 27", "format": "anthropic-claude-v1", "index": 0}
    final, _ = both([ch({"content": "", "reasoning_details": [detail]}),
                     ch({"content": "", "reasoning_details": [{**detail, "text": " = 405"}]}),
                     ch({"content": "405"}, "stop")])
    assert texts(final) == ("15 * 27 = 405", "405")
    final, t = both([ch({"reasoning": "2+2", "reasoning_details": [{"type": "reasoning.text", "text": "2+2"}]}),
                     ch({"reasoning_details": [{"type": "reasoning.summary", "summary": " is 4"}]}),
                     ch({"reasoning": None, "reasoning_details": [{"type": "reasoning.encrypted", "data": "gAAA"}],
                         "content": "4"}, "stop")])
    assert texts(final) == ("2+2 is 4", "4")
    assert t.unmapped == {"choices[].delta.reasoning_details[type=reasoning.encrypted]"}


# --------------------------------------------------------------------------------------- usage


def test_groq_usage_in_x_groq() -> None:
    last = {"choices": [], "x_groq": {"id": "req_1", "usage": {"prompt_tokens": 21, "completion_tokens": 988,
                                                               "total_tokens": 1009}, "seed": 7}}
    final, t = both([ch({"content": "ok"}, "stop"), last])
    assert (final["usage"]["input_tokens"], final["usage"]["output_tokens"]) == (21, 988)
    assert t.unmapped == {"x_groq.seed"}
    top = {**last, "usage": {"prompt_tokens": 1, "completion_tokens": 2}}  # usage of its own wins
    final, _ = both([ch({"content": "ok"}, "stop"), top])
    assert final["usage"]["input_tokens"] == 1


@pytest.mark.parametrize(("usage", "output"), [
    ({"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 303,
      "completion_tokens_details": {"reasoning_tokens": 290}}, 291),  # xAI: reasoning outside completion
    ({"prompt_tokens": 6, "completion_tokens": 212, "total_tokens": 218,
      "completion_tokens_details": {"reasoning_tokens": 198}}, 212),  # DeepSeek: inside
    ({"prompt_tokens": 88, "completion_tokens": 4, "completion_tokens_details": {"reasoning_tokens": 4}}, 4),  # no total
    ({"prompt_tokens": 35, "completion_tokens": 12, "total_tokens": 109}, 12),  # Gemini: hidden thoughts, no count
])
def test_reasoning_tokens_count_once_in_output_tokens(usage: dict, output: int) -> None:
    mapped = map_usage(usage)
    assert mapped["output_tokens"] == output and mapped["total_tokens"] == (usage.get("total_tokens") or
                                                                            usage["prompt_tokens"] + output)


# ------------------------------------------------------------------------ shape and unmapped


def test_unmapped_fields_are_named_once_and_inputs_are_not_touched() -> None:
    chunks = [
        {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "system_fingerprint": "fp",
         "service_tier": "default", "provider": "Minimax", "citations": ["https://a"],
         "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"severity": "safe"}}}],
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi", "annotations": [{"url": "u"}],
                                            "channel": "final", "refusal": "", "tool_calls": None},
                      "finish_reason": None, "native_finish_reason": None, "token_ids": [1, 2],
                      "logprobs": None}]},
        ch({"content": " there", "executed_tools": [{"type": "search"}]}, "stop"),
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.0001,
                                  "is_byok": False, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
         "timings": {"predicted_ms": 12.5}},
    ]
    fed = copy.deepcopy(chunks)
    final, t = both(fed)
    assert fed == chunks
    assert texts(final) == ("", "Hi there")
    assert t.unmapped == {
        "citations", "prompt_filter_results", "choices[].delta.annotations[type=None]", "choices[].delta.channel",
        "choices[].token_ids", "choices[].delta.executed_tools", "usage.cost", "timings",
    }


def test_choices_after_the_finish_reason_are_named() -> None:
    """Azure's asynchronous content filter arrives after the finish reason: nothing of it is used."""
    late = {"choices": [{"index": 0, "delta": {}, "finish_reason": None,
                         "content_filter_results": {"hate": {"filtered": True, "severity": "high"}}}]}
    final, t = both([ch({"content": "Kindness"}, "stop"), late])
    assert final["status"] == "completed" and t.unmapped == {"choices[].content_filter_results"}


@pytest.mark.parametrize(("chunk", "field"), [
    (ch({"content": 5}), "choices[].delta.content"),
    (ch({"content": [{"type": "text", "text": 5}]}), "choices[].delta.content[].text"),
    (ch({"content": [{"type": "thinking", "thinking": 5}]}), "choices[].delta.content[].thinking"),
    (ch({"content": [{"type": "thinking", "thinking": [{"text": 5}]}]}), "choices[].delta.content[].thinking[]"),
    ({"choices": [{"index": 0, "delta": {}, "finish_reason": ["stop"]}]}, "choices[].finish_reason"),
    ({"choices": [{"index": 0, "delta": {}}, 3]}, "choices[]"),
    (ch({"tool_calls": [{"index": {"a": 1}}]}), "choices[].delta.tool_calls[].index"),
])
def test_a_field_of_the_wrong_type_makes_the_chunk_malformed_and_nothing_of_it_is_used(chunk: Any, field: str) -> None:
    final, t = both([ch({"content": "kept"}), {**chunk, "choices": [{**chunk["choices"][0], "delta": {
        **(chunk["choices"][0].get("delta") or {}), "reasoning": "not used"}}, *chunk["choices"][1:]]}], end="none")
    assert final["status"] == "failed" and final["error"]["message"] == f"malformed chunk from upstream: {field}"
    assert texts(final) == ("", "kept")
    assert t.failure is not None and t.failure.kind == "malformed" and t.failure.code == "invalid_chunk"
