"""WebSocket lanes (``stream_id``) through the real process tree: the openai SDK's
``responses.connect()`` (and its lane session) or a plain WebSocket client against gunicorn,
the mock backend scripted slow so that responses overlap.

What OpenAI documents (``ResponseCreate.stream_id``; the SDK's ``lib/responses_websocket``
README; its WebSocket-mode guide): creates on one lane run FIFO without overlap, lanes run
concurrently on one connection, every frame of a lane's response names the lane, and a lane
may fork from a response of another (``previous_response_id``, with ``store: false`` too).
"""
from __future__ import annotations

import json
import os
import socket
import time

import openai
import pytest
from openai.lib.responses_websocket import ResponsesWebSocketLimits, ResponsesWebSocketSession
from openai.types.responses.response_steer_failed_event import ResponseSteerFailedEvent
from websockets.exceptions import ConnectionClosed

from proxy.devtools import start_proxy
from tests.conformance_ws import check_ws_error, check_ws_stream, split_lanes, split_responses
from tests.conftest import API_KEY
from tests.faults.helpers import reload_worker
from tests.http import wait_for
from tests.wsclient import open_ws, recv, send

DELAY = 0.1
SESSION_LIMITS = ResponsesWebSocketLimits(
    max_lanes=8, max_events_per_lane=1024, max_events=4096, max_bytes_per_lane=1 << 24, max_bytes=1 << 25,
)


def _slow(tag: str, n: int) -> dict:
    """A script streaming ``n`` deltas ``<tag><i> ``, DELAY apart."""
    return {"chunks": [f"{tag}{i} " for i in range(n)], "delay": DELAY}


def _text(tag: str, n: int) -> str:
    return "".join(f"{tag}{i} " for i in range(n))


def _create(model: str, text: str, stream_id: str | None = None, **extra) -> dict:
    frame = {"type": "response.create", "model": model, "input": text, "store": False, **extra}
    if stream_id is not None:
        frame["stream_id"] = stream_id
    return frame


def _read_until(ws, done, timeout: float = 30) -> list[dict]:
    frames: list[dict] = []
    while not done(frames):
        frames.append(recv(ws, timeout))
    return frames


def _completed(count: int):
    return lambda frames: sum(f["type"] in ("response.completed", "response.failed") for f in frames) >= count


def _output(response: dict) -> str:
    return response["output"][0]["content"][0]["text"]


def _two_lanes_then_a_third(ws, mock, prefix: str, n: int, third_lane: str | None) -> None:
    """Models ``<prefix>-a`` and ``-b`` stream ``n`` deltas (DELAY apart) on lanes ``a`` and ``b``;
    then ``<prefix>-q`` ("third") is sent on ``third_lane``."""
    mock.script(f"{prefix}-a", _slow("a", n))
    mock.script(f"{prefix}-b", _slow("b", n))
    mock.script(f"{prefix}-q", {"text": "third"})
    for model, lane in ((f"{prefix}-a", "a"), (f"{prefix}-b", "b"), (f"{prefix}-q", third_lane)):
        send(ws, _create(model, "x", lane))


def _metrics_lines(service, model: str) -> list[str]:
    return [line for line in service.log_text().splitlines() if "request_completed:" in line and f"model={model}," in line]


@pytest.fixture(scope="module")
def bounded(mock_backend, logs_dir):
    """Two named lanes, two responses at once, one create waiting (so one kept response per slot: 2)."""
    service = start_proxy(
        mock_backend.url + "/v1", logs_dir / f"proxy-ws-lanes-{os.urandom(3).hex()}.log",
        WEBSOCKET_MAX_LANES="2", WEBSOCKET_MAX_ACTIVE="2", WEBSOCKET_MAX_QUEUED="1",
    )
    yield service
    service.stop()


