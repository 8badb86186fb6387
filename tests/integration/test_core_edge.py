"""Where the translation core meets the HTTP edge, through the real service.

- Every refusal the core makes (``InvalidRequest``) reaches the client as the
  same OpenAI-shaped 400 it always did, byte for byte (the recorded corpus in
  ``tests/fixtures/request_errors.py``).
- The stream translator's warnings (calls it kept from the client) are logged,
  as the request's own are.
- ``REASONING_IN_HISTORY=false`` keeps replayed reasoning away from the backend.
"""
from __future__ import annotations

import dataclasses

import httpx
import openai
import orjson
import pytest

from proxy.translate.request import TranslationPolicy
from tests.conftest import API_KEY
from tests.fixtures.request_errors import load
from tests.http import auth, post, wait_for

DEFAULT_POLICY = dataclasses.asdict(TranslationPolicy())


def test_core_refusals_reach_the_client_byte_for_byte(proxy_factory):
    """Through a proxy without a store (the corpus has the stateless refusals of
    previous_response_id, conversation and item_reference; with a store those are served)."""
    stateless = proxy_factory(RESPONSE_STORE_URL="none")
    cases = [e for e in load() if isinstance(e["body"], dict) and e["policy"] == DEFAULT_POLICY]
    assert len(cases) > 100
    with httpx.Client(base_url=stateless.url, headers=auth(), timeout=30) as client:
        for case in cases:
            r = client.post("/v1/responses", content=orjson.dumps(case["body"]),
                            headers={"Content-Type": "application/json"})
            err = case["error"]
            want = {"error": {"message": err["message"], "type": err["type"], "param": err["param"],
                              "code": err["code"]}}
            assert (r.status_code, r.content) == (err["status"], orjson.dumps(want)), case["body"]


def test_stream_side_warnings_are_logged(proxy, mock):
    mock.script("edge-allowed", {"tool_calls": [{"id": "call_1", "name": "forbidden", "arguments": "{}"},
                                                {"id": "call_2", "name": "ok", "arguments": "{}"}]})
    tools = [{"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}}
             for n in ("ok", "forbidden")]
    body = {"model": "edge-allowed", "input": "go", "tools": tools,
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "ok"}]}}
    for stream in (False, True):
        rid = f"edge-warn-{int(stream)}"
        r = post(proxy.url, {**body, "stream": stream}, headers={"X-Request-ID": rid})
        assert r.status_code == 200
        assert b"forbidden" not in r.content.replace(b'"name":"forbidden"', b"")  # only the echoed tool
        line = wait_for(lambda: [ln for ln in proxy.log_text().splitlines() if f"request_id={rid} " in ln
                                 and "dropped upstream tool call 'forbidden': not in allowed_tools" in ln],
                        what="the drop warning in the log")
        assert "WARNING" in line[0] and API_KEY not in proxy.log_text()


def _second_turn(url: str, model: str, first: dict) -> None:
    """Send the SDK's multi-turn pattern: input += output, then a new user message."""
    body = {"model": model, "include": ["reasoning.encrypted_content"],
            "input": [{"role": "user", "content": "why?"}, *first["output"], {"role": "user", "content": "sure?"}]}
    r = post(url, body)
    assert r.status_code == 200, r.text


def test_reasoning_in_history_can_be_turned_off(proxy, proxy_factory, mock):
    mock.script("edge-rih-1", {"reasoning": "Because the sky scatters blue.", "text": "It is blue."})
    mock.script("edge-rih-on", {"text": "yes"})
    mock.script("edge-rih-off", {"text": "yes"})
    first = post(proxy.url, {"model": "edge-rih-1", "input": "why?", "include": ["reasoning.encrypted_content"]}).json()
    assert [item["type"] for item in first["output"]] == ["reasoning", "message"]
    assert first["output"][0]["encrypted_content"]

    _second_turn(proxy.url, "edge-rih-on", first)  # the default: replayed
    (assistant,) = [m for m in mock.requests("edge-rih-on")[-1]["body"]["messages"] if m["role"] == "assistant"]
    assert assistant == {"role": "assistant", "content": "It is blue.",
                         "reasoning_content": "Because the sky scatters blue."}

    off = proxy_factory(REASONING_IN_HISTORY="false")
    _second_turn(off.url, "edge-rih-off", first)
    messages = mock.requests("edge-rih-off")[-1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert all("reasoning_content" not in m for m in messages)
    assert messages[1] == {"role": "assistant", "content": "It is blue."}


def test_max_tool_calls_is_enforced_on_the_way_back(proxy, mock):
    calls = [{"id": f"call_{i}", "name": "f", "arguments": "{}"} for i in range(3)]
    mock.script("edge-max", {"tool_calls": calls, "tool_call_style": "interleaved"})
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]
    body = {"model": "edge-max", "input": "go", "tools": tools, "max_tool_calls": 2}
    doc = post(proxy.url, body).json()
    assert [item["call_id"] for item in doc["output"]] == ["call_0", "call_1"] and doc["max_tool_calls"] == 2
    r = post(proxy.url, {**body, "stream": True})
    assert b"call_2" not in r.content and r.content.count(b'"type":"function_call"') >= 2
    for sent in mock.requests("edge-max"):
        assert "max_tool_calls" not in sent["body"]


