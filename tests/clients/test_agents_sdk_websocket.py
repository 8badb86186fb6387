"""The OpenAI Agents SDK's WebSocket transport (openai-agents 0.24) through the proxy.

``responses_websocket_session(api_key=…, base_url=…)`` pins a run to one shared
WebSocket-capable provider (``MultiProvider(openai_use_responses_websocket=True)``):
each model call is a ``response.create`` frame on one connection. With
``auto_previous_response_id=True`` the runner sends only the new items of each turn,
chained on the previous response. The SDK talks through a ``SocketTap`` so the test
sees one WebSocket and no POST, and validates every frame (``tests/conformance_ws.py``).
"""
from __future__ import annotations

import asyncio
import json

from agents import Agent, function_tool, responses_websocket_session, set_tracing_disabled

from tests.clients.helpers import check_chat_request
from tests.conformance_ws import check_ws_stream, split_responses
from tests.conftest import API_KEY
from tests.wstap import SocketTap

set_tracing_disabled(True)  # the SDK would otherwise upload traces to api.openai.com


def test_agents_sdk_tool_loop_over_the_websocket_transport(proxy, mock):
    model = "agents-ws"
    mock.script(
        model,
        {"tool_calls": [{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"text": "It is 21 C and sunny in Paris.", "chunk_size": 5},
        {"text": "Tomorrow looks the same."},
    )
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"{city}: 21 C, sunny"

    agent = Agent(name="weather", instructions="Answer weather questions with the tool.", tools=[get_weather], model=model)

    async def conversation() -> None:
        async with responses_websocket_session(api_key=API_KEY, base_url=tap.url + "/v1") as session:
            result = await session.run(agent, "What's the weather in Paris?", auto_previous_response_id=True)
            assert result.final_output == "It is 21 C and sunny in Paris."
            follow = await session.run(agent, "And tomorrow?", previous_response_id=result.last_response_id)
            assert follow.final_output == "Tomorrow looks the same."

    with SocketTap(proxy.port) as tap:
        asyncio.run(conversation())
        assert calls == ["Paris"]
        assert tap.http_requests() == []
        (conn,) = tap.websockets()
        assert conn.closed.wait(15)
        sent, received = conn.messages()
    creates = [json.loads(m) for m in sent]
    responses = [check_ws_stream(frames) for frames in split_responses([json.loads(m) for m in received])]
    assert [c["type"] for c in creates] == ["response.create"] * 3 and len(responses) == 3
    # Turns 2 and 3 send only their new items, chained on the response before.
    assert creates[1]["previous_response_id"] == responses[0]["id"]
    assert [i["type"] for i in creates[1]["input"]] == ["function_call_output"]
    assert creates[2]["previous_response_id"] == responses[1]["id"]
    assert responses[2]["previous_response_id"] == responses[1]["id"]

    bodies = [r["body"] for r in mock.requests(model)]
    assert len(bodies) == 3
    for body in bodies:
        check_chat_request(body)
    assert [m["role"] for m in bodies[1]["messages"]] == ["system", "user", "assistant", "tool"]
    assert [m["role"] for m in bodies[2]["messages"]] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert bodies[2]["messages"][-1]["content"] == "And tomorrow?"
