"""A non-streamed ``chat.completion`` as the chunks a streaming backend sends.

We always ask upstream for ``stream: true``, but some servers ignore it and
answer with one JSON document. Rather than a second translation path, that
document is recast as the equivalent chunk sequence and fed to the same
``StreamTranslator``, so both kinds of backend give identical responses.
"""
from __future__ import annotations

from typing import Any

import orjson

_TEXT_FIELDS = ("reasoning_content", "reasoning", "content", "refusal")


def completion_to_chunks(doc: Any) -> list[dict[str, Any]]:
    """Chunks equivalent to ``doc`` (only ``choices[0]`` is used, as in streaming)."""
    if not isinstance(doc, dict):
        return [{"error": {"message": "the backend answered with JSON that is not an object"}}]
    if doc.get("error"):  # some servers send "error": null on success
        return [doc]
    chunks: list[dict[str, Any]] = []
    choices = doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice: dict[str, Any] = choices[0]
        message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
        delta: dict[str, Any] = {"role": "assistant"}
        for key in _TEXT_FIELDS:
            if isinstance(message.get(key), str) and message[key]:
                delta[key] = message[key]
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            delta["tool_calls"] = [
                {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)
            ]
        chunks.append(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": choice.get("logprobs"),
                        "finish_reason": choice.get("finish_reason") or "stop",
                    }
                ]
            }
        )
    if isinstance(doc.get("usage"), dict):
        chunks.append({"choices": [], "usage": doc["usage"]})
    return chunks


def completion_as_sse(raw: bytes) -> bytes:
    """The SSE body a streaming backend would have sent for this JSON answer."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = {"error": {"message": "the backend answered with invalid JSON"}}
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in completion_to_chunks(doc)) + b"data: [DONE]\n\n"
