"""The common path end to end: real gunicorn + 2 Uvicorn workers, the mock backend,
the official openai SDK. Every answer is validated by tests/conformance.py."""
from __future__ import annotations

import re

import httpx
import openai
import orjson
import pytest

from tests.conformance import check_response, check_stream, parse_sse
from tests.conftest import API_KEY
from tests.http import error_of, post, stream_raw, wait_for

TEXT = "Hello there — a reply in small deltas, with ünïcode ✓."


def test_json_response_through_sdk(openai_client, mock):
    mock.script("m-json", {"text": TEXT, "chunk_size": 3, "usage": {"prompt_tokens": 11, "completion_tokens": 7}})
    raw = openai_client.responses.with_raw_response.create(model="m-json", input="hi there")
    doc = raw.http_response.json()
    check_response(doc)
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert response.usage.input_tokens == 11 and response.usage.output_tokens == 7
    assert response.usage.total_tokens == 18
    assert doc["model"] == "m-json" and doc["id"].startswith("resp_")
    assert raw.http_response.headers["x-request-id"]
    upstream = mock.requests("m-json")[-1]
    # A JSON client's answer is asked for as one JSON body (JSON_UPSTREAM=json, the default).
    assert upstream["body"]["stream"] is False and "stream_options" not in upstream["body"]
    assert upstream["headers"]["accept"] == "application/json"
    upstream = upstream["body"]
    assert upstream["messages"] == [{"role": "user", "content": "hi there"}]
    assert upstream["model"] == "m-json"


