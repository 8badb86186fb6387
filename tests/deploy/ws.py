"""WebSocket mode through a front (nginx, HAProxy): what the deployment tests send and check.

``sdk_chained_turns`` is the openai SDK's ``client.responses.connect()`` doing two turns, the
second chained to the first with ``previous_response_id``; every frame is validated
(``tests/conformance_ws.py``). ``idle_between_turns`` leaves a socket idle between two turns,
for the fronts' idle limits.
"""
from __future__ import annotations

import json
import time

import openai
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conformance_ws import TERMINALS, check_ws_stream
from tests.conftest import API_KEY
from tests.wsclient import open_ws, read_response, send


def sdk_response(conn) -> dict:
    """Read one response's frames through the SDK's connection; the final Response, validated."""
    frames = []
    while True:
        raw = conn.recv_bytes()
        conn.parse_event(raw)  # the SDK can read every frame
        frames.append(json.loads(raw))
        assert frames[-1]["type"] != "error", frames[-1]
        if frames[-1]["type"] in TERMINALS:
            return check_ws_stream(frames)


def sdk_chained_turns(base_url: str, model: str = "mock-echo") -> tuple[dict, dict]:
    """Two turns on one WebSocket through ``base_url``: (first Response, second Response)."""
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0)
    with client.responses.connect() as conn:
        conn.response.create(model=model, input="first turn over the socket")
        first = sdk_response(conn)
        conn.response.create(model=model, previous_response_id=first["id"], input="second turn")
        second = sdk_response(conn)
    assert first["status"] == second["status"] == "completed", (first, second)
    assert first["output"][0]["content"][0]["text"] == "You said: first turn over the socket"
    assert second["previous_response_id"] == first["id"]
    assert second["output"][0]["content"][0]["text"] == "You said: second turn"
    # The second turn was sent with the first one's history: more input than the first had.
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    return first, second


def idle_between_turns(base_url: str, idle_secs: float, survives: bool) -> None:
    """A turn, ``idle_secs`` of silence, then: a second turn chained to the first (``survives``), or
    the front closing the socket. The client sends no pings of its own: only the server's can keep
    the tunnel busy."""
    with open_ws(base_url, ping_interval=None) as ws:
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "before the pause"})
        first = read_response(ws)[-1]["response"]
        assert first["status"] == "completed", first
        if not survives:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=idle_secs + 20)
            return
        time.sleep(idle_secs)
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "after the pause",
                  "previous_response_id": first["id"]})
        second = read_response(ws)[-1]["response"]
        assert second["status"] == "completed" and second["previous_response_id"] == first["id"], second
