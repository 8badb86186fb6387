"""The scripted mock backend, exercised over real HTTP the way the proxy will use it."""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from proxy.devtools import start_mock
from tests.mock_client import MockControl

HELLO = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def mock_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockControl]:
    service = start_mock(tmp_path_factory.mktemp("mock") / "mock.log")
    control = MockControl(service.url)
    yield control
    control.close()
    service.stop()


@pytest.fixture()
def http(mock_proc: MockControl) -> Iterator[httpx.Client]:
    mock_proc.reset()
    with httpx.Client(base_url=mock_proc.url, timeout=5.0) as client:
        yield client


def chat(http: httpx.Client, model: str, stream: bool = True, usage: bool = True, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    body: dict[str, Any] = {"model": model, "messages": extra.pop("messages", HELLO), "stream": stream, **extra}
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    return http.post("/v1/chat/completions", json=body, headers=headers)


def events(raw: bytes, sep: bytes = b"\n\n") -> list[Any]:
    """Data payloads of an SSE body, JSON-decoded (``"[DONE]"`` kept as a string); strict framing."""
    assert raw.endswith(sep), raw[-50:]
    out = []
    for block in raw[: -len(sep)].split(sep):
        assert block.startswith(b"data: "), block[:50]
        payload = block[len(b"data: ") :]
        out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


def deltas(evs: list[Any]) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in evs if isinstance(e, dict) and e.get("choices")]


def text_of(evs: list[Any], key: str = "content") -> str:
    return "".join(d.get(key) or "" for d in deltas(evs))


