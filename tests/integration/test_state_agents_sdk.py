"""The OpenAI Agents SDK (openai-agents 0.24) keeping its context in the proxy's store:
``Runner.run(previous_response_id=…)``, ``auto_previous_response_id=True`` (it then sends only
the new items), ``conversation_id=…`` and ``OpenAIConversationsSession`` (its create, items list,
add, pop and clear paths). Each time the backend must see the whole context; the SDK talks
through a recording tap, so every answer it got is validated too."""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIConversationsSession, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tests.clients.helpers import check_chat_request, message_text
from tests.state_kit import KEY_A, state_proxy
from tests.tap import RecordingTap, check_exchanges

__all__ = ["state_proxy"]

set_tracing_disabled(True)  # the SDK would otherwise upload traces to api.openai.com

INSTRUCTIONS = "Answer weather questions with the tool."


def _agent(client: AsyncOpenAI, model: str, calls: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"{city}: 21 C, sunny"

    return Agent(name="weather", instructions=INSTRUCTIONS, tools=[get_weather],
                 model=OpenAIResponsesModel(model=model, openai_client=client))


def _scripts(city: str, n: int) -> list[dict[str, Any]]:
    return [
        {"reasoning": f"Need the weather for {city}.", "reasoning_field": "reasoning_content",
         "tool_calls": [{"id": f"call_{n}", "name": "get_weather", "arguments": {"city": city}}]},
        {"text": f"It is sunny in {city}."},
    ]


def _roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


def _sent(tap: RecordingTap) -> list[dict[str, Any]]:
    """The bodies the SDK POSTed to /v1/responses, in order."""
    return [json.loads(ex.request_body) for ex in tap.exchanges if ex.method == "POST" and ex.path == "/v1/responses"]


@pytest.fixture
def model(mock) -> str:
    name = "agents-state-" + os.urandom(3).hex()
    mock.script(name, *_scripts("Paris", 1), *_scripts("Oslo", 2), {"text": "Both were sunny."})
    return name


def _run(tap: RecordingTap, scenario) -> Any:
    async def main() -> Any:  # one event loop: the AsyncOpenAI pool belongs to it
        async with AsyncOpenAI(base_url=tap.url + "/v1", api_key=KEY_A, max_retries=0, timeout=60) as client:
            return await scenario(client)

    return asyncio.run(main())


def _check_full_context(messages: list[dict[str, Any]], cities: list[str], question: str) -> None:
    """System, then each city's turn (question, reasoning + tool call, tool result, answer), then the question."""
    check_chat_request({"model": "m", "messages": messages})
    expected_roles = ["system"] + ["user", "assistant", "tool", "assistant"] * len(cities) + ["user"]
    assert _roles(messages) == expected_roles, _roles(messages)
    assert messages[0]["content"] == INSTRUCTIONS
    for k, city in enumerate(cities):
        user, call, result, answer = messages[1 + 4 * k: 5 + 4 * k]
        assert city in message_text(user)
        assert call["reasoning_content"] == f"Need the weather for {city}."
        assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"city": city}
        assert message_text(result) == f"{city}: 21 C, sunny"
        assert message_text(answer) == f"It is sunny in {city}."
    assert message_text(messages[-1]) == question


def test_runner_with_previous_response_id_and_auto_previous_response_id(state_proxy, mock, model):
    calls: list[str] = []
    with RecordingTap(state_proxy.url) as tap:
        async def scenario(client: AsyncOpenAI) -> tuple[Any, Any, Any]:
            agent = _agent(client, model, calls)
            first = await Runner.run(agent, "What's the weather in Paris?", auto_previous_response_id=True)
            second = await Runner.run(agent, "And in Oslo?", previous_response_id=first.last_response_id)
            third = await Runner.run(agent, "Summarize.", previous_response_id=second.last_response_id)
            return first, second, third

        first, second, third = _run(tap, scenario)
        check_exchanges(tap)
    assert calls == ["Paris", "Oslo"]
    assert (first.final_output, second.final_output, third.final_output) == (
        "It is sunny in Paris.", "It is sunny in Oslo.", "Both were sunny.")
    sent = _sent(tap)
    assert len(sent) == 5
    # auto_previous_response_id: the tool result goes alone, chained to the call it answers.
    assert "previous_response_id" not in sent[0]
    assert sent[1]["previous_response_id"] and [i["type"] for i in sent[1]["input"]] == ["function_call_output"]
    # previous_response_id across runs: only the new question, then only the tool result.
    assert sent[2]["previous_response_id"] == first.last_response_id
    assert [i.get("role") for i in sent[2]["input"]] == ["user"]
    assert sent[3]["previous_response_id"] and [i["type"] for i in sent[3]["input"]] == ["function_call_output"]
    assert sent[4]["previous_response_id"] == second.last_response_id

    upstream = [r["body"]["messages"] for r in mock.requests(model)]
    assert _roles(upstream[1]) == ["system", "user", "assistant", "tool"]
    assert upstream[1][2]["reasoning_content"] == "Need the weather for Paris."
    assert _roles(upstream[3]) == ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool"]
    _check_full_context(upstream[2], ["Paris"], "And in Oslo?")
    _check_full_context(upstream[4], ["Paris", "Oslo"], "Summarize.")