def test_two_lanes_run_at_once_and_their_frames_interleave(proxy, mock):
    """Through the SDK's ``connect()``: two lanes' responses stream at the same time, their frames
    interleaved on the one socket, each frame naming its lane and each lane a whole SSE stream."""
    mock.script("lane-a", _slow("a", 10))
    mock.script("lane-b", _slow("b", 10))
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=0)
    frames: list[dict] = []
    with client.responses.connect() as conn:
        conn.response.create(model="lane-a", input="first", stream_id="a", store=False)
        conn.response.create(model="lane-b", input="second", stream_id="b", store=False)
        while not _completed(2)(frames):
            raw = conn.recv_bytes()
            event = conn.parse_event(raw)
            frames.append(json.loads(raw))
            assert frames[-1]["type"] != "error", frames[-1]
            assert event.stream_id == frames[-1]["stream_id"] in ("a", "b"), frames[-1]
    lanes = split_lanes(frames)
    assert _output(check_ws_stream(lanes["a"])) == _text("a", 10)
    assert _output(check_ws_stream(lanes["b"])) == _text("b", 10)
    order = [f["stream_id"] for f in frames]
    switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
    assert switches >= 4, f"the lanes' frames did not interleave: {order}"
    (ra,), (rb,) = mock.requests("lane-a"), mock.requests("lane-b")
    assert ra["started_at"] < rb["ended_at"] and rb["started_at"] < ra["ended_at"], "the lanes ran one after the other"


def test_creates_on_one_lane_run_fifo_while_another_lane_runs(proxy, mock):
    """Three creates sent at once on lane ``q`` are answered in order, none overlapping the one
    before, all while lane ``o``'s long response streams beside them."""
    mock.script("fifo-q", _slow("one", 4), _slow("two", 4), _slow("three", 4))
    mock.script("fifo-o", _slow("o", 40))
    with open_ws(proxy.url) as ws:
        send(ws, _create("fifo-o", "long", "o"))
        for text in ("one", "two", "three"):
            send(ws, _create("fifo-q", text, "q"))
        lanes = split_lanes(_read_until(ws, _completed(4)))
    responses = [check_ws_stream(frames) for frames in split_responses(lanes["q"])]
    assert [_output(r) for r in responses] == [_text("one", 4), _text("two", 4), _text("three", 4)]
    assert _output(check_ws_stream(lanes["o"])) == _text("o", 40)
    records = mock.requests("fifo-q")
    assert [r["body"]["messages"][-1]["content"] for r in records] == ["one", "two", "three"]
    for before, after in zip(records, records[1:]):  # (the mock notes its end just after its last write)
        assert after["started_at"] >= before["ended_at"] - 0.05, "one lane ran two responses at once"
    (other,) = mock.requests("fifo-o")
    assert records[-1]["ended_at"] < other["ended_at"], "lane q waited for lane o"


def test_a_lane_forks_from_a_response_of_another_lane_with_store_false(proxy, mock):
    """The SDK's lane session: ``planner`` answers, ``research`` answers after it (the connection's
    latest response is now research's), then ``critic`` forks from the planner's response and the
    planner continues from it too — all ``store: false``, so from the connection's memory."""
    mock.script("fork", {"text": "plan v1"}, {"text": "risks"}, {"text": "critique"}, {"text": "plan v2"})
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=0)
    with client.responses.connect() as conn, ResponsesWebSocketSession(conn, limits=SESSION_LIMITS) as session:
        planner, research, critic = session.lane("planner"), session.lane("research"), session.lane("critic")
        planner.send(_create("fork", "Draft a plan."))
        plan = planner.get_final_response()
        research.send(_create("fork", "List the risks."))
        assert research.get_final_response().status == "completed"
        critic.send(_create("fork", "Find gaps.", previous_response_id=plan.id))
        critique = critic.get_final_response()
        planner.send(_create("fork", "Add rollback steps.", previous_response_id=plan.id))
        plan2 = planner.get_final_response()
    assert (critique.status, critique.previous_response_id, critique.output_text) == ("completed", plan.id, "critique")
    assert (plan2.previous_response_id, plan2.output_text) == (plan.id, "plan v2")
    bodies = [r["body"]["messages"] for r in mock.requests("fork")]
    assert [(m["role"], m["content"]) for m in bodies[2]] == [
        ("user", "Draft a plan."), ("assistant", "plan v1"), ("user", "Find gaps.")]
    assert [(m["role"], m["content"]) for m in bodies[3]] == [
        ("user", "Draft a plan."), ("assistant", "plan v1"), ("user", "Add rollback steps.")]


