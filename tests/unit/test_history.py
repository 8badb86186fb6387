"""Folding a conversation's earlier items into a request (proxy.translate.history)."""
from __future__ import annotations

from proxy.translate.history import input_items, next_context, with_context
from proxy.translate.request import TranslationPolicy, translate_request


def test_string_input_is_one_user_message():
    assert input_items({"input": "hi"}) == [{"type": "message", "role": "user", "content": "hi"}]
    items = [{"role": "user", "content": "x"}]
    assert input_items({"input": items}) is items


def test_with_context_puts_the_context_first_and_drops_the_context_keys():
    body = {"model": "m", "input": "and now?", "previous_response_id": "resp_1", "instructions": "new rules"}
    context = [
        {"type": "message", "role": "user", "content": "first"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "answer"}]},
    ]
    chained = with_context(body, context)
    assert "previous_response_id" not in chained and body["previous_response_id"] == "resp_1"
    assert chained["input"] == [*context, {"type": "message", "role": "user", "content": "and now?"}]
    chat, _ = translate_request(chained, TranslationPolicy())
    # The new request's instructions only; the earlier turns in order, then the new input.
    assert chat["messages"] == [
        {"role": "system", "content": "new rules"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "and now?"},
    ]


def test_next_context_is_context_then_own_input_then_output():
    response = {"output": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]}
    own = [{"role": "user", "content": "go"}]
    assert next_context([{"role": "user", "content": "before"}], own, response) == [
        {"role": "user", "content": "before"}, *own, *response["output"],
    ]
