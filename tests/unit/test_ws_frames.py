"""The WebSocket frame module (``proxy.translate.ws_frames``) on its own: what each client frame
parses to, the refusals' shapes, and the server frames, each validated as the openai SDK's type."""
from __future__ import annotations

import json

import pytest
from openai.types.responses.response_steer_failed_event import ResponseSteerFailedEvent
from openai.types.responses.responses_server_event import ResponseWsError

from proxy.errors import ProxyError
from proxy.resources.ws_response import protocol_error
from proxy.translate import ws_frames as wf
from proxy.translate.errors import InvalidRequest
from proxy.translate.request import TranslationPolicy, translate_request
from tests.conformance_ws import check_ws_error, check_ws_stream


def test_create_carries_the_request_and_the_envelope_apart():
    frame = wf.parse_frame(json.dumps({
        "type": "response.create", "model": "m", "input": "hi", "generate": False, "stream_id": "lane-1", "stream": False,
    }))
    assert frame == wf.Create({"model": "m", "input": "hi", "stream": True}, generate=False, stream_id="lane-1")
    assert wf.parse_frame('{"type": "response.create", "model": "m"}').generate is True


@pytest.mark.parametrize("text,param,code", [
    ("{", None, "invalid_json"),
    ('"a string"', None, "invalid_json"),
    ("{}", "type", "missing_required_parameter"),
    ('{"type": 5}', "type", None),
    ('{"type": "response.append", "input": []}', "type", "unknown_event_type"),
    ('{"type": "response.create", "background": true}', "background", "unsupported_parameter"),
    ('{"type": "response.create", "generate": 1}', "generate", None),
    ('{"type": "response.create", "stream_id": 1}', "stream_id", None),
    ('{"type": "response.steer", "input": "x"}', "previous_response_id", "missing_required_parameter"),
    ('{"type": "response.steer", "previous_response_id": "resp_1"}', "input", "missing_required_parameter"),
])
def test_refusals_name_what_is_wrong(text, param, code):
    with pytest.raises(InvalidRequest) as refused:
        wf.parse_frame(text)
    error = check_ws_error(protocol_error(refused.value), 400, code)
    assert error["param"] == param


@pytest.mark.parametrize("text,stream_id,code", [
    ('{"type": "response.create", "stream_id": "lane.1", "background": true}', "lane.1", "unsupported_parameter"),
    ('{"type": "session.update", "stream_id": "a-b_c"}', "a-b_c", "unknown_event_type"),
    ('{"type": "response.steer", "stream_id": "s", "input": "x"}', "s", "missing_required_parameter"),
    ('{"type": "response.create", "stream_id": ""}', None, "invalid_stream_id"),
    ('{"type": "response.create", "stream_id": "a/b"}', None, "invalid_stream_id"),
    ('{"type": "response.create", "stream_id": "' + "x" * 257 + '"}', None, "invalid_stream_id"),
    ('{"stream_id": "x"', None, "invalid_json"),
])
def test_a_refused_frame_names_its_valid_stream_id(text, stream_id, code):
    with pytest.raises(wf.FrameError) as refused:
        wf.parse_frame(text)
    assert (refused.value.stream_id, refused.value.code) == (stream_id, code)


def test_stream_ids_are_openais_lane_names():
    assert wf.parse_frame('{"type": "response.create", "stream_id": "' + "A9_.-" * 51 + '"}').stream_id == "A9_.-" * 51
    assert wf.parse_frame('{"type": "response.create", "stream_id": null}').stream_id is None
    steer = wf.parse_frame('{"type": "response.steer", "previous_response_id": "r", "input": "x", "stream_id": "s"}')
    assert wf.steer_failed_event(steer, 0, "s")["stream_id"] == "s" and "stream_id" not in wf.steer_failed_event(steer, 0)


def test_ignored_and_steer_frames():
    assert wf.parse_frame('{"type": "response.processed", "response_id": "resp_1"}') == wf.Ignored("response.processed")
    steer = wf.parse_frame('{"type": "response.steer", "previous_response_id": "resp_1", "input": "more"}')
    event = wf.steer_failed_event(steer, 3)
    parsed = ResponseSteerFailedEvent.model_validate(event)
    assert parsed.error.code == "steering_not_supported" and parsed.sequence_number == 3
    assert parsed.steer.input == "more" and parsed.steer.previous_response_id == "resp_1"


def test_protocol_error_keeps_retry_after_and_stream_error_keeps_its_sequence_number():
    frame = protocol_error(ProxyError(429, "slow down", type="rate_limit_error", headers={"Retry-After": "3"}))
    ResponseWsError.model_validate(frame)
    assert frame["status"] == 429 and frame["error"]["headers"] == {"Retry-After": "3"}
    flat = {"type": "error", "sequence_number": 7, "code": "backend_error", "message": "boom", "param": None}
    nested = wf.stream_error_event(flat, "server_error")
    assert nested == {"type": "error", "sequence_number": 7,
                      "error": {"type": "server_error", "code": "backend_error", "message": "boom", "param": None}}
    ResponseWsError.model_validate(nested)


def test_prepared_response_is_the_translators_and_calls_nothing():
    _, ctx = translate_request({"model": "m", "input": "hi", "stream": True, "store": False}, TranslationPolicy())
    final = check_ws_stream(wf.prepared_events(ctx))
    assert final["status"] == "completed" and final["output"] == [] and final["usage"]["total_tokens"] == 0
    assert final["id"] == ctx.response_id and final["store"] is False