def test_the_connection_keeps_a_bounded_number_of_responses_to_chain_from(bounded):
    """With WEBSOCKET_MAX_ACTIVE=2 the connection keeps its 2 most recently used responses: a fork
    from the older of two succeeds (and refreshes it), then the one it pushed out is not found."""
    with open_ws(bounded.url) as ws:
        def warm(stream_id: str | None, **extra) -> dict:
            send(ws, _create("keep", "x", stream_id, generate=False, **extra))
            return check_ws_stream(split_lanes(_read_until(ws, _completed(1)))[stream_id])

        r1, r2 = warm("a"), warm("b")
        r3 = warm(None, previous_response_id=r1["id"])
        assert r3["previous_response_id"] == r1["id"]
        send(ws, _create("keep", "x", "b", generate=False, previous_response_id=r2["id"]))
        frame = recv(ws)
        assert frame.pop("stream_id") == "b"
        check_ws_error(frame, 404, "previous_response_not_found")
        assert warm("a", previous_response_id=r1["id"])["previous_response_id"] == r1["id"]


def test_named_lanes_are_bounded_and_the_default_lane_does_not_count(bounded):
    with open_ws(bounded.url) as ws:
        for stream_id in ("a", "b"):
            send(ws, _create("lanes", "x", stream_id, generate=False))
            assert check_ws_stream(split_lanes(_read_until(ws, _completed(1)))[stream_id])["status"] == "completed"
        send(ws, _create("lanes", "x", "c", generate=False))
        frame = recv(ws)
        assert frame.pop("stream_id") == "c"
        error = check_ws_error(frame, 400, "websocket_stream_limit_reached")
        assert error["param"] == "stream_id" and "(2)" in error["message"]
        for stream_id in (None, "a"):  # the default lane, and a lane already named, still work
            send(ws, _create("lanes", "x", stream_id, generate=False))
            assert check_ws_stream(split_lanes(_read_until(ws, _completed(1)))[stream_id])["status"] == "completed"


def test_running_responses_and_waiting_creates_are_bounded(bounded, mock):
    """Two run (WEBSOCKET_MAX_ACTIVE=2); a third, on the idle default lane, waits for a slot; a
    fourth finds the one waiting place taken: a 429 on its lane, at once. The third then runs."""
    with open_ws(bounded.url) as ws:
        _two_lanes_then_a_third(ws, mock, "bound", 12, None)
        send(ws, _create("bound-a", "one too many", "a"))
        frames = _read_until(ws, _completed(3))
    (refused,) = [i for i, f in enumerate(frames) if f["type"] == "error"]
    assert refused < next(i for i, f in enumerate(frames) if f["type"] == "response.completed")
    assert frames[refused].pop("stream_id") == "a"
    check_ws_error(frames[refused], 429, "websocket_queue_limit_reached")
    del frames[refused]
    lanes = split_lanes(frames)
    assert _output(check_ws_stream(lanes[None])) == "third"
    check_ws_stream(lanes["a"])
    check_ws_stream(lanes["b"])
    (a,), (b,), (c,) = mock.requests("bound-a"), mock.requests("bound-b"), mock.requests("bound-q")
    assert c["started_at"] >= min(a["ended_at"], b["ended_at"]) - 0.05, "three ran at once"


