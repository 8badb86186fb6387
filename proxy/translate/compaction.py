"""Compaction: a long conversation replaced by one opaque ``compaction`` item.

OpenAI's compaction (``POST /v1/responses/compact``, and Codex's "remote
compaction v2": a ``compaction_trigger`` item as the last input of an ordinary
request) hands back a ``compaction`` item whose ``encrypted_content`` stands for
everything before it. A chat backend has no such thing, so the proxy asks the
backend itself to summarize the conversation (with ``prompt``; see
``DEFAULT_PROMPT``) and carries the summary in the item, statelessly, the way
reasoning is carried (``reasoning_codec.pack`` with its own prefix ``rpxc1.``).
When the item comes back as input, the backend gets the summary, as a user
message, in place of the history it replaced (``summary_message``).

Shapes (openai 3.57): ``CompactedResponse`` = ``{"id", "object":
"response.compaction", "created_at", "output": [the user messages…, one
compaction item], "usage"}``; the item is ``{"id", "type": "compaction",
"encrypted_content"}``. Codex 0.171 (``codex-rs/core/src/compact_remote_v2.rs``)
counts the ``compaction`` items among the ``response.output_item.done`` events of
the trigger's stream and requires exactly one, then ``response.completed``.
"""
from __future__ import annotations

from typing import Any, Literal, TypedDict

from proxy.translate.content import listed_parts
from proxy.translate.context import ResponseContext
from proxy.translate.errors import InvalidRequest
from proxy.translate.history import input_items
from proxy.translate.ids import new_id
from proxy.translate.reasoning_codec import pack, unpack
from proxy.translate.shapes import Response, Usage
from proxy.translate.stream import StreamTranslator
from proxy.translate.usage import map_usage

PREFIX = "rpxc1."
TRIGGER = "compaction_trigger"

DEFAULT_PROMPT = (
    "Context checkpoint: write a handoff summary of the conversation so far.\n\n"
    "Another instance of the assistant will continue this work from your summary alone, without the "
    "messages above. Write it for that reader:\n"
    "- the user's goal, and every explicit requirement, constraint and preference;\n"
    "- what has been done: files read or changed, commands run and what they showed, decisions taken "
    "and why;\n"
    "- the current state, including errors not yet solved and questions still open;\n"
    "- the next steps, in order.\n"
    "Keep exact identifiers the work depends on (paths, names, commands, values, error messages). "
    "Be brief and factual, invent nothing, and do not call tools. Answer with the summary only."
)
# What the backend reads in place of the history a compaction item replaced.
SUMMARY_HEADING = "Summary of the conversation so far (it replaces the earlier messages):\n\n"

# Request keys the summarizing call keeps: who asks, which model and how it thinks.
# Tools, tool_choice, text formats and includes are the conversation's, not the summary's.
_SUMMARY_KEYS = (
    "model", "instructions", "reasoning", "temperature", "top_p", "max_output_tokens",
    "safety_identifier", "user", "prompt_cache_key", "service_tier",
)


def has_trigger(body: dict[str, Any]) -> bool:
    """Whether the request's last input item is a ``compaction_trigger`` (Codex's remote compaction v2)."""
    raw = body.get("input")
    return isinstance(raw, list) and bool(raw) and isinstance(raw[-1], dict) and raw[-1].get("type") == TRIGGER


def split_trigger(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request without its final ``compaction_trigger`` item, or None when it has none."""
    if not has_trigger(body):
        return None
    return {**body, "input": body["input"][:-1]}


def summary_request(body: dict[str, Any], prompt: str) -> dict[str, Any]:
    """The Responses request asking for the summary: the conversation, then ``prompt`` as the
    last user message; no tools offered, one JSON answer, nothing stored."""
    request = {k: body[k] for k in _SUMMARY_KEYS if k in body}
    request["input"] = [*input_items(body), {"type": "message", "role": "user", "content": prompt}]
    request["stream"] = False
    request["store"] = False
    return request


def summary_of(response: Response) -> str:
    """The text of a finished summarizing response ('' when it answered none)."""
    texts = []
    for item in response["output"]:
        if item["type"] == "message":
            texts += [part["text"] for part in item["content"] if part["type"] == "output_text"]
    return "".join(texts).strip()


class CompactionItem(TypedDict):
    id: str
    type: Literal["compaction"]
    encrypted_content: str


def compaction_item(summary: str) -> CompactionItem:
    return {"id": new_id("cmp"), "type": "compaction", "encrypted_content": pack(PREFIX, summary)}


def summary_message(item: dict[str, Any], param: str) -> str:
    """What a ``compaction`` input item tells the backend; a 400 for a blob not ours (never lose it silently)."""
    summary = unpack(PREFIX, item.get("encrypted_content"))
    if summary is None:
        raise InvalidRequest(
            f"Invalid '{param}.encrypted_content': this compaction item was not produced by this server, "
            "so its content cannot be read; send the conversation it replaced instead.",
            param + ".encrypted_content",
            "invalid_encrypted_content",
        )
    return SUMMARY_HEADING + summary


def user_messages(items: list[Any]) -> list[dict[str, Any]]:
    """The conversation's user messages, as a compaction's output keeps them (input-message items)."""
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("role") != "user" or item.get("type", "message") != "message":
            continue
        content = item.get("content")
        parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else listed_parts(content)
        out.append({
            "id": item.get("id") if isinstance(item.get("id"), str) else new_id("msg"),
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": parts,
        })
    return out


def compacted_window(items: list[Any], item: CompactionItem | dict[str, Any]) -> list[dict[str, Any]]:
    """What a conversation compacted by a trigger stands on from then on: its user messages (as
    ``/responses/compact`` keeps them), then the ``compaction`` item, which the backend reads as
    the summary of the rest. A chain from the trigger's response sees exactly this, as a client
    sending these items itself would."""
    return [*user_messages(items), dict(item)]


def compacted_response(
    *, items: list[Any], summary: str, usage: Usage | None, created_at: int
) -> dict[str, Any]:
    """``POST /v1/responses/compact``'s answer (the SDK's ``CompactedResponse``)."""
    return {
        "id": new_id("resp"),
        "object": "response.compaction",
        "created_at": created_at,
        "output": [*user_messages(items), compaction_item(summary)],
        "usage": usage or map_usage(None),
    }


def trigger_response(in_progress: Response, item: CompactionItem, usage: Usage | None, now: int) -> dict[str, Any]:
    """The finished Response of a ``compaction_trigger`` request: its one output is the compaction item.

    A plain dict, not a ``shapes.Response``: that type's output items are what the
    stream translator builds, and a compaction item is not one of them."""
    return {
        **in_progress, "status": "completed", "completed_at": now, "output": [item], "usage": usage or map_usage(None),
    }


def in_progress(ctx: ResponseContext) -> Response:
    """The in-progress Response for ``ctx``, as the stream translator builds every one."""
    return StreamTranslator(ctx, emit_events=False).response


def trigger_stream(ctx: ResponseContext, final: dict[str, Any]) -> list[dict[str, Any]]:
    """A trigger's whole event stream: the translator's ``response.created`` and
    ``response.in_progress``, then the compaction item added and done, then ``response.completed``."""
    events = StreamTranslator(ctx).start()
    item = final["output"][0]
    seq = len(events)
    events += [
        {"type": "response.output_item.added", "sequence_number": seq, "output_index": 0, "item": item},
        {"type": "response.output_item.done", "sequence_number": seq + 1, "output_index": 0, "item": item},
        {"type": "response.completed", "sequence_number": seq + 2, "response": final},
    ]
    return events
