"""Turn a script (or a built-in model name) into a ``Plan``: the exact bytes to send.

Pure functions, no I/O: the ASGI layer in ``proxy.mock.app`` only replays a plan
with its delays, so every framing quirk a test can ask for lives here, in one
place, and can be unit-tested without a socket.
"""
from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.translate.compaction import DEFAULT_PROMPT

SSE_CONTENT_TYPE = b"text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = b"application/json"

_ids = itertools.count(1)
_COMPACTION_MARKER = DEFAULT_PROMPT.split("\n", 1)[0]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass(slots=True)
class Plan:
    """What to send for one chat request; replayed by the app."""

    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    first_byte_delay: float = 0.0
    delay: float = 0.0
    hang: bool = False
    drop_after: int | None = None  # send this many pieces, then break the connection
    coalesce: bool = True  # no delay between pieces: one write is as good as many
    sized: bool = False  # send content-length (JSON bodies); streams go chunked like real servers

    @property
    def needs_watcher(self) -> bool:
        """Only a plan that waits can notice a client leaving, so only it pays for a watcher task."""
        return self.hang or self.first_byte_delay > 0 or (self.delay > 0 and len(self.pieces) > 1)


# --------------------------------------------------------------------------- built-ins


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last ``user`` message (string or text parts), or ``""``."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _content_text(msg.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _placeholder(schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    placeholders: dict[Any, Any] = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    return placeholders.get(kind, "test")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tool_script(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        last = messages[-1]
        if last.get("role") == "tool":
            # Answer tool results with text, so agent loops against mock-tool terminate.
            return {"text": "Tool result: " + _content_text(last.get("content"))}
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            inner = tool.get("function")
            fn: dict[str, Any] = inner if isinstance(inner, dict) else tool
            name = fn.get("name")
            if isinstance(name, str) and name:
                params = _dict(fn.get("parameters"))
                props = _dict(params.get("properties"))
                required = params.get("required")
                required = required if isinstance(required, list) else []
                args = {k: _placeholder(props.get(k)) for k in required if isinstance(k, str)}
                return {"tool_calls": [{"id": "call_mock_1", "name": name, "arguments": orjson.dumps(args).decode()}]}
    return {"tool_calls": [{"id": "call_mock_1", "name": "get_weather", "arguments": '{"location":"Paris"}'}]}


def is_compaction(body: dict[str, Any]) -> bool:
    """Whether this is the proxy's compaction call: the last message is a user message
    starting with the first line of its default compaction prompt."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    return last.get("role") == "user" and _content_text(last.get("content")).startswith(_COMPACTION_MARKER)


def compaction_script(body: dict[str, Any]) -> dict[str, Any]:
    """The built-in answer to a compaction call: ``"Summary of N earlier messages. The user
    asked: <their texts, ' / '-joined>"``."""
    messages = body["messages"]
    earlier = [m for m in messages[:-1] if isinstance(m, dict) and m.get("role") != "system"]
    asked = " / ".join(_content_text(m.get("content")) for m in earlier if m.get("role") == "user")
    return {"text": f"Summary of {len(earlier)} earlier messages. The user asked: {asked}"}