def test_a_client_that_vanishes_cancels_every_lanes_upstream_request(bounded, mock):
    """Two lanes streaming and a create waiting on one of them: the client vanishes, both upstream
    requests are closed at once, the waiting create never reaches the backend; one metrics line
    per response that ran."""
    ws = open_ws(bounded.url)
    _two_lanes_then_a_third(ws, mock, "vanish", 80, "a")
    _read_until(ws, lambda frames: {f.get("stream_id") for f in frames if f["type"] == "response.output_text.delta"}
                == {"a", "b"})
    ws.socket.shutdown(socket.SHUT_RDWR)  # gone, without a closing handshake
    ws.socket.close()
    left = time.time()
    for model in ("vanish-a", "vanish-b"):
        record = wait_for(lambda: next((r for r in mock.requests(model) if r["ended_at"]), None), 20, what=model)
        assert record["disconnected"] is True and record["completed"] is False, record
        assert record["ended_at"] - left < 5, "the upstream request outlived its client"
        (line,) = wait_for(lambda: _metrics_lines(bounded, model), 10, what="the metrics line")
        assert "status=client_disconnected" in line and "http_status=499" in line
    time.sleep(1.0)
    assert mock.requests("vanish-q") == [] and _metrics_lines(bounded, "vanish-q") == []


def test_refusals_of_a_frame_that_names_a_lane_name_it_and_steer_failures_name_their_lane(proxy, mock):
    """A frame that parses and names a valid ``stream_id`` but is refused gets that ``stream_id`` on its
    ``error``; an invalid ``stream_id`` is OpenAI's ``invalid_stream_id``, with none. A
    ``response.steer.failed`` is on the lane of the response it targets, or the steer's own."""
    cases = [
        (_create("m", "x", "x1", background=True), "x1", "unsupported_parameter"),
        (_create("m", "x", "x2", generate="no"), "x2", None),
        ({"type": "session.update", "stream_id": "x3"}, "x3", "unknown_event_type"),
        ({"type": "response.create", "stream_id": "x4"}, "x4", None),  # no model: refused by the translator
        (_create("m", "x", ""), None, "invalid_stream_id"),
        (_create("m", "x", "has space"), None, "invalid_stream_id"),
        ({**_create("m", "x"), "stream_id": 7}, None, "invalid_stream_id"),
    ]
    mock.script("steered", _slow("s", 10))
    with open_ws(proxy.url) as ws:
        for frame, stream_id, code in cases:
            send(ws, frame)
            error = recv(ws)
            assert error.pop("stream_id", None) == stream_id, (frame, error)
            check_ws_error(error, 400, code)
        send(ws, _create("steered", "go", "s"))
        created = recv(ws)
        steer = {"type": "response.steer", "previous_response_id": created["response"]["id"], "input": "also Lyon"}
        send(ws, steer)
        send(ws, {**steer, "previous_response_id": "resp_elsewhere", "stream_id": "mine"})
        frames = [created, *_read_until(ws, _completed(1))]
    failed = [f for f in frames if f["type"] == "response.steer.failed"]
    assert [f["stream_id"] for f in failed] == ["s", "mine"]
    for event in failed:
        assert ResponseSteerFailedEvent.model_validate(event).error.code == "steering_not_supported"
    check_ws_stream(split_lanes([f for f in frames if f not in failed])["s"])
    assert mock.requests("m") == []


def test_a_restart_finishes_every_running_lane_and_refuses_the_waiting_create(proxy_factory, mock):
    """The worker stops while two lanes stream and a create waits on one: both responses finish
    on the socket, the waiting create gets the 503 (Codex retries it elsewhere), then 1012."""
    service = proxy_factory(WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT_SECS="60", WEBSOCKET_MAX_ACTIVE="2")
    with open_ws(service.url) as ws:
        _two_lanes_then_a_third(ws, mock, "restart", 30, "a")
        frames = _read_until(ws, lambda fs: sum(f["type"] == "response.output_text.delta" for f in fs) >= 4)
        reload_worker(service)
        frames += _read_until(ws, _completed(2))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames.append(recv(ws, timeout=20))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    (refused,) = [f for f in frames if f["type"] == "error"]
    frames.remove(refused)
    assert refused.pop("stream_id") == "a"
    check_ws_error(refused, 503, "service_unavailable")
    lanes = split_lanes(frames)
    assert _output(check_ws_stream(lanes["a"])) == _text("a", 30)
    assert _output(check_ws_stream(lanes["b"])) == _text("b", 30)
    assert mock.requests("restart-q") == []
