"""WebSocket mode through the real process tree: the openai SDK's ``responses.connect()``
and a plain WebSocket client against gunicorn (2 workers) in front of the mock backend.

Every frame a test receives is validated (``tests/conformance_ws.py``): as the SDK's
WebSocket type, and each response's frames as an SSE stream (``check_stream``).
"""
from __future__ import annotations

import json

import openai
from openai.types.responses.response_steer_failed_event import ResponseSteerFailedEvent

from tests.clients.helpers import check_chat_request
from tests.conformance_ws import check_ws_error, check_ws_stream, split_lanes
from tests.conftest import API_KEY
from tests.wsclient import open_ws, read_response, recv, send

WEATHER = {
    "type": "function", "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _sdk_response(conn) -> tuple[dict, list]:
    """Read one response through the SDK: (final Response, the SDK's parsed events)."""
    frames, parsed = [], []
    while True:
        raw = conn.recv_bytes()
        parsed.append(conn.parse_event(raw))
        frames.append(json.loads(raw))
        if frames[-1]["type"] in ("response.completed", "response.incomplete", "response.failed"):
            return check_ws_stream(frames), parsed
        assert frames[-1]["type"] != "error", frames[-1]


def test_sdk_tool_loop_chains_with_store_false(proxy, mock):
    """Three turns on one connection, each sending only its new items with previous_response_id."""
    model = "ws-loop"
    mock.script(
        model,
        {"reasoning": "Need the weather.", "tool_calls": [{"id": "call_w", "name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"text": "Paris: 21 C and sunny."},
        {"text": "Tomorrow: rain."},
    )
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=0)
    with client.responses.connect() as conn:
        conn.response.create(
            model=model, input="Weather in Paris?", instructions="Use the tool.", tools=[WEATHER], store=False,
            include=["reasoning.encrypted_content"],
        )
        first, parsed = _sdk_response(conn)
        assert parsed[0].type == "response.created" and parsed[-1].response.id == first["id"]
        call = next(i for i in first["output"] if i["type"] == "function_call")
        assert (call["name"], json.loads(call["arguments"])) == ("get_weather", {"city": "Paris"})

        conn.response.create(
            model=model, previous_response_id=first["id"], tools=[WEATHER], store=False,
            input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "21 C, sunny"}],
        )
        second, _ = _sdk_response(conn)
        assert second["previous_response_id"] == first["id"] and second["instructions"] is None
        assert second["output"][0]["content"][0]["text"] == "Paris: 21 C and sunny."

        conn.response.create(model=model, previous_response_id=second["id"], store=False, input="And tomorrow?")
        third, _ = _sdk_response(conn)
        assert third["status"] == "completed" and third["previous_response_id"] == second["id"]

    bodies = [r["body"] for r in mock.requests(model)]
    assert len(bodies) == 3
    for body in bodies:
        check_chat_request(body)
        assert body["stream"] is True
    # The backend saw the whole conversation each time; instructions only where they were sent.
    assert [m["role"] for m in bodies[0]["messages"]] == ["system", "user"]
    assert [m["role"] for m in bodies[1]["messages"]] == ["user", "assistant", "tool"]
    assert bodies[1]["messages"][1]["reasoning_content"] == "Need the weather."
    assert bodies[1]["messages"][2] == {"role": "tool", "tool_call_id": "call_w", "content": "21 C, sunny"}
    assert [m["role"] for m in bodies[2]["messages"]] == ["user", "assistant", "tool", "assistant", "user"]
    assert bodies[2]["messages"][3]["content"] == "Paris: 21 C and sunny."
    assert bodies[2]["messages"][4]["content"] == "And tomorrow?"


def test_a_chain_leaving_the_last_call_unanswered_is_openais_400(proxy, mock):
    """On a connection (store: false) too, a turn chaining from a response that ended in a call
    must answer it: OpenAI's 400 as an error frame, the backend not asked, the lane still usable."""
    model = "ws-unanswered"
    mock.script(model, {"tool_calls": [{"id": "call_q", "name": "get_weather", "arguments": {"city": "Oslo"}}]},
                {"text": "cold"})
    with open_ws(proxy.url) as ws:
        send(ws, {"type": "response.create", "model": model, "input": "Weather in Oslo?", "tools": [WEATHER],
                  "store": False})
        first = check_ws_stream(read_response(ws))
        send(ws, {"type": "response.create", "model": model, "previous_response_id": first["id"], "store": False,
                  "input": "Forget it."})
        error = check_ws_error(recv(ws), 400, None)
        assert (error["message"], error["param"]) == ("No tool output found for function call call_q.", "input")
        send(ws, {"type": "response.create", "model": model, "previous_response_id": first["id"], "store": False,
                  "input": [{"type": "function_call_output", "call_id": "call_q", "output": "-5 C"}]})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
    assert len(mock.requests(model)) == 2


def test_warm_up_prepares_state_without_calling_the_backend(proxy, mock):
    """Codex's first frame (generate: false) answers a completed, empty response; the next turn
    chains from it with no input of its own, and the backend sees the warm-up's input."""
    model = "ws-warmup"
    mock.script(model, {"text": "hello back"})
    with open_ws(proxy.url, headers={"OpenAI-Beta": "responses_websockets=2026-02-06"}) as ws:
        send(ws, {"type": "response.create", "model": model, "input": "hi", "instructions": "Be brief.",
                  "generate": False, "store": False})
        warm = check_ws_stream(read_response(ws))
        assert warm["status"] == "completed" and warm["output"] == [] and warm["usage"]["total_tokens"] == 0
        assert mock.requests(model) == []
        send(ws, {"type": "response.create", "model": model, "previous_response_id": warm["id"], "input": [],
                  "instructions": "Be brief.", "store": False})
        send(ws, {"type": "response.processed", "response_id": warm["id"]})  # Codex's acknowledgement: ignored
        turn = check_ws_stream(read_response(ws))
        assert turn["output"][0]["content"][0]["text"] == "hello back"
    (body,) = [r["body"] for r in mock.requests(model)]
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def test_a_second_create_on_the_default_lane_waits_for_the_first(proxy, mock):
    """A create without ``stream_id`` is on the implicit default lane, which follows the named lanes'
    rules (OpenAI's WebSocket-mode guide; the SDK's lane README: "FIFO without overlap"): sent while
    one runs, it is queued — not refused (409, as this server once did) — and answered right after."""
    model = "ws-busy"
    mock.script(model, {"chunks": [f"t{i} " for i in range(12)], "delay": 0.1}, {"text": "next"})
    with open_ws(proxy.url) as ws:
        send(ws, {"type": "response.create", "model": model, "input": "long one"})
        created = recv(ws)
        assert created["type"] == "response.created"
        send(ws, {"type": "response.create", "model": model, "input": "queued behind"})
        first = check_ws_stream([created, *read_response(ws)])
        assert first["output"][0]["content"][0]["text"] == "".join(f"t{i} " for i in range(12))
        second = check_ws_stream(read_response(ws))
        assert second["output"][0]["content"][0]["text"] == "next"
        send(ws, {"type": "response.create", "model": model, "input": "now"})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
    one, two, _ = mock.requests(model)
    assert one["body"]["messages"][-1]["content"] == "long one" and two["body"]["messages"][-1]["content"] == "queued behind"
    # (the mock notes its end just after its last write, which the proxy may read first)
    assert two["started_at"] >= one["ended_at"] - 0.05, "the default lane ran two responses at once"


def test_every_frame_of_a_lane_echoes_its_stream_id_refusals_too(proxy, mock):
    """``stream_id`` (the SDK's WebSocket lane): each event of that ``response.create`` echoes it,
    and so does the ``error`` frame refusing it (``ResponseWsError.stream_id``: "present when the
    originating response.create supplied a stream_id"), so a client reading lanes can tell which
    request was refused. Two lanes' responses run at once, each frame naming its own."""
    model = "ws-lanes"
    mock.script(model, {"chunks": [f"t{i} " for i in range(8)], "delay": 0.1})
    mock.script("ws-lanes-limited", {"status": 429, "error": {"message": "slow down", "type": "rate_limit_error"}})

    def lane(frame: dict, stream_id: str) -> dict:
        assert frame.get("stream_id") == stream_id, frame
        return {k: v for k, v in frame.items() if k != "stream_id"}

    with open_ws(proxy.url) as ws:
        send(ws, {"type": "response.create", "model": model, "input": "x", "temperature": "hot", "stream_id": "bad"})
        check_ws_error(lane(recv(ws), "bad"), 400)
        send(ws, {"type": "response.create", "model": "ws-lanes-limited", "input": "x", "stream_id": "limited"})
        check_ws_error(lane(recv(ws), "limited"), 429)
        send(ws, {"type": "response.create", "model": model, "input": "long one", "stream_id": "a"})
        created = recv(ws)
        send(ws, {"type": "response.create", "model": model, "input": "meanwhile", "stream_id": "b"})
        frames = [created]
        while sum(f["type"] == "response.completed" for f in frames) < 2:
            frames.append(recv(ws))
        lanes = split_lanes(frames)
        assert set(lanes) == {"a", "b"}
        assert [lane(f, "a") for f in frames if f.get("stream_id") == "a"] == lanes["a"]
        check_ws_stream(lanes["a"])
        check_ws_stream(lanes["b"])


def test_steer_is_refused_with_its_input_returned(proxy, mock):
    model = "ws-steer"
    mock.script(model, {"chunks": ["a ", "b ", "c "], "delay": 0.2})
    steer = {"type": "response.steer", "previous_response_id": "resp_x",
             "input": [{"type": "message", "role": "user", "content": "also check Lyon"}]}
    with open_ws(proxy.url) as ws:
        send(ws, {"type": "response.create", "model": model, "input": "go"})
        created = recv(ws)
        send(ws, {**steer, "previous_response_id": created["response"]["id"]})
        frames = [created, *read_response(ws, through_errors=True)]
        (failed,) = [f for f in frames if f["type"] == "response.steer.failed"]
        event = ResponseSteerFailedEvent.model_validate(failed)
        assert event.error.code == "steering_not_supported" and isinstance(event.sequence_number, int)
        assert failed["steer"] == {"input": steer["input"], "previous_response_id": created["response"]["id"]}
        check_ws_stream([f for f in frames if f is not failed])


def test_bad_frames_get_error_events_and_the_connection_stays_usable(proxy, mock):
    cases = [
        (b"\x00\x01binary", 400, "invalid_frame"),
        ("{not json", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_json"),
        (json.dumps({"model": "m"}), 400, "missing_required_parameter"),
        (json.dumps({"type": "session.update"}), 400, "unknown_event_type"),
        (json.dumps({"type": "response.create", "model": "m", "input": "x", "background": True}), 400, "unsupported_parameter"),
        (json.dumps({"type": "response.create", "model": "m", "input": "x", "temperature": 5}), 400, None),
        (json.dumps({"type": "response.create", "model": "m", "input": "x", "previous_response_id": "resp_nope"}), 404,
         "previous_response_not_found"),
        (json.dumps({"type": "response.create", "model": "m", "input": "x", "generate": "no"}), 400, None),
    ]
    with open_ws(proxy.url) as ws:
        for message, status, code in cases:
            ws.send(message)
            error = check_ws_error(recv(ws), status, code)
            if "temperature" in str(message):
                assert error["param"] == "temperature"
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "still here?"})
        final = check_ws_stream(read_response(ws))
    assert final["output"][0]["content"][0]["text"] == "You said: still here?"
    assert mock.requests("m") == []  # nothing refused reached the backend


