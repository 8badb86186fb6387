"""Locust scenarios for responses-proxy: realistic traffic with strict success checks.

Usage (the proxy in front of the mock backend, see ``python -m proxy.demo`` or
``proxy/devtools.py``)::

    locust -f loadtest/locustfile.py --headless -u 20 -r 20 -t 30s --host http://127.0.0.1:8282
    locust -f loadtest/locustfile.py --headless ... StreamUser      # one scenario only
    locust -f loadtest/locustfile.py --host ...                     # web UI on :8089

Scenarios (one ``FastHttpUser`` class each; with no class named on the command
line Locust runs all of them, weighted by ``weight``):

- ``JsonUser``   — ``stream: false`` text answer (model ``mock-echo``).
- ``StreamUser`` — a 50-chunk streamed answer (model ``mock-stream-50``).
- ``ToolUser``   — an agent turn: a streamed tool call (model ``mock-tool``),
  then the follow-up request carrying the ``function_call_output``.
- ``MixUser``    — Codex-like traffic: mostly streams, some tool turns, some JSON.

A request only counts as a success if its answer is complete: JSON answers must be
HTTP 200 with ``"status": "completed"``; a stream must be HTTP 200
``text/event-stream`` whose last event is ``response.completed`` followed by
``data: [DONE]`` (a stream that ends with ``response.failed`` or is cut short is a
failure, even though its HTTP status was 200).

Environment: ``LOADTEST_API_KEY`` (default ``sk-loadtest``) is sent as the bearer key.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
from locust import FastHttpUser, task

# `locust -f loadtest/locustfile.py` imports this file by path: make the package importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.checks import function_call, json_failure, stream_failure

API_KEY = os.environ.get("LOADTEST_API_KEY", "sk-loadtest")
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
PATH = "/v1/responses"

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
    "strict": True,
}

JSON_BODY = orjson.dumps({"model": "mock-echo", "input": "Say hello in a few words.", "stream": False})
STREAM_BODY = orjson.dumps({"model": "mock-stream-50", "input": "Count to fifty.", "stream": True})
TOOL_CALL_BODY = orjson.dumps(
    {"model": "mock-tool", "input": "What is the weather in Paris?", "tools": [WEATHER_TOOL], "stream": True}
)

class _ResponsesUser(FastHttpUser):
    abstract = True
    # Connections per user: one keep-alive connection, like an SDK client.
    concurrency = 1

    def post_json(self, body: bytes, name: str) -> dict | None:
        with self.client.post(PATH, data=body, headers=HEADERS, name=name, catch_response=True) as resp:
            content = resp.content or b""
            why = json_failure(resp.status_code, content)
            if why:
                resp.failure(why)
                return None
            resp.success()
            return orjson.loads(content)

    def post_stream(self, body: bytes, name: str) -> bytes | None:
        with self.client.post(PATH, data=body, headers=HEADERS, name=name, catch_response=True) as resp:
            content = resp.content or b""
            why = stream_failure(resp.status_code, resp.headers.get("content-type", ""), content)
            if why:
                resp.failure(why)
                return None
            resp.success()
            return content

    def json_answer(self) -> None:
        self.post_json(JSON_BODY, "json")

    def stream_answer(self) -> None:
        self.post_stream(STREAM_BODY, "stream-50")

    def tool_turn(self) -> None:
        """A model turn that calls a tool, then the turn that sends the tool's output back."""
        with self.client.post(
            PATH, data=TOOL_CALL_BODY, headers=HEADERS, name="tool-call", catch_response=True
        ) as resp:
            content = resp.content or b""
            why = stream_failure(resp.status_code, resp.headers.get("content-type", ""), content)
            call = None if why else function_call(content)
            if why or call is None:
                resp.failure(why or "no function_call item in response.completed")
                return
            resp.success()
        follow_up = {
            "model": "mock-tool",
            "tools": [WEATHER_TOOL],
            "stream": True,
            "input": [
                {"role": "user", "content": "What is the weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": call["call_id"],
                    "name": call["name"],
                    "arguments": call["arguments"],
                },
                {"type": "function_call_output", "call_id": call["call_id"], "output": "18 C, sunny"},
            ],
        }
        self.post_stream(orjson.dumps(follow_up), "tool-result")


class JsonUser(_ResponsesUser):
    weight = 1

    @task
    def json(self) -> None:
        self.json_answer()


class StreamUser(_ResponsesUser):
    weight = 1

    @task
    def stream(self) -> None:
        self.stream_answer()


class ToolUser(_ResponsesUser):
    weight = 1

    @task
    def tool(self) -> None:
        self.tool_turn()


class MixUser(_ResponsesUser):
    """Codex-like: most turns stream, a third involve a tool call, few are plain JSON."""

    weight = 3

    @task(6)
    def stream(self) -> None:
        self.stream_answer()

    @task(3)
    def tool(self) -> None:
        self.tool_turn()

    @task(1)
    def json(self) -> None:
        self.json_answer()
