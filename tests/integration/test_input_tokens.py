"""``client.responses.input_tokens.count(...)`` through the real process tree: the count is the
backend's ``usage.prompt_tokens`` for the same request cut to one output token
(``proxy/resources/input_tokens.py``), the stored context included; nothing is stored."""
from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types.responses import InputTokenCountResponse

from tests.conftest import API_KEY
from tests.http import error_of, post

TOOL = {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}


def _client(proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=0)


def _usage(prompt: int) -> dict:
    return {"usage": {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1}}


def test_sdk_count_is_the_backends_prompt_tokens_for_the_same_request(proxy, mock):
    model = "count-sdk"
    mock.script(model, {"text": "x", **_usage(1234)})
    raw = _client(proxy).responses.input_tokens.with_raw_response.count(
        model=model, input="How long is this?", instructions="Be brief.", tools=[TOOL]
    )
    assert json.loads(raw.text) == {"object": "response.input_tokens", "input_tokens": 1234}
    parsed = raw.parse()
    assert isinstance(parsed, InputTokenCountResponse) and parsed.input_tokens == 1234
    (sent,) = mock.requests(model)
    body = sent["body"]
    assert body["max_tokens"] == 1 and body["stream"] is False, body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How long is this?"},
    ]
    assert [t["function"]["name"] for t in body["tools"]] == ["read_file"]  # tools count too


def test_count_covers_the_stored_context_and_stores_nothing(proxy, mock):
    model = "count-chain"
    client = _client(proxy)
    mock.script(model, {"text": "EARLIER-ANSWER"})
    first = client.responses.create(model=model, input="EARLIER-QUESTION")
    mock.script(model, {"text": "x", **_usage(77)}, replace=True)
    counted = client.responses.input_tokens.count(model=model, input="And now?", previous_response_id=first.id)
    assert counted.input_tokens == 77
    sent = mock.requests(model)[-1]["body"]
    assert [m["content"] for m in sent["messages"]] == ["EARLIER-QUESTION", "EARLIER-ANSWER", "And now?"]
    # The count was no turn of the chain: the next turn still builds on the first response alone.
    mock.script(model, {"text": "LATER"}, replace=True)
    client.responses.create(model=model, input="Next.", previous_response_id=first.id)
    later = mock.requests(model)[-1]["body"]
    assert [m["content"] for m in later["messages"]] == ["EARLIER-QUESTION", "EARLIER-ANSWER", "Next."]


def test_answer_parameters_are_ignored_for_a_count(proxy, mock):
    model = "count-params"
    mock.script(model, {"text": "x", **_usage(9)})
    r = post(proxy.url, {"model": model, "input": "hi", "stream": True, "store": True, "max_output_tokens": 500},
             path="/v1/responses/input_tokens")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    assert r.json() == {"object": "response.input_tokens", "input_tokens": 9}
    (sent,) = mock.requests(model)
    assert sent["body"]["max_tokens"] == 1 and sent["body"]["stream"] is False


def test_bad_input_and_backend_failures_are_openai_shaped(proxy, mock):
    client = _client(proxy)
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.input_tokens.count(input="no model")
    assert bad.value.body["param"] == "model"
    with pytest.raises(openai.InternalServerError) as failed:
        client.responses.input_tokens.count(model="mock-error-500", input="hi")
    assert failed.value.status_code == 502
    r = httpx.post(proxy.url + "/v1/responses/input_tokens", json={"model": "m", "input": "hi"}, timeout=10)
    assert r.status_code == 401 and error_of(r)["code"] == "missing_api_key"


def test_a_backend_without_usage_is_a_502_not_a_made_up_count(proxy, mock):
    model = "count-no-usage"
    answer = {"id": "c1", "object": "chat.completion", "created": 1, "model": model,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}]}
    mock.script(model, {"raw": [json.dumps(answer)], "content_type": "application/json"})
    r = post(proxy.url, {"model": model, "input": "hi"}, path="/v1/responses/input_tokens")
    assert r.status_code == 502, r.text
    assert "prompt token count" in error_of(r)["message"]