def test_stream_through_sdk_create(openai_client, mock):
    mock.script("m-stream", {"text": TEXT, "chunk_size": 2})
    events = list(openai_client.responses.create(model="m-stream", input="hi", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == TEXT
    assert events[-1].response.output_text == TEXT


def test_stream_helper_final_equals_json(openai_client, mock):
    mock.script("m-helper", {"text": TEXT, "chunk_size": 5, "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    with openai_client.responses.stream(model="m-helper", input="hi") as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.output_text.delta" in seen
    as_json = openai_client.responses.create(model="m-helper", input="hi")
    assert final.output_text == as_json.output_text == TEXT
    assert final.usage == as_json.usage
    assert final.status == as_json.status == "completed"
    assert _comparable(final) == _comparable(as_json)


def _comparable(response) -> list[dict]:
    """Output items without their per-response ids, and without the stream helper's
    own `parsed` field (a ParsedResponse addition, not part of the wire data)."""
    items = []
    for item in response.output:
        doc = {k: v for k, v in item.model_dump().items() if k != "id"}
        for part in doc.get("content") or []:
            part.pop("parsed", None)
        items.append(doc)
    return items


def test_raw_sse_grammar_and_state_machine(proxy, mock):
    mock.script("m-raw", {"text": TEXT, "chunk_size": 4, "reasoning": "Think first.", "reasoning_field": "reasoning_content"})
    r, raw = stream_raw(proxy.url, {"model": "m-raw", "input": "hi"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    final = check_stream(events)
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"][0]["text"] == "Think first."


def test_instructions_developer_messages_and_roles(openai_client, mock):
    mock.script("m-roles", {"text": "ok"})
    openai_client.responses.create(
        model="m-roles",
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
            {"role": "user", "content": "How are you?"},
        ],
    )
    messages = mock.requests("m-roles")[-1]["body"]["messages"]
    assert messages[0]["role"] == "system"
    assert "Be brief." in messages[0]["content"] and "Answer in English." in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "Hello!"


def test_function_tool_round_trip(openai_client, mock):
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    mock.script(
        "m-tools",
        {"tool_calls": [
            {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        ], "tool_call_style": "interleaved"},
        {"text": "Paris is sunny, Oslo is cold."},
    )
    first = openai_client.responses.create(model="m-tools", input="Weather in Paris and Oslo?", tools=tools)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_weather", '{"city": "Oslo"}'),
    ]
    assert all(c.id.startswith("fc_") and c.id != c.call_id for c in calls)
    upstream_tools = mock.requests("m-tools")[-1]["body"]["tools"]
    assert upstream_tools[0]["function"]["name"] == "get_weather"
    assert list(upstream_tools[0]["function"]["parameters"]) == ["type", "properties", "required"]

    follow_up = [{"role": "user", "content": "Weather in Paris and Oslo?"}, *first.output]
    follow_up += [
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "cold"}]},
    ]
    second = openai_client.responses.create(model="m-tools", input=follow_up, tools=tools)
    assert second.output_text == "Paris is sunny, Oslo is cold."
    messages = mock.requests("m-tools")[-1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [tc["id"] for tc in messages[1]["tool_calls"]] == ["call_a", "call_b"]
    assert [m["tool_call_id"] for m in messages[2:]] == ["call_a", "call_b"]
    assert "cold" in str(messages[3]["content"])


def test_streamed_tool_calls_validate(proxy, mock):
    mock.script("m-tools-stream", {"tool_calls": [
        {"id": "call_1", "name": "f", "arguments": '{"a": 1}'},
        {"id": "call_2", "name": "g", "arguments": '{"b": [1, 2]}'},
    ], "tool_call_style": "interleaved"})
    tools = [{"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}} for n in ("f", "g")]
    _, raw = stream_raw(proxy.url, {"model": "m-tools-stream", "input": "go", "tools": tools})
    final = check_stream(parse_sse(raw))
    assert [(i["name"], i["arguments"]) for i in final["output"]] == [("f", '{"a": 1}'), ("g", '{"b": [1, 2]}')]


# --- errors -----------------------------------------------------------------

@pytest.mark.parametrize(
    "body, param",
    [
        (b"{not json", None),
        (b'{"input": "hi"}', "model"),
        (b'{"model": "m"}', "input"),
        (b"[1, 2]", None),
        (b'{"model": "m", "input": "hi", "temperature": 9}', "temperature"),
    ],
)
def test_bad_requests_are_400_with_param(proxy, body, param):
    r = post(proxy.url, body)
    assert r.status_code == 400
    err = error_of(r)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert err["message"]


def test_backend_4xx_and_429_pass_through(openai_client, mock):
    mock.script("m-401", {"status": 401, "error": {"message": "Invalid token for this backend", "type": "auth"}})
    with pytest.raises(openai.AuthenticationError) as exc:
        openai_client.responses.create(model="m-401", input="hi")
    assert "Invalid token for this backend" in str(exc.value)
    mock.script("m-429", {"status": 429, "headers": {"retry-after": "7"}, "error": {"message": "Slow down"}})
    with pytest.raises(openai.RateLimitError) as exc:
        openai_client.responses.create(model="m-429", input="hi")
    assert exc.value.response.headers["retry-after"] == "7"
    assert "Slow down" in str(exc.value)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    "status, body, content_type, message, raised",
    [
        (401, '{"detail": "Invalid token"}', "application/json", "Invalid token", openai.AuthenticationError),
        (403, "Forbidden", "text/plain", "Forbidden", openai.PermissionDeniedError),
        (404, '{"error": "model not served here"}', "application/json", "model not served here", openai.NotFoundError),
    ],
    ids=["fastapi-detail", "plain-text", "error-string"],
)
def test_a_backend_4xx_without_a_type_gets_openais(openai_client, mock, status, body, content_type, message, raised,
                                                    stream):
    """Such a body's status and message pass through; its type is OpenAI's for these statuses,
    invalid_request_error, not another API's authentication_error / permission_error / not_found_error."""
    mock.script(f"m-bare-{status}", {"status": status, "raw": [body], "content_type": content_type})
    with pytest.raises(raised) as exc:
        if stream:
            for _ in openai_client.responses.create(model=f"m-bare-{status}", input="hi", stream=True):
                pass
        else:
            openai_client.responses.create(model=f"m-bare-{status}", input="hi")
    assert exc.value.status_code == status
    assert exc.value.type == "invalid_request_error", exc.value.body
    assert exc.value.body["message"] == message, exc.value.body


def test_backend_unreachable_is_502(proxy_factory):
    from proxy.devtools import free_port

    dead = proxy_factory(backend_url=f"http://127.0.0.1:{free_port()}/v1", CIRCUIT_BREAKER_ENABLED="false")
    r = post(dead.url, {"model": "m", "input": "hi"})
    assert r.status_code == 502
    assert error_of(r)["type"] == "server_error"


def test_backend_timeout_is_504(proxy_factory, mock):
    slow = proxy_factory(BACKEND_TIMEOUT_SECS="1", CIRCUIT_BREAKER_ENABLED="false")
    mock.script("m-hang", {"hang": True})
    r = post(slow.url, {"model": "m-hang", "input": "hi"})
    assert r.status_code == 504
    assert error_of(r)["code"] == "backend_timeout"


def test_unknown_path_is_openai_shaped_404(proxy):
    r = httpx.get(proxy.url + "/v1/nothing-here")
    assert r.status_code == 404
    assert error_of(r)["message"]


def test_missing_key_is_401(proxy):
    r = post(proxy.url, {"model": "m", "input": "hi"}, key=None)
    assert r.status_code == 401
    assert error_of(r)["type"] == "authentication_error" or error_of(r)["code"] == "missing_api_key"


def test_health_reports_breaker(proxy):
    r = httpx.get(proxy.url + "/health")
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "healthy"
    assert set(doc["circuit_breaker"]) == {"enabled", "is_open", "consecutive_failures"}
    assert doc["circuit_breaker"]["enabled"] is True


def test_key_goes_upstream_and_is_masked_in_logs(proxy, mock):
    mock.script("m-key", {"text": "ok"})
    r = post(proxy.url, {"model": "m-key", "input": "a secret prompt"}, headers={"X-Request-ID": "trace-abc-123"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "trace-abc-123"
    assert mock.requests("m-key")[-1]["headers"]["authorization"] == f"Bearer {API_KEY}"
    wait_for(lambda: "request_id=trace-abc-123" in proxy.log_text(), 5, what="the metrics line")
    log = proxy.log_text()
    assert API_KEY not in log
    assert f"{API_KEY[:6]}…{API_KEY[-4:]}" in log
    assert "a secret prompt" not in log
    assert re.search(
        r"request_completed: model=m-key, duration_ms=\d+, status=completed, http_status=200, "
        r"key=sk-tes…CRET, request_id=trace-abc-123",
        log,
    )


def test_key_echoed_mid_stream_is_masked(proxy, mock):
    """A backend echoing the key in a stream: masked in the events, also when the key arrives
    split across two network writes, and in an ``event: error`` block's message."""
    def chunk(delta: dict, finish: str | None = None) -> str:
        return "data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk",
                                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).decode() + "\n\n"

    text = chunk({"content": f"your key is {API_KEY}"})
    cut = text.index(API_KEY) + len(API_KEY) // 2
    mock.script("m-key-sse", {"raw": [text[:cut], text[cut:], chunk({}, "stop"), "data: [DONE]\n\n"],
                              "content_type": "text/event-stream", "delay": 0.05})
    r, raw = stream_raw(proxy.url, {"model": "m-key-sse", "input": "hi"})
    assert r.status_code == 200
    assert API_KEY.encode() not in raw
    done = [e for e in parse_sse(raw) if e.get("type") == "response.output_text.done"]
    assert [e["text"] for e in done] == [f"your key is {API_KEY[:6]}…{API_KEY[-4:]}"]

    mock.script("m-key-sse-err", {"raw": [chunk({"content": "hi"}), f"event: error\ndata: bad key {API_KEY}\n\n"],
                                  "content_type": "text/event-stream"})
    r, raw = stream_raw(proxy.url, {"model": "m-key-sse-err", "input": "hi"})
    assert API_KEY.encode() not in raw
    failed = [e for e in parse_sse(raw) if e.get("type") == "response.failed"]
    assert len(failed) == 1 and f"{API_KEY[:6]}…{API_KEY[-4:]}" in failed[0]["response"]["error"]["message"]


def test_x_api_key_header_is_accepted(proxy, mock):
    mock.script("m-xkey", {"text": "ok"})
    r = post(proxy.url, {"model": "m-xkey", "input": "hi"}, key=None, headers={"x-api-key": "sk-other-key-1234567890"})
    assert r.status_code == 200
    assert mock.requests("m-xkey")[-1]["headers"]["authorization"] == "Bearer sk-other-key-1234567890"



def test_backend_answering_json_instead_of_sse(openai_client, mock):
    import json

    completion = {
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Plain JSON answer."}}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }
    mock.script("m-json-backend", {"raw": [json.dumps(completion)], "content_type": "application/json"})
    response = openai_client.responses.create(model="m-json-backend", input="hi")
    assert response.output_text == "Plain JSON answer."
    assert response.usage.total_tokens == 7
    events = list(openai_client.responses.create(model="m-json-backend", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Plain JSON answer."


def test_upstream_connections_are_reused(proxy, mock):
    """Sequential requests ride the workers' pooled connections: a new TCP
    connection per request would cost a handshake each time and, at a few
    hundred requests/s to a remote backend, exhaust the host's ephemeral ports."""
    mock.script("m-reuse", {"text": "ok", "chunk_size": 1})
    for i in range(20):
        r = post(proxy.url, {"model": "m-reuse", "input": "hi", "stream": i % 2 == 0})
        assert r.status_code == 200
    ports = {tuple(rec["client"]) for rec in mock.requests("m-reuse")}
    assert len(mock.requests("m-reuse")) == 20
    assert len(ports) <= 4, f"{len(ports)} upstream connections for 20 sequential requests"


def test_unknown_response_ids_are_404(openai_client):
    with pytest.raises(openai.NotFoundError) as exc:
        openai_client.responses.retrieve("resp_abc123")
    assert "resp_abc123" in str(exc.value)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.delete("resp_abc123")
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.cancel("resp_abc123")
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.input_items.list("resp_abc123")


def test_a_proxy_without_a_store_says_so(proxy_factory, mock):
    """RESPONSE_STORE_URL=none: today's stateless proxy, with its clear refusals."""
    svc = proxy_factory(RESPONSE_STORE_URL="none")
    r = httpx.get(svc.url + "/v1/responses/resp_abc123", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404 and "RESPONSE_STORE_URL=none" in error_of(r)["message"]
    r = post(svc.url, {"model": "mock-echo", "input": "x", "previous_response_id": "resp_abc123"})
    assert r.status_code == 400 and error_of(r)["param"] == "previous_response_id"
    assert "stateless" in error_of(r)["message"]
    r = post(svc.url, {"model": "mock-echo", "input": "x"})
    assert r.status_code == 200 and r.json()["store"] is True  # echoed, nothing kept
    rid = r.json()["id"]
    r = httpx.get(svc.url + f"/v1/responses/{rid}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404


def test_optional_params_are_forwarded_only_when_configured(proxy, proxy_factory, mock):
    body = {"model": "m-fwd", "input": "hi", "prompt_cache_key": "thread-1", "service_tier": "flex",
            "text": {"verbosity": "low"}, "prompt_cache_retention": "24h"}
    mock.script("m-fwd", {"text": "ok"})
    assert post(proxy.url, body).status_code == 200
    sent = mock.requests("m-fwd")[-1]["body"]
    assert not {"prompt_cache_key", "service_tier", "verbosity", "prompt_cache_retention"} & set(sent)
    forwarding = proxy_factory(
        FORWARD_PROMPT_CACHE_KEY="true", FORWARD_SERVICE_TIER="true", FORWARD_VERBOSITY="true",
        FORWARD_PROMPT_CACHE_RETENTION="true",
    )
    r = post(forwarding.url, body)
    assert r.status_code == 200
    echoed = r.json()
    assert (echoed["prompt_cache_key"], echoed["service_tier"]) == ("thread-1", "flex")
    assert echoed["prompt_cache_retention"] == "24h"
    sent = mock.requests("m-fwd")[-1]["body"]
    assert (sent["prompt_cache_key"], sent["service_tier"], sent["verbosity"]) == ("thread-1", "flex", "low")
    assert sent["prompt_cache_retention"] == "24h"