def test_backend_refusal_before_output_is_a_protocol_error_with_its_status(proxy, mock):
    """As over HTTP (a stream refused before its first output gets the JSON status), a backend 429
    before any output is one error frame with status 429, and nothing of a response."""
    mock.script("ws-limited", {"status": 429, "headers": {"retry-after": "7"},
                               "error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}})
    with open_ws(proxy.url) as ws:
        send(ws, {"type": "response.create", "model": "ws-limited", "input": "x"})
        (frame,) = read_response(ws)
        error = check_ws_error(frame, 429, "rate_limit_exceeded")
        assert error["type"] == "rate_limit_error" and error["headers"]["Retry-After"] == "7"
        mock.script("ws-midway", {"text": "partial answer here", "chunk_size": 3, "error_mid_stream": {"message": "boom", "after": 4}})
        send(ws, {"type": "response.create", "model": "ws-midway", "input": "x"})
        frames = read_response(ws)
        failed = check_ws_stream(frames)
        assert failed["status"] == "failed"
        assert frames[-2]["error"]["message"] == "upstream error: boom" and frames[-2]["error"]["type"] == "server_error"


def test_both_paths_upgrade_and_client_pings_are_answered(proxy, mock):
    from websockets.sync.client import connect

    with connect(proxy.url.replace("http", "ws") + "/responses", additional_headers={"Authorization": f"Bearer {API_KEY}"}) as ws:
        assert ws.ping().wait(10), "no pong to the client's ping"
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "short path"})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