def test_runner_with_a_conversation_id(state_proxy, mock, model):
    calls: list[str] = []
    with RecordingTap(state_proxy.url) as tap:
        async def scenario(client: AsyncOpenAI) -> list[Any]:
            conv = await client.conversations.create()
            agent = _agent(client, model, calls)
            await Runner.run(agent, "What's the weather in Paris?", conversation_id=conv.id)
            await Runner.run(agent, "And in Oslo?", conversation_id=conv.id)
            return [i async for i in client.conversations.items.list(conv.id, order="asc")]

        items = _run(tap, scenario)
        check_exchanges(tap)
    sent = _sent(tap)
    assert all(body["conversation"] for body in sent) and len(sent) == 4
    upstream = [r["body"]["messages"] for r in mock.requests(model)]
    assert _roles(upstream[1]) == ["system", "user", "assistant", "tool"]
    assert _roles(upstream[2]) == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert message_text(upstream[2][-1]) == "And in Oslo?"
    assert [i.type for i in items] == ["message", "reasoning", "function_call", "function_call_output", "message"] * 2


def test_openai_conversations_session(state_proxy, mock, model):
    calls: list[str] = []
    with RecordingTap(state_proxy.url) as tap:
        async def scenario(client: AsyncOpenAI) -> dict[str, Any]:
            session = OpenAIConversationsSession(openai_client=client)
            agent = _agent(client, model, calls)
            await Runner.run(agent, "What's the weather in Paris?", session=session)
            await Runner.run(agent, "And in Oslo?", session=session)
            out: dict[str, Any] = {"id": session.session_id, "items": await session.get_items()}
            out["last_two"] = await session.get_items(limit=2)
            out["popped"] = await session.pop_item()
            out["after_pop"] = await session.get_items()
            await session.add_items([{"role": "user", "content": "added by hand"}])
            out["after_add"] = await session.get_items()
            await session.clear_session()
            try:
                await client.conversations.retrieve(out["id"])
            except openai.NotFoundError as exc:
                out["gone"] = exc.status_code
            return out

        out = _run(tap, scenario)
        check_exchanges(tap)
    assert calls == ["Paris", "Oslo"]
    upstream = [r["body"]["messages"] for r in mock.requests(model)]
    assert len(upstream) == 4
    assert _roles(upstream[1]) == ["system", "user", "assistant", "tool"]
    _check_full_context(upstream[2], ["Paris"], "And in Oslo?")
    assert _roles(upstream[3]) == ["system"] + ["user", "assistant", "tool", "assistant"] + ["user", "assistant", "tool"]

    items = out["items"]
    types = [i["type"] for i in items]
    assert types == ["message", "reasoning", "function_call", "function_call_output", "message"] * 2, types
    assert all(i["id"] for i in items)
    assert out["last_two"] == items[-2:]
    assert out["popped"] == items[-1] and message_text(out["popped"]) == "It is sunny in Oslo."
    assert out["after_pop"] == items[:-1]
    assert out["after_add"][:-1] == items[:-1] and message_text(out["after_add"][-1]) == "added by hand"
    assert out["gone"] == 404
    methods = [(ex.method, ex.path.split("?")[0].count("/")) for ex in tap.exchanges]
    assert ("POST", 2) in methods and ("DELETE", 3) in methods  # create … clear_session
