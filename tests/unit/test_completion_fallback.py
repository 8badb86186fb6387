"""One chat.completion JSON body (a JSON client's answer, or a backend that ignores `stream: true`),
through the relay's own path for it: ``completion_to_chunks``, the translator, a clean end."""
from __future__ import annotations

import orjson

from proxy.relay import Outcome, _feed_completion  # the relay's JSON-body path, not a copy
from proxy.translate.completion import completion_to_chunks
from proxy.translate.context import ResponseContext
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_stream, default_echo

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "reasoning_content": "Need the weather.",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
}


def _run(raw: bytes) -> list[dict]:
    ctx = ResponseContext(response_id="resp_x", created_at=1, model="m", echo=default_echo())
    translator = StreamTranslator(ctx)
    events = translator.start() + _feed_completion(translator, raw, Outcome())
    assert translator.done
    return events


def test_completion_becomes_the_equivalent_stream():
    final = check_stream(_run(orjson.dumps(COMPLETION)))
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Need the weather."
    assert final["output"][1]["content"][0]["text"] == "Let me check."
    call = final["output"][2]
    assert (call["call_id"], call["name"], call["arguments"]) == ("call_1", "get_weather", '{"city":"Oslo"}')
    assert final["usage"]["input_tokens"] == 9 and final["usage"]["output_tokens"] == 5
    assert final["status"] == "completed"


def test_length_finish_is_incomplete():
    doc = {"choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Trunc"}}]}
    final = check_stream(_run(orjson.dumps(doc)))
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}


def test_error_document_and_garbage_fail_the_response():
    for raw in (orjson.dumps({"error": {"message": "model overloaded"}}), b"{not json", b"[1,2]"):
        final = check_stream(_run(raw))
        assert final["status"] == "failed"


def test_no_choice_is_no_answer():
    assert completion_to_chunks({"choices": []}) == []
    for doc in ({"choices": []}, {"usage": {"prompt_tokens": 3}}, {"choices": [7]}):
        final = check_stream(_run(orjson.dumps(doc)))
        assert final["status"] == "failed" and final["error"]["message"] == "The backend's JSON answer has no choice."


def test_missing_finish_reason_is_inferred_and_other_fields_are_named():
    """A body without a finish reason ends cleanly (the whole answer came); what the
    translator cannot map (an annotation without its citation, filter results, the choice's extras)
    is named."""
    doc = {
        "choices": [{"index": 0, "finish_reason": "", "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                     "message": {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"},
                                                                  {"type": "text", "text": "ok"}],
                                 "annotations": [{"type": "url_citation"}]}}],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"jailbreak": {"detected": True}}}],
    }
    ctx = ResponseContext(response_id="resp_x", created_at=1, model="m", echo=default_echo())
    translator = StreamTranslator(ctx)
    final = check_stream(translator.start() + _feed_completion(translator, orjson.dumps(doc), Outcome()))
    assert final["status"] == "completed" and translator.finish_reason == "stop"
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert translator.unmapped == {
        "choices[].delta.annotations[type=url_citation]", "choices[].content_filter_results", "prompt_filter_results",
    }


def test_error_null_in_a_successful_completion_is_not_an_error():
    from proxy.translate.completion import completion_to_chunks

    doc = {"error": None, "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    chunks = completion_to_chunks(doc)
    assert chunks[0]["choices"][0]["delta"]["content"] == "hi"
