"""Round trip: whatever we emit, fed back as the next turn's input, translates.

The SDK's documented multi-turn pattern is ``input += response.output`` plus the
tool results. For any mix of reasoning, text, function calls, custom tool calls
and namespaced calls — from the streaming and the JSON path alike — the next
request must translate without error and carry the history faithfully
upstream: each call in the assistant message with its upstream name, the
reasoning back as ``reasoning_content``, every call answered by its tool message.
That holds in both reasoning shapes (``reasoning_text`` content, or the summary
a ``reasoning.summary`` request gets), with ``encrypted_content`` or without it
(then the visible text is all the proxy has to go on).
"""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.stream import StreamTranslator

POLICY = TranslationPolicy()
TOOLS = [
    {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files."},
    {
        "type": "namespace",
        "name": "agents",
        "description": "Sub-agents.",
        "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}],
    },
]
# (upstream name, arguments JSON) for each kind of call the model may make.
CALL_KINDS = {
    "function": ("exec_command", lambda s: orjson.dumps({"cmd": s}).decode()),
    "custom": ("apply_patch", lambda s: orjson.dumps({"input": s}).decode()),
    "namespaced": ("agents__spawn", lambda s: orjson.dumps({"task": s}).decode()),
}

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


def _first_turn(stream: bool, summary: str | None = None, encrypted: bool = True) -> dict:
    body = {
        "model": "m",
        "input": [{"role": "user", "content": "go"}],
        "tools": TOOLS,
        "stream": stream,
        "include": ["reasoning.encrypted_content"] if encrypted else [],
    }
    if summary is not None:
        body["reasoning"] = {"summary": summary}
    return body


def _chunks(reasoning: str, content: str, calls: list[tuple[str, str]]) -> list[dict]:
    chunks: list[dict] = []
    if reasoning:
        chunks.append({"choices": [{"index": 0, "delta": {"reasoning_content": reasoning}, "finish_reason": None}]})
    if content:
        chunks.append({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]})
    for i, (name, args) in enumerate(calls):
        call = {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]})
    finish = "tool_calls" if calls else "stop"
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    return chunks


@settings(max_examples=150, deadline=None)
@given(
    stream=st.booleans(),
    reasoning=text,
    content=text,
    calls=st.lists(st.tuples(st.sampled_from(sorted(CALL_KINDS)), text), max_size=4),
    summary=st.sampled_from([None, "auto", "concise", "detailed"]),
    encrypted=st.booleans(),
)
def test_output_fed_back_as_input_translates(stream, reasoning, content, calls, summary, encrypted):
    body = _first_turn(stream, summary, encrypted)
    _, ctx = translate_request(body, POLICY)
    assert ctx.reasoning_as_summary is (summary is not None)
    upstream_calls = [(CALL_KINDS[kind][0], CALL_KINDS[kind][1](arg)) for kind, arg in calls]
    translator = StreamTranslator(ctx, emit_events=stream)
    translator.start()
    for chunk in _chunks(reasoning, content, upstream_calls):
        translator.feed(chunk)
    translator.finish()
    output = translator.response["output"]
    assert translator.response["status"] == "completed"
    for item in output:
        if item["type"] == "reasoning":
            # The shape the request asked for; the text itself is checked upstream below.
            if summary is None:
                assert item["summary"] == [] and [p["type"] for p in item["content"]] == ["reasoning_text"]
            else:
                assert "content" not in item and [p["type"] for p in item["summary"]] == ["summary_text"]
            assert ("encrypted_content" in item) is encrypted

    results = []
    for item in output:
        if item["type"] == "function_call":
            results.append({"type": "function_call_output", "call_id": item["call_id"], "output": "ok"})
        elif item["type"] == "custom_tool_call":
            results.append({"type": "custom_tool_call_output", "call_id": item["call_id"], "output": "patched"})
    next_body = {**body, "input": [*body["input"], *output, *results]}
    chat, _ = translate_request(next_body, POLICY)

    messages = chat["messages"]
    assistant = [m for m in messages if m["role"] == "assistant"]
    tool_msgs = [m for m in messages if m["role"] == "tool"]
    if upstream_calls:
        sent = [(c["function"]["name"], c["function"]["arguments"]) for m in assistant for c in m.get("tool_calls") or []]
        assert sent == upstream_calls
        assert [m["tool_call_id"] for m in tool_msgs] == [f"call_{i}" for i in range(len(calls))]
        # Tool results come right after the assistant message that made the calls.
        first_tool = messages.index(tool_msgs[0])
        assert messages[first_tool - 1]["role"] == "assistant" and messages[first_tool - 1].get("tool_calls")
    else:
        assert not tool_msgs
    if reasoning.strip() and assistant:
        assert assistant[0].get("reasoning_content") == reasoning