def builtin_script(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The script a model name stands for when no script is queued (see the package docstring)."""
    echo = "You said: " + last_user_text(body)
    if model.startswith("mock-stream-"):
        n = _int_suffix(model, 10)
        return {"chunks": [f"tok{i} " for i in range(n)]}
    if model == "mock-tool":
        return _tool_script(body)
    if model == "mock-reasoning":
        return {"reasoning": "Thinking about: " + last_user_text(body), "text": echo}
    if model.startswith("mock-slow-"):
        return {"text": echo, "delay": _int_suffix(model, 100) / 1000.0}
    if model.startswith("mock-error-"):
        return {"status": _int_suffix(model, 500)}
    return {"text": echo}


def _int_suffix(model: str, default: int) -> int:
    try:
        return max(0, int(model.rsplit("-", 1)[1]))
    except (IndexError, ValueError):
        return default


# --------------------------------------------------------------------------- plans


def _split(text: str, size: int) -> list[str]:
    if not text:
        return []
    return [text[i : i + size] for i in range(0, len(text), size)]


def _args_text(args: Any) -> str:
    return args if isinstance(args, str) else orjson.dumps(args if args is not None else {}).decode()


def error_body(status: int, error: dict[str, Any] | None) -> dict[str, Any]:
    """An OpenAI-shaped error body; fields the script leaves out get defaults from the status."""
    error = error or {}
    return {
        "error": {
            "message": error.get("message", f"mock error {status}"),
            "type": error.get(
                "type", _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
            ),
            "param": error.get("param"),
            "code": error.get("code"),
        }
    }


def _usage(script: dict[str, Any], body: dict[str, Any], text: str, reasoning: str, extra: int) -> dict[str, Any]:
    given = script.get("usage")
    if isinstance(given, dict):
        usage = dict(given)
        if "total_tokens" not in usage:
            usage["total_tokens"] = int(usage.get("prompt_tokens", 0) or 0) + int(
                usage.get("completion_tokens", 0) or 0
            )
        return usage
    prompt = max(1, len(orjson.dumps(body.get("messages", []))) // 4)
    reasoning_tokens = len(reasoning) // 4
    completion = max(1, (len(text) + len(reasoning) + extra) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def _logprobs(pieces: list[str]) -> dict[str, Any]:
    return {
        "content": [
            {"token": p, "logprob": -0.25, "bytes": list(p.encode()), "top_logprobs": []} for p in pieces
        ],
        "refusal": None,
    }


def _tool_calls(script: dict[str, Any]) -> list[dict[str, str]]:
    calls = script.get("tool_calls") or []
    out = []
    for i, call in enumerate(calls):
        out.append(
            {
                "id": str(call.get("id") or f"call_mock_{i + 1}"),
                "name": str(call.get("name") or "f"),
                "arguments": _args_text(call.get("arguments")),
            }
        )
    return out


def _tool_deltas(calls: list[dict[str, str]], style: str, size: int) -> list[list[dict[str, Any]]]:
    """One ``delta.tool_calls`` list per chunk, shaped the way different servers stream them."""
    def head(i: int, c: dict[str, str], with_id: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"index": i}
        if with_id:
            d["id"] = c["id"]
        d["type"] = "function"
        d["function"] = {"name": c["name"], "arguments": ""}
        return d

    def frags(i: int, c: dict[str, str]) -> list[dict[str, Any]]:
        return [{"index": i, "function": {"arguments": a}} for a in _split(c["arguments"], size)]

    if style == "whole_at_end":
        return [[
            {
                "index": i, "id": c["id"], "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for i, c in enumerate(calls)
        ]]
    out: list[list[dict[str, Any]]] = []
    if style == "interleaved":
        seqs = [[head(i, c)] + frags(i, c) for i, c in enumerate(calls)]
        for group in itertools.zip_longest(*seqs):
            out.extend([d] for d in group if d is not None)
        return out
    for i, c in enumerate(calls):
        if style == "args_before_name":
            out.extend([d] for d in frags(i, c))
            out.append([{"index": i, "id": c["id"], "type": "function", "function": {"name": c["name"]}}])
        else:  # standard / no_id
            out.append([head(i, c, with_id=style != "no_id")])
            out.extend([d] for d in frags(i, c))
    return out


def script_headers(script: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """A script's ``headers``, as ASGI header pairs."""
    return [
        (str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
        for k, v in (script.get("headers") or {}).items()
    ]


def build_plan(script: dict[str, Any], body: dict[str, Any], model: str) -> Plan:
    """Everything a request will receive: status, headers and body pieces (one SSE event each)."""
    status = int(script.get("status", 200))
    extra_headers = script_headers(script)
    plan = Plan(
        status=status,
        first_byte_delay=float(script.get("first_byte_delay") or 0),
        delay=float(script.get("delay") or 0),
        hang=bool(script.get("hang")),
    )
    stream = bool(body.get("stream"))
    content_type = script.get("content_type")

    if "raw" in script or "raw_b64" in script:
        raw = script.get("raw") or []
        pieces = [p.encode() if isinstance(p, str) else bytes(p) for p in raw]
        pieces += [base64.b64decode(p) for p in script.get("raw_b64") or []]
        plan.pieces = pieces
        plan.coalesce = False  # raw pieces are explicit network writes
        ctype = content_type.encode() if content_type else (SSE_CONTENT_TYPE if stream else JSON_CONTENT_TYPE)
    elif status >= 400:
        plan.pieces = [orjson.dumps(error_body(status, script.get("error")))]
        plan.sized = True
        ctype = content_type.encode() if content_type else JSON_CONTENT_TYPE
    elif stream:
        plan.pieces = _sse_pieces(script, body, model)
        ctype = content_type.encode() if content_type else SSE_CONTENT_TYPE
    else:
        plan.pieces = [orjson.dumps(_completion(script, body, model))]
        plan.sized = True
        ctype = content_type.encode() if content_type else JSON_CONTENT_TYPE

    if any(k == b"content-type" for k, _ in extra_headers):
        plan.headers = extra_headers
    else:
        plan.headers = [(b"content-type", ctype), *extra_headers]
    if plan.delay > 0:
        plan.coalesce = False

    drop_after = script.get("drop_after")
    if drop_after is not None:
        drop_after = max(0, int(drop_after))
        if len(plan.pieces) == 1 and plan.coalesce:
            # A JSON body has no events: break it in the middle instead.
            whole = plan.pieces[0]
            plan.pieces = [whole[: len(whole) // 2], whole[len(whole) // 2 :]]
            drop_after = min(drop_after, 1)
        plan.drop_after = drop_after
    return plan


def _content_parts(script: dict[str, Any], size: int) -> tuple[str, str, list[str]]:
    """(text, reasoning, content deltas) with ``<think>`` folded into the content when asked."""
    if isinstance(script.get("chunks"), list):
        pieces = [str(c) for c in script["chunks"]]
        text = "".join(pieces)
    else:
        text = str(script.get("text") or "")
        pieces = []
    reasoning = str(script.get("reasoning") or "")
    if script.get("reasoning_field") == "think" and reasoning:
        full = f"<think>{reasoning}</think>" + text
        return text, reasoning, _split(full, size)
    return text, reasoning, pieces or _split(text, size)


def _sse_pieces(script: dict[str, Any], body: dict[str, Any], model: str) -> list[bytes]:
    size = max(1, int(script.get("chunk_size") or 4))
    eol = b"\r\n\r\n" if script.get("crlf") else b"\n\n"
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    cid = f"chatcmpl-mock{next(_ids)}"
    created = int(time.time())
    text, reasoning, content_deltas = _content_parts(script, size)
    rfield = script.get("reasoning_field") or "reasoning_content"
    refusal = str(script.get("refusal") or "")
    calls = _tool_calls(script)
    logprobs = bool(script.get("logprobs"))

    def event(obj: Any) -> bytes:
        return b"data: " + orjson.dumps(obj) + eol

    def chunk(delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> bytes:
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return event(obj)

    out = [chunk({"role": "assistant", "content": ""})]
    extra = 0
    if oversize := int(script.get("oversize_event_bytes") or 0):
        skeleton = len(chunk({"content": ""}))
        pad = max(1, oversize - skeleton)
        out.append(chunk({"content": "x" * pad}))
        extra += pad
    if reasoning and rfield != "think":
        out.extend(chunk({rfield: r}) for r in _split(reasoning, size))
    out.extend(chunk({"refusal": r}) for r in _split(refusal, size))
    for piece in content_deltas:
        out.append(chunk({"content": piece}, lp=_logprobs([piece]) if logprobs else None))
    for tc in _tool_deltas(calls, script.get("tool_call_style") or "standard", size):
        out.append(chunk({"tool_calls": tc}))

    mid_error = script.get("error_mid_stream")
    if isinstance(mid_error, dict):
        after = int(mid_error.get("after", 2))
        err = error_body(500, {k: v for k, v in mid_error.items() if k != "after"})
        return out[:after] + [event(err), b"data: [DONE]" + eol]
    if script.get("no_done"):
        return out
    finish = script.get("finish_reason") or ("tool_calls" if calls else "stop")
    out.append(chunk({}, finish=finish))
    if include_usage:
        extra += len(refusal) + sum(len(c["arguments"]) + len(c["name"]) for c in calls)
        out.append(event({
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(script, body, text, reasoning, extra),
        }))
    out.append(b"data: [DONE]" + eol)
    return out


def _completion(script: dict[str, Any], body: dict[str, Any], model: str) -> dict[str, Any]:
    size = max(1, int(script.get("chunk_size") or 4))
    text, reasoning, content_deltas = _content_parts(script, size)
    rfield = script.get("reasoning_field") or "reasoning_content"
    refusal = str(script.get("refusal") or "") or None
    calls = _tool_calls(script)
    content = "".join(content_deltas)
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else ""), "refusal": refusal}
    if reasoning and rfield != "think":
        message[rfield] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ]
    extra = len(refusal or "") + sum(len(c["arguments"]) + len(c["name"]) for c in calls)
    return {
        "id": f"chatcmpl-mock{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": _logprobs(content_deltas) if script.get("logprobs") else None,
            "finish_reason": script.get("finish_reason") or ("tool_calls" if calls else "stop"),
        }],
        "usage": _usage(script, body, text, reasoning, extra),
    }