def wait_for(pred: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --------------------------------------------------------------------------- framing


def test_echo_stream_framing_and_usage_chunk(http: httpx.Client) -> None:
    r = chat(http, "mock-echo")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.content)
    assert evs[-1] == "[DONE]"
    assert deltas(evs)[0] == {"role": "assistant", "content": ""}
    assert text_of(evs) == "You said: hi there"
    assert all(0 < len(d["content"]) <= 4 for d in deltas(evs)[1:] if d.get("content"))
    finish = [e for e in evs[:-1] if e["choices"]]
    assert finish[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(e["choices"][0]["finish_reason"] is None for e in finish[:-1])
    usage = evs[-2]
    assert usage["choices"] == [] and usage["object"] == "chat.completion.chunk"
    u = usage["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["completion_tokens"] > 0
    assert "cached_tokens" in u["prompt_tokens_details"] and "reasoning_tokens" in u["completion_tokens_details"]
    assert len({e["id"] for e in evs[:-1]}) == 1


def test_no_usage_chunk_without_include_usage(http: httpx.Client) -> None:
    evs = events(chat(http, "mock-echo", usage=False).content)
    assert all(e == "[DONE]" or e["choices"] for e in evs)
    assert all("usage" not in e for e in evs if e != "[DONE]")


def test_non_streaming_completion_and_alias_path(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json={"model": "mock-echo", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": " two"}]}]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "You said: part one two"
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_bad_json_and_unknown_path(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = http.get("/v1/nothing")
    assert r.status_code == 404 and "message" in r.json()["error"]
    assert http.get("/_mock/health").status_code == 200


# --------------------------------------------------------------------------- built-in models


def test_builtin_stream_n(http: httpx.Client) -> None:
    evs = events(chat(http, "mock-stream-7").content)
    contents = [d["content"] for d in deltas(evs) if d.get("content")]
    assert contents == [f"tok{i} " for i in range(7)]


def test_builtin_tool_uses_first_offered_tool(http: httpx.Client) -> None:
    tools = [
        {"type": "function", "function": {"name": "lookup", "parameters": {
            "type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}, "required": ["q", "n"]}}},
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
    ]
    evs = events(chat(http, "mock-tool", tools=tools).content)
    calls = [tc for d in deltas(evs) for tc in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "lookup" and calls[0]["id"]
    args = "".join(tc["function"].get("arguments", "") for tc in calls)
    assert json.loads(args) == {"q": "test", "n": 1}
    assert [e for e in evs if e != "[DONE]" and e["choices"]][-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_builtin_tool_defaults_and_answers_tool_results(http: httpx.Client) -> None:
    body = chat(http, "mock-tool", stream=False).json()
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and call["type"] == "function"
    messages = HELLO + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    body = chat(http, "mock-tool", stream=False, messages=messages).json()
    assert body["choices"][0]["message"]["content"] == "Tool result: sunny"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_builtin_reasoning_precedes_text(http: httpx.Client) -> None:
    ds = deltas(events(chat(http, "mock-reasoning").content))
    kinds = [("r" if d.get("reasoning_content") else "c") for d in ds[1:] if d.get("reasoning_content") or d.get("content")]
    assert kinds[0] == "r" and "r" not in kinds[kinds.index("c"):]
    assert "".join(d.get("reasoning_content", "") for d in ds) == "Thinking about: hi there"
    assert "".join(d.get("content") or "" for d in ds) == "You said: hi there"


def test_builtin_slow_and_unknown_model_echoes(http: httpx.Client) -> None:
    t0 = time.monotonic()
    evs = events(chat(http, "mock-slow-20").content)
    n = len(evs)
    assert time.monotonic() - t0 >= 0.02 * (n - 1) * 0.9  # lower bound only: delays can only add time
    assert text_of(evs) == "You said: hi there"
    assert text_of(events(chat(http, "some-unknown-model").content)) == "You said: hi there"


def test_builtin_error_model(http: httpx.Client) -> None:
    r = chat(http, "mock-error-503")
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"


# --------------------------------------------------------------------------- scripting and recording


def test_queue_pops_in_order_and_reuses_last(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("m", {"text": "one"}, {"text": "two"})
    got = [chat(http, "m", stream=False).json()["choices"][0]["message"]["content"] for _ in range(4)]
    assert got == ["one", "two", "two", "two"]
    mock_proc.script("m", {"text": "three"})  # replaces the reused leftover
    assert chat(http, "m", stream=False).json()["choices"][0]["message"]["content"] == "three"
    mock_proc.script("m", {"text": "four"}, {"text": "five"})
    mock_proc.script("m", {"text": "six"})  # appended: nothing queued was served yet
    got = [chat(http, "m", stream=False).json()["choices"][0]["message"]["content"] for _ in range(3)]
    assert got == ["four", "five", "six"]
    # other models are unaffected; "*" catches models without their own queue
    assert chat(http, "other", stream=False).json()["choices"][0]["message"]["content"] == "You said: hi there"
    mock_proc.script("*", {"text": "wild"})
    assert chat(http, "other", stream=False).json()["choices"][0]["message"]["content"] == "wild"
    assert chat(http, "m", stream=False).json()["choices"][0]["message"]["content"] == "six"


def test_records_and_reset(mock_proc: MockControl, http: httpx.Client) -> None:
    t0 = time.time()
    chat(http, "a", headers={"X-Trace": "T1"})
    chat(http, "b", stream=False)
    recs = mock_proc.requests()
    assert [r["model"] for r in recs] == ["a", "b"]
    assert recs[0]["headers"]["x-trace"] == "T1"
    assert recs[0]["body"]["messages"] == HELLO and recs[0]["body"]["stream"] is True
    assert all(r["completed"] and not r["disconnected"] for r in recs)
    assert t0 - 1 <= recs[0]["started_at"] <= recs[0]["ended_at"] <= recs[1]["started_at"] <= recs[1]["ended_at"]
    assert [r["model"] for r in mock_proc.requests(model="b")] == ["b"]
    mock_proc.script("a", {"text": "scripted"})
    mock_proc.reset()
    assert mock_proc.requests() == []
    assert chat(http, "a", stream=False).json()["choices"][0]["message"]["content"] == "You said: hi there"


def test_bad_script_payload_rejected(mock_proc: MockControl, http: httpx.Client) -> None:
    r = http.post("/_mock/script", json={"model": "x", "responses": ["not an object"]})
    assert r.status_code == 400
    mock_proc.script("x", {"status": "not a number"})
    r = chat(http, "x")
    assert r.status_code == 500 and r.json()["error"]["type"] == "mock_script_error"


def test_error_status_headers_and_body(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("e", {"status": 429, "headers": {"Retry-After": "7"}, "error": {"message": "slow down", "code": "rate_limit_exceeded"}})
    r = chat(http, "e")
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json() == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}
    mock_proc.script("e2", {"status": 401})
    err = chat(http, "e2").json()["error"]
    assert err["type"] == "authentication_error" and err["message"]


def test_text_chunk_size_finish_reason_usage(mock_proc: MockControl, http: httpx.Client) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 22, "prompt_tokens_details": {"cached_tokens": 5},
             "completion_tokens_details": {"reasoning_tokens": 3}}
    mock_proc.script("t", {"text": "abcdefghij", "chunk_size": 3, "finish_reason": "length", "usage": usage})
    evs = events(chat(http, "t").content)
    assert [d["content"] for d in deltas(evs)[1:] if d.get("content")] == ["abc", "def", "ghi", "j"]
    assert evs[-3]["choices"][0]["finish_reason"] == "length"
    assert evs[-2]["usage"] == {**usage, "total_tokens": 33}
    body = chat(http, "t", stream=False).json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["prompt_tokens_details"]["cached_tokens"] == 5


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_fields(mock_proc: MockControl, http: httpx.Client, field: str) -> None:
    mock_proc.script("r", {"reasoning": "deep thought", "reasoning_field": field, "text": "42"})
    evs = events(chat(http, "r").content)
    assert text_of(evs, field) == "deep thought" and text_of(evs) == "42"
    other = "reasoning" if field == "reasoning_content" else "reasoning_content"
    assert text_of(evs, other) == ""
    msg = chat(http, "r", stream=False).json()["choices"][0]["message"]
    assert msg[field] == "deep thought" and msg["content"] == "42"


def test_reasoning_think_tags_in_content(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("r", {"reasoning": "hmm", "reasoning_field": "think", "text": "ok", "chunk_size": 5})
    evs = events(chat(http, "r").content)
    assert text_of(evs) == "<think>hmm</think>ok"
    assert max(len(d.get("content") or "") for d in deltas(evs)) == 5
    assert text_of(evs, "reasoning_content") == ""
    assert chat(http, "r", stream=False).json()["choices"][0]["message"]["content"] == "<think>hmm</think>ok"


def test_refusal(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("f", {"refusal": "I can't help with that."})
    evs = events(chat(http, "f").content)
    assert text_of(evs, "refusal") == "I can't help with that." and text_of(evs) == ""
    assert chat(http, "f", stream=False).json()["choices"][0]["message"]["refusal"] == "I can't help with that."


CALLS = [
    {"id": "call_a", "name": "f", "arguments": '{"x": 1, "y": "two"}'},
    {"id": "call_b", "name": "g", "arguments": {"z": [1, 2]}},
]


def _fragments(evs: list[Any]) -> list[dict[str, Any]]:
    return [tc for d in deltas(evs) for tc in d.get("tool_calls", [])]


def _assemble(frags: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for f in frags:
        c = calls.setdefault(f["index"], {"id": "", "name": "", "arguments": ""})
        c["id"] = f.get("id") or c["id"]
        fn = f.get("function", {})
        c["name"] = fn.get("name") or c["name"]
        c["arguments"] += fn.get("arguments", "")
    return calls


EXPECTED = {0: {"id": "call_a", "name": "f", "arguments": '{"x": 1, "y": "two"}'},
            1: {"id": "call_b", "name": "g", "arguments": '{"z":[1,2]}'}}


@pytest.mark.parametrize("style", ["standard", "args_before_name", "whole_at_end", "interleaved", "no_id"])
def test_tool_call_styles(mock_proc: MockControl, http: httpx.Client, style: str) -> None:
    mock_proc.script("tc", {"tool_calls": CALLS, "tool_call_style": style, "chunk_size": 5})
    evs = events(chat(http, "tc").content)
    frags = _fragments(evs)
    calls = _assemble(frags)
    expected = EXPECTED if style != "no_id" else {i: {**c, "id": ""} for i, c in EXPECTED.items()}
    assert calls == expected
    assert [e for e in evs if e != "[DONE]" and e["choices"]][-1]["choices"][0]["finish_reason"] == "tool_calls"
    per_chunk = [d["tool_calls"] for d in deltas(evs) if "tool_calls" in d]
    first = {i: next(f for f in frags if f["index"] == i) for i in (0, 1)}
    if style == "standard":
        assert all(first[i]["function"]["name"] and first[i]["id"] for i in (0, 1))
        assert [f["index"] for f in frags] == sorted(f["index"] for f in frags)
    elif style == "args_before_name":
        assert all("name" not in first[i]["function"] and "id" not in first[i] for i in (0, 1))
    elif style == "whole_at_end":
        assert len(per_chunk) == 1 and len(per_chunk[0]) == 2
    elif style == "interleaved":
        assert [f["index"] for f in frags][:4] == [0, 1, 0, 1]
    elif style == "no_id":
        assert all("id" not in f for f in frags)


def test_tool_calls_non_streaming(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("tc", {"tool_calls": CALLS})
    choice = chat(http, "tc", stream=False).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in choice["message"]["tool_calls"]] == [
        (v["id"], v["name"], v["arguments"]) for v in EXPECTED.values()]


def test_logprobs_per_text_delta(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("lp", {"text": "hello world", "logprobs": True})
    evs = events(chat(http, "lp").content)
    for e in evs:
        if e != "[DONE]" and e["choices"] and e["choices"][0]["delta"].get("content"):
            lp = e["choices"][0]["logprobs"]["content"]
            assert [x["token"] for x in lp] == [e["choices"][0]["delta"]["content"]]
            assert isinstance(lp[0]["logprob"], float) and lp[0]["top_logprobs"] == []
    lp = chat(http, "lp", stream=False).json()["choices"][0]["logprobs"]["content"]
    assert "".join(x["token"] for x in lp) == "hello world"


def test_custom_headers_and_content_type(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("h", {"headers": {"x-request-id": "abc"}, "content_type": "text/plain"})
    r = chat(http, "h")
    assert r.headers["x-request-id"] == "abc" and r.headers["content-type"] == "text/plain"


def test_first_byte_delay(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("d", {"first_byte_delay": 0.3})
    t0 = time.monotonic()
    assert chat(http, "d").status_code == 200
    assert time.monotonic() - t0 >= 0.25


def test_no_done(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("n", {"text": "partial", "no_done": True})
    r = chat(http, "n")
    evs = events(r.content)
    assert "[DONE]" not in evs and text_of(evs) == "partial"
    assert all(e["choices"] and e["choices"][0]["finish_reason"] is None for e in evs)


def test_raw_pieces_verbatim(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("raw", {"raw": ["data: {not json}\n\n", "data: [DONE]\n\n"]})
    r = chat(http, "raw")
    assert r.content == b"data: {not json}\n\ndata: [DONE]\n\n"
    assert r.headers["content-type"].startswith("text/event-stream")
    bad = b'data: {"x": "\xff\xfe"}\n\n'
    mock_proc.script("raw", {"raw_b64": [base64.b64encode(bad).decode()]})
    assert chat(http, "raw").content == bad


def test_recorded_fixtures_replay_byte_for_byte(mock_proc: MockControl, http: httpx.Client) -> None:
    """Real servers' recorded bodies (tests/fixtures/backends) arrive exactly as recorded, including
    one that ends without a final newline and a JSON body sent although the client asked to stream."""
    from tests.fixtures.backends import load_all

    chosen = {"azure/prompt-filter-first-async-filter-after-finish.sse", "zai/reasoning-content.json"}
    for fx in [f for f in load_all() if f.id in chosen]:
        mock_proc.script(fx.model, fx.mock_script())
        r = chat(http, fx.model)
        assert r.content == fx.body, fx.id
        assert r.headers["content-type"] == fx.content_type, fx.id


def test_crlf_framing(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("c", {"text": "line", "crlf": True})
    raw = chat(http, "c").content
    assert b"\n\n" not in raw.replace(b"\r\n\r\n", b"")
    evs = events(raw, sep=b"\r\n\r\n")
    assert evs[-1] == "[DONE]" and text_of(evs) == "line"


def test_oversize_event(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("big", {"text": "ok", "oversize_event_bytes": 200_000})
    raw = chat(http, "big").content
    blocks = raw.split(b"\n\n")
    assert max(len(b) + 2 for b in blocks) == 200_000
    assert text_of(events(raw)).endswith("ok")


def test_error_mid_stream(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("em", {"text": "abcdefghijkl", "error_mid_stream": {"message": "boom", "type": "server_error", "after": 3}})
    evs = events(chat(http, "em").content)
    assert len(evs) == 5 and evs[-1] == "[DONE]"
    assert evs[3] == {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    assert all(e["choices"][0]["finish_reason"] is None for e in evs[:3])


# --------------------------------------------------------------------------- broken connections


def test_drop_after_is_a_broken_connection(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("drop", {"text": "abcdefghijklmnop", "drop_after": 3})
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/v1/chat/completions", json={"model": "drop", "stream": True, "messages": HELLO}) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                received += chunk
    assert received.count(b"data: ") == 3 and b"[DONE]" not in received
    rec = mock_proc.requests("drop")[0]
    assert not rec["completed"]


def test_drop_after_with_delay_and_non_streaming(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("drop", {"text": "abcdefgh", "drop_after": 2, "delay": 0.01})
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, "drop", stream=False)
    assert http.get("/_mock/health").status_code == 200  # the server itself is fine


def test_client_leaving_mid_delay_is_recorded(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("slow", {"text": "x" * 400, "chunk_size": 1, "delay": 0.05})
    with httpx.Client(base_url=mock_proc.url, timeout=5.0) as own:
        with own.stream("POST", "/v1/chat/completions", json={"model": "slow", "stream": True, "messages": HELLO}) as r:
            next(r.iter_raw())
    wait_for(lambda: mock_proc.requests("slow")[0]["disconnected"])
    rec = mock_proc.requests("slow")[0]
    assert not rec["completed"] and rec["ended_at"] is not None


def test_hang_then_client_timeout_is_recorded(mock_proc: MockControl, http: httpx.Client) -> None:
    mock_proc.script("hang", {"hang": True})
    with httpx.Client(base_url=mock_proc.url, timeout=0.3) as own:
        with pytest.raises(httpx.ReadTimeout):
            chat(own, "hang")
    wait_for(lambda: mock_proc.requests("hang")[0]["disconnected"])
    assert not mock_proc.requests("hang")[0]["completed"]


def test_multi_worker_cli(tmp_path) -> None:
    backend = start_mock(tmp_path / "mock2.log", workers=2)
    try:
        r = httpx.post(f"{backend.url}/v1/chat/completions", json={"model": "mock-echo", "messages": HELLO})
        assert r.json()["choices"][0]["message"]["content"] == "You said: hi there"
    finally:
        backend.stop()
