"""The OpenAI Agents SDK (openai-agents 0.24) runs agents through the proxy.

The agent talks to the proxy through ``OpenAIResponsesModel`` (the Responses API
model class) and a ``RecordingTap``, so every answer it got is also validated by
``tests.conformance``; the mock backend plays the model and records what the proxy
sent upstream.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.clients.helpers import check_chat_request, message_text
from tests.conftest import API_KEY
from tests.tap import RecordingTap, check_exchanges

set_tracing_disabled(True)  # the SDK would otherwise upload traces to api.openai.com


class CityReport(BaseModel):
    city: str
    temperature_c: int
    conditions: list[str]


@pytest.fixture
def tap(proxy) -> Iterator[RecordingTap]:
    with RecordingTap(proxy.url) as t:
        yield t


def _model(tap: RecordingTap, name: str) -> OpenAIResponsesModel:
    client = AsyncOpenAI(base_url=tap.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    return OpenAIResponsesModel(model=name, openai_client=client)


def _weather_agent(tap: RecordingTap, name: str, calls: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"{city}: 21 C, sunny"

    return Agent(name="weather", instructions="Answer weather questions with the tool.",
                 tools=[get_weather], model=_model(tap, name))


def _tool_turns(model: str) -> tuple[dict, dict]:
    first = {"reasoning": "Need the weather tool for Paris.", "reasoning_field": "reasoning_content",
             "tool_calls": [{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]}
    second = {"text": "It is 21 C and sunny in Paris.", "chunk_size": 5}
    return first, second


def test_runner_run_tool_loop_then_follow_up(tap, mock):
    model = "agents-run"
    mock.script(model, *_tool_turns(model), {"text": "Tomorrow looks the same."})
    calls: list[str] = []
    agent = _weather_agent(tap, model, calls)

    async def conversation() -> None:  # one event loop: the AsyncOpenAI pool belongs to it
        result = await Runner.run(agent, "What's the weather in Paris?")
        assert calls == ["Paris"]  # the tool really ran, with the model's arguments
        assert result.final_output == "It is 21 C and sunny in Paris."

        history = result.to_input_list() + [{"role": "user", "content": "And tomorrow?"}]
        follow = await Runner.run(agent, history)
        assert follow.final_output == "Tomorrow looks the same."

    asyncio.run(conversation())
    assert calls == ["Paris"]

    finals = check_exchanges(tap)
    assert [f["status"] for f in finals] == ["completed"] * 3
    assert [i["type"] for i in finals[0]["output"]] == ["reasoning", "function_call"]

    upstream = [r["body"] for r in mock.requests(model)]
    assert len(upstream) == 3
    for body in upstream:
        check_chat_request(body)
        assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert upstream[0]["messages"][0] == {"role": "system", "content": "Answer weather questions with the tool."}
    second = upstream[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[2]["tool_calls"][0]["id"] == "call_w1"
    assert json.loads(second[2]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert second[2]["reasoning_content"] == "Need the weather tool for Paris."  # replayed reasoning item
    assert message_text(second[3]) == "Paris: 21 C, sunny"
    third = upstream[2]["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert third[2]["reasoning_content"] == "Need the weather tool for Paris."
    assert message_text(third[4]) == "It is 21 C and sunny in Paris."
    assert message_text(third[5]) == "And tomorrow?"


def test_runner_run_streamed(tap, mock):
    model = "agents-streamed"
    mock.script(model, *_tool_turns(model))
    calls: list[str] = []
    agent = _weather_agent(tap, model, calls)

    async def run() -> tuple[object, list]:
        result = Runner.run_streamed(agent, "What's the weather in Paris?")
        events = [event async for event in result.stream_events()]
        return result, events

    result, events = asyncio.run(run())
    assert calls == ["Paris"]
    assert result.final_output == "It is 21 C and sunny in Paris."
    raw_types = [e.data.type for e in events if e.type == "raw_response_event"]
    assert raw_types.count("response.completed") == 2
    deltas = [e.data.delta for e in events if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]
    assert "".join(deltas) == "It is 21 C and sunny in Paris."
    items = [e.item.type for e in events if e.type == "run_item_stream_event"]
    assert "tool_call_item" in items and "tool_call_output_item" in items and "message_output_item" in items

    finals = check_exchanges(tap)
    assert len(finals) == 2 and all(ex.response_headers["content-type"].startswith("text/event-stream") for ex in tap.exchanges)
    upstream = [r["body"] for r in mock.requests(model)]
    for body in upstream:
        check_chat_request(body)
    assert [m["role"] for m in upstream[1]["messages"]] == ["system", "user", "assistant", "tool"]


def test_structured_output_type(tap, mock):
    model = "agents-structured"
    report = {"city": "Oslo", "temperature_c": -3, "conditions": ["snow", "wind"]}
    mock.script(model, {"text": json.dumps(report), "chunk_size": 6})
    agent = Agent(name="reporter", instructions="Report the weather.", output_type=CityReport,
                  model=_model(tap, model), model_settings=ModelSettings(temperature=0.2))

    result = asyncio.run(Runner.run(agent, "Weather in Oslo?"))
    assert result.final_output == CityReport(**report)

    check_exchanges(tap)
    sent = json.loads(tap.exchanges[0].request_body)
    assert sent["text"]["format"]["type"] == "json_schema"
    body = mock.requests(model)[-1]["body"]
    check_chat_request(body)
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == sent["text"]["format"]["name"]
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == sent["text"]["format"]["schema"]
    assert list(fmt["json_schema"]["schema"]["properties"]) == ["city", "temperature_c", "conditions"]
    assert body["temperature"] == 0.2