def test_allowed_tools_without_mode_or_with_mode_none_is_served_conformant(openai_client, mock):
    """Spec-valid allowed_tools choices found by the live fuzz: without ``mode`` (a 400 before),
    and with mode "none", whose allowed_tools echo failed the openai SDK's types (JSON and
    stream). The tap validates every answer (tests/conformance.py)."""
    tools = [{"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}} for n in ("a", "b")]
    allowed = [{"type": "function", "name": "a"}]
    for mode, echoed in ((None, {"type": "allowed_tools", "mode": "auto", "tools": allowed}), ("none", "none")):
        choice = {"type": "allowed_tools", "tools": allowed, **({"mode": mode} if mode else {})}
        for stream in (False, True):
            model = f"edge-allowed-{mode}-{int(stream)}"
            mock.script(model, {"text": "ok"})
            kwargs = {"model": model, "input": "hi", "tools": tools, "tool_choice": choice}
            if stream:
                with openai_client.responses.stream(**kwargs) as events:
                    response = events.get_final_response()
            else:
                response = openai_client.responses.create(**kwargs)
            assert response.output_text == "ok"
            dumped = response.model_dump(mode="json", exclude_unset=True)["tool_choice"]
            assert dumped == echoed, dumped
            sent = mock.requests(model)[-1]["body"]
            assert sent["tool_choice"] == (mode or "auto")
            assert [t["function"]["name"] for t in sent["tools"]] == (["a", "b"] if mode == "none" else ["a"])


def test_a_tool_output_must_answer_a_call_made_before_it(openai_client, mock):
    """OpenAI's 400, word for word, for a tool output no earlier call in the conversation made
    (the backend is not asked: a chat backend refuses such a history less clearly, or breaks);
    an output answering a call of the chained response is served."""
    model = "edge-orphan-output"
    mock.script(model, {"tool_calls": [{"id": "call_w", "name": "get_weather", "arguments": {"city": "Paris"}}]},
                {"text": "sunny"})
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    for kind in ("function_call_output", "custom_tool_call_output"):
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.responses.create(model=model, tools=tools, input=[
                {"role": "user", "content": "weather?"}, {"type": kind, "call_id": "call_nope", "output": "x"}])
        what = "function call" if kind == "function_call_output" else "custom tool call"
        assert caught.value.status_code == 400
        assert caught.value.body == {"message": f"No tool call found for {what} output with call_id call_nope.",
                                     "type": "invalid_request_error", "param": "input", "code": None}
    assert mock.requests(model) == []
    first = openai_client.responses.create(model=model, tools=tools, input="Weather in Paris?")
    (call,) = [item for item in first.output if item.type == "function_call"]
    answered = openai_client.responses.create(
        model=model, tools=tools, previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
    )
    assert answered.output_text == "sunny"
    messages = mock.requests(model)[-1]["body"]["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == call.call_id
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 C"}


def test_a_call_the_new_input_leaves_unanswered_is_openais_400(openai_client, mock):
    """OpenAI's 400, word for word, for a function call no output after it answers — also one the
    chain or the conversation stands on (the previous response ended in a call, and the new input
    asks something else instead); the backend is not asked. Answering it (the tool loop) is served."""
    model = "edge-unanswered-call"
    mock.script(model, {"tool_calls": [{"id": "call_u", "name": "get_weather", "arguments": {"city": "Paris"}}]},
                {"text": "sunny"})
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]

    def refused(**kwargs) -> dict:
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.responses.create(model=model, tools=tools, **kwargs)
        assert caught.value.status_code == 400
        return caught.value.body

    want = {"message": "No tool output found for function call call_u.", "type": "invalid_request_error",
            "param": "input", "code": None}
    call = {"type": "function_call", "call_id": "call_u", "name": "get_weather", "arguments": "{}"}
    assert refused(input=[{"role": "user", "content": "weather?"}, call]) == want
    first = openai_client.responses.create(model=model, tools=tools, input="Weather in Paris?")
    assert [item.type for item in first.output] == ["function_call"]
    assert refused(previous_response_id=first.id, input="Never mind, tell me a joke.") == want
    conv = openai_client.conversations.create(items=[{"role": "user", "content": "weather?"}, call])
    assert refused(conversation=conv.id, input="Never mind.") == want
    assert len(mock.requests(model)) == 1  # only the first turn
    answered = openai_client.responses.create(
        model=model, tools=tools, previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_u", "output": "sunny, 21 C"}],
    )
    assert answered.output_text == "sunny"
