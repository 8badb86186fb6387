"""Chat Completions chunks → Responses stream events and the final Response.

One ``StreamTranslator`` per request. The I/O layer feeds it every parsed
``chat.completion.chunk`` and sends the events it returns; in JSON mode
(``emit_events=False``) the same state machine runs but builds no event dicts,
and only ``response`` is used.

Event grammar (translation-guide §4): ``response.created``,
``response.in_progress``, then per output item ``output_item.added`` →
content part / deltas / done events → ``output_item.done``, and exactly one
terminal ``response.completed`` / ``response.incomplete`` / ``response.failed``.

Naming choices a client must know about:

* **Reasoning events use OpenAI's names**: ``response.reasoning_text.delta`` /
  ``response.reasoning_text.done`` with ``reasoning_text`` content parts. The
  Open Responses schema spells these ``response.reasoning.delta/.done``; the
  openai SDK and Codex parse only the OpenAI names, so those are what we emit
  (the conformance checker maps the names when validating against the Open
  Responses models).
* **Reasoning as a summary** when the request set ``reasoning.summary``
  (``ctx.reasoning_as_summary``): Codex and the Agents SDK display summaries
  and hide raw reasoning text, and a chat backend has no separate summary, so
  the whole reasoning becomes one summary part. The item is
  ``{id, type, summary: [{type: "summary_text", text}], status}`` with no
  ``content`` key (as OpenAI sends it), and the events are
  ``output_item.added`` → ``reasoning_summary_part.added`` (``summary_index``
  0, empty text) → ``reasoning_summary_text.delta``* →
  ``reasoning_summary_text.done`` → ``reasoning_summary_part.done`` (with
  ``status: "incomplete"`` when cut short) → ``output_item.done``. Both specs
  share these names. ``encrypted_content`` holds the full text in either mode.
* **The ``error`` event has OpenAI's flat shape** ``{type:"error", code,
  message, param, sequence_number}``. Open Responses nests these under an
  ``error`` key, but the openai SDK raises ``APIError`` on any event whose
  ``error`` key is truthy, which would abort the stream before the
  ``response.failed`` event that real OpenAI sends after it.

Output order: a reasoning item, then a message item (only once there is
non-whitespace text or a refusal), then one item per tool call in order of
first appearance. Reasoning and message are "segments": switching from one to
the other (or starting a tool call) closes the open segment, so events of one
segment are never interleaved with another's and a late segment simply becomes
a new item with the next ``output_index``. Tool calls stay open until the
``finish_reason`` chunk, because chat streams interleave their argument
fragments by ``index`` and never say when one call is complete.

Tool-call shapes handled: id and name first; arguments before the name
(buffered until the name is known, ``output_item.added`` is only sent with a
name); the whole call in one chunk; calls interleaved by ``index``; a missing
``index`` (matched by id, else the last call); a missing id (a ``call_…`` id is
generated). A call whose name never arrives is dropped. Calls to tools outside
``ctx.allowed_tools`` are dropped before they reach the client and recorded in
``dropped_calls`` and ``ctx.warnings``.

Custom tool calls (``ctx.custom_tools``) arrive as a function whose arguments
are ``{"input": "<text>"}``. We **buffer** the arguments and decode them once
the call is complete: an incremental JSON-string decoder would let
``custom_tool_call_input.delta`` flow earlier, but the clients that use custom
tools (Codex ``apply_patch``) act only on ``output_item.done``, and a buffer is
simpler and exact. The input is then sent as one
``response.custom_tool_call_input.delta`` and ``.done``. Arguments that are
not a JSON object with a string ``input`` are passed through verbatim as the
input (models sometimes emit the raw text).

``finish_reason`` closes every open item; terminal events come only from
``finish()``, because the usage-only chunk (``choices: []``) arrives after the
finish reason. ``finish()`` without a finish reason means the upstream stream
was cut: that is a failure, never ``completed``.
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from .context import ResponseContext
from .ids import new_id
from .reasoning_codec import encode_reasoning
from .think import ThinkSplitter
from .usage import map_usage

__all__ = ["StreamTranslator", "ERROR_CODES"]

# Codes the openai SDK's ResponseError accepts; anything else becomes "server_error".
ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "misalignment_policy_violation",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)

_INCOMPLETE_REASONS = {
    "length": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "content_filter": "content_filter",
}

# Finish reasons that mean the generation did not end normally. Any other
# unknown reason (TGI's "eos_token", "stop_sequence", ...) counts as a normal stop.
_FAILED_REASONS = ("error", "abort")

TRUNCATED_MESSAGE = "upstream stream ended before completion"

# Event type names, spelled once.
_CREATED = "response.created"
_IN_PROGRESS = "response.in_progress"
_ITEM_ADDED = "response.output_item.added"
_ITEM_DONE = "response.output_item.done"
_PART_ADDED = "response.content_part.added"
_PART_DONE = "response.content_part.done"
_TEXT_DELTA = "response.output_text.delta"
_TEXT_DONE = "response.output_text.done"
_REFUSAL_DELTA = "response.refusal.delta"
_REFUSAL_DONE = "response.refusal.done"
_RS_DELTA = "response.reasoning_text.delta"
_RS_DONE = "response.reasoning_text.done"
_SUM_PART_ADDED = "response.reasoning_summary_part.added"
_SUM_PART_DONE = "response.reasoning_summary_part.done"
_SUM_DELTA = "response.reasoning_summary_text.delta"
_SUM_DONE = "response.reasoning_summary_text.done"
_ARGS_DELTA = "response.function_call_arguments.delta"
_ARGS_DONE = "response.function_call_arguments.done"
_CUSTOM_DELTA = "response.custom_tool_call_input.delta"
_CUSTOM_DONE = "response.custom_tool_call_input.done"

_now = time.time  # monkeypatched by tests for a deterministic completed_at


def _logprob(value: Any) -> float:
    return float(value) if (type(value) is float or type(value) is int) else 0.0


def _token_bytes(value: Any, token: str) -> list:
    if type(value) is list and all(type(b) is int for b in value):
        return value
    return list(token.encode())


def _convert_logprobs(entries: Any) -> list[dict]:
    """Chat ``logprobs.content[]`` → Responses logprob objects (``bytes`` filled in).

    Total over any input: a malformed entry is skipped or its odd field
    replaced, never passed through (clients validate these) or raised on.
    """
    out = []
    if type(entries) is not list:
        return out
    for e in entries:
        if type(e) is not dict:
            continue
        token = e.get("token")
        if type(token) is not str:
            continue
        tops = []
        top = e.get("top_logprobs")
        for t in top if type(top) is list else ():
            if type(t) is dict and type(t.get("token")) is str:
                tops.append(
                    {
                        "token": t["token"],
                        "logprob": _logprob(t.get("logprob")),
                        "bytes": _token_bytes(t.get("bytes"), t["token"]),
                    }
                )
        out.append(
            {
                "token": token,
                "logprob": _logprob(e.get("logprob")),
                "bytes": _token_bytes(e.get("bytes"), token),
                "top_logprobs": tops,
            }
        )
    return out


def _choice_zero(choices: Any) -> dict | None:
    for c in choices:
        if type(c) is dict and c.get("index") == 0:
            return c
    return None


class _Call:
    """One upstream tool call being assembled."""

    __slots__ = ("call_id", "name", "args", "item_id", "index", "custom", "added", "dropped")

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.name: str | None = None
        self.args: list[str] = []
        self.item_id = ""
        self.index = -1  # output_index once added
        self.custom = False
        self.added = False
        self.dropped = False


class StreamTranslator:
    """State machine from chat chunks to Responses events; see the module docstring."""

    def __init__(self, ctx: ResponseContext, *, emit_events: bool = True) -> None:
        self.ctx = ctx
        self._emit = emit_events
        self._seq = 0
        self._items: list[dict | None] = []  # by output_index; final item dicts
        self._think = ThinkSplitter()
        # reasoning segment
        self._rs_id: str | None = None
        self._rs_index = -1
        self._rs_buf: list[str] = []
        self._rs_summary = ctx.reasoning_as_summary
        # message segment
        self._msg_id: str | None = None
        self._msg_index = -1
        self._msg_content: list[dict] = []  # closed parts
        self._part: str | None = None  # "text" | "refusal" | None
        self._part_buf: list[str] = []
        self._part_lp: list[dict] = []
        self._pending_ws: list[str] = []  # leading whitespace before a message is opened
        self._pending_lp: list[dict] = []
        # tool calls
        self._calls: dict[Any, _Call] = {}
        self._call_order: list[_Call] = []
        self._next_add = 0  # position in _call_order of the next call to add
        self._last_call: _Call | None = None
        self.dropped_calls: list[str] = []
        # end state
        self._finish_reason: str | None = None
        self._incomplete: str | None = None
        self._usage: Any = None
        self._response = self._build("in_progress", [], None, None, None)
        self._done = False

    # ------------------------------------------------------------------ API

    @property
    def response(self) -> dict:
        return self._response

    @property
    def done(self) -> bool:
        return self._done

    def start(self) -> list[dict]:
        """``response.created`` and ``response.in_progress`` with the in-progress snapshot."""
        if not self._emit:
            return []
        r = self._response
        return [
            {"type": _CREATED, "sequence_number": self._next_seq(), "response": {**r, "output": []}},
            {"type": _IN_PROGRESS, "sequence_number": self._next_seq(), "response": {**r, "output": []}},
        ]

    def feed(self, chunk: dict) -> list[dict]:
        """Translate one parsed ``chat.completion.chunk``."""
        if self._done:
            return []
        out: list[dict] | None = [] if self._emit else None
        try:
            if "error" in chunk and chunk["error"]:
                return self._fail_from_upstream(chunk["error"], out)
            usage = chunk.get("usage")
            if usage:
                self._usage = usage
            choices = chunk.get("choices")
            if not choices or self._finish_reason is not None:
                return out if out is not None else []
            choice = choices[0]
            if choice.get("index", 0) not in (0, None):
                # n > 1 (a backend default we never ask for): only choice 0
                # is translated, wherever it sits in the list.
                choice = _choice_zero(choices)
                if choice is None:
                    return out if out is not None else []
            delta = choice.get("delta")
            if delta:
                self._delta(delta, choice, out)
            finish = choice.get("finish_reason")
            if finish:
                if finish in _FAILED_REASONS:
                    # vLLM ends an aborted request with finish_reason "abort":
                    # the answer is cut short, so it must not read as completed.
                    return self._fail(f"upstream reported finish_reason {finish!r}", "server_error", out)
                self._finish_reason = finish
                self._incomplete = _INCOMPLETE_REASONS.get(finish)
                self._close_all(out)
        except (AttributeError, TypeError, KeyError, ValueError, IndexError):
            # Events already built from this chunk keep their sequence numbers.
            return self._fail("malformed chunk from upstream", "server_error", out)
        return out if out is not None else []

    def finish(self) -> list[dict]:
        """Upstream ended: close open items and emit exactly one terminal event."""
        if self._done:
            return []
        out: list[dict] | None = [] if self._emit else None
        if self._finish_reason is None:
            return self._fail(TRUNCATED_MESSAGE, "server_error", out)
        usage = map_usage(self._usage)
        output = self._output()
        if self._incomplete:
            resp = self._build("incomplete", output, usage, None, {"reason": self._incomplete})
            kind = "response.incomplete"
        else:
            resp = self._build("completed", output, usage, None, None, int(_now()))
            kind = "response.completed"
        return self._terminal(kind, resp, out)

    def fail(self, message: str, code: str = "server_error") -> list[dict]:
        """End the response as failed: an ``error`` event, then ``response.failed``."""
        if self._done:
            return []
        return self._fail(message, code, [] if self._emit else None)

    # ------------------------------------------------------------ internals

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = seq + 1
        return seq

    def _build(
        self,
        status: str,
        output: list,
        usage: dict | None,
        error: dict | None,
        incomplete: dict | None,
        completed_at: int | None = None,
    ) -> dict:
        ctx = self.ctx
        e = ctx.echo
        # The spec's ResponseResource key order; ECHO_KEYS supply the rest.
        return {
            "id": ctx.response_id,
            "object": "response",
            "created_at": ctx.created_at,
            "completed_at": completed_at,
            "status": status,
            "incomplete_details": incomplete,
            "model": ctx.model,
            "previous_response_id": e.get("previous_response_id"),
            "instructions": e.get("instructions"),
            "output": output,
            "error": error,
            "tools": e.get("tools"),
            "tool_choice": e.get("tool_choice"),
            "truncation": e.get("truncation"),
            "parallel_tool_calls": e.get("parallel_tool_calls"),
            "text": e.get("text"),
            "top_p": e.get("top_p"),
            "presence_penalty": e.get("presence_penalty"),
            "frequency_penalty": e.get("frequency_penalty"),
            "top_logprobs": e.get("top_logprobs"),
            "temperature": e.get("temperature"),
            "reasoning": e.get("reasoning"),
            "usage": usage,
            "max_output_tokens": e.get("max_output_tokens"),
            "max_tool_calls": e.get("max_tool_calls"),
            "store": e.get("store"),
            "background": e.get("background"),
            "service_tier": e.get("service_tier"),
            "metadata": e.get("metadata"),
            "safety_identifier": e.get("safety_identifier"),
            "prompt_cache_key": e.get("prompt_cache_key"),
        }

    def _output(self) -> list[dict]:
        return [item for item in self._items if item is not None]

    def _terminal(self, kind: str, resp: dict, out: list | None) -> list[dict]:
        self._response = resp
        self._done = True
        if out is None:
            return []
        out.append({"type": kind, "sequence_number": self._next_seq(), "response": resp})
        return out

    def _fail_from_upstream(self, err: Any, out: list | None) -> list[dict]:
        if type(err) is dict:
            message = err.get("message")
            code = err.get("code")
        else:
            message, code = err, None
        if not isinstance(message, str) or not message:
            message = "upstream error"
        return self._fail("upstream error: " + message, code if type(code) is str else "server_error", out)

    def _fail(self, message: str, code: str, out: list | None) -> list[dict]:
        # The `error` event's code is free text, so it keeps the precise one
        # (backend_timeout, backend_error, …); `response.error.code` is an enum in
        # the openai SDK, so there anything outside it becomes "server_error".
        response_code = code if code in ERROR_CODES else "server_error"
        self._close_all(out, failed=True)
        if out is not None:
            out.append(
                {"type": "error", "sequence_number": self._next_seq(), "code": code, "message": message, "param": None}
            )
        resp = self._build(
            "failed", self._output(), map_usage(self._usage), {"code": response_code, "message": message}, None
        )
        return self._terminal("response.failed", resp, out)

    # ----------------------------------------------------------- deltas

    def _delta(self, delta: dict, choice: dict, out: list | None) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and type(reasoning) is str:
            self._reasoning(reasoning, out)
        content = delta.get("content")
        if content:
            if type(content) is list:  # rare: content parts in a delta
                content = "".join(p.get("text") or "" for p in content if type(p) is dict)
            if type(content) is str:
                lp = None
                if self.ctx.include_logprobs:
                    logprobs = choice.get("logprobs")
                    if type(logprobs) is dict:
                        lp = _convert_logprobs(logprobs.get("content"))
                think = self._think
                if think.passthrough:
                    self._text(content, lp, out)
                else:
                    r, c = think.feed(content)
                    if r:
                        self._reasoning(r, out)
                    if c:
                        self._text(c, lp, out)
        refusal = delta.get("refusal")
        if refusal and type(refusal) is str:
            self._refusal(refusal, out)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            for tc in tool_calls:
                self._tool_delta(tc, out)
            self._add_ready_calls(out)
        else:
            fc = delta.get("function_call")  # legacy single-call form
            if fc:
                self._tool_delta({"index": 0, "function": fc}, out)
                self._add_ready_calls(out)

    # reasoning segment

    def _reasoning(self, text: str, out: list | None) -> None:
        if self._msg_id is not None:
            self._close_message(out, "completed")
        if self._rs_id is None:
            self._open_reasoning(out)
        self._rs_buf.append(text)
        if out is not None:
            if self._rs_summary:
                out.append(
                    {
                        "type": _SUM_DELTA,
                        "sequence_number": self._next_seq(),
                        "item_id": self._rs_id,
                        "output_index": self._rs_index,
                        "summary_index": 0,
                        "delta": text,
                    }
                )
            else:
                out.append(
                    {
                        "type": _RS_DELTA,
                        "sequence_number": self._next_seq(),
                        "item_id": self._rs_id,
                        "output_index": self._rs_index,
                        "content_index": 0,
                        "delta": text,
                    }
                )

    def _open_reasoning(self, out: list | None) -> None:
        self._rs_id = rid = new_id("rs")
        self._rs_index = idx = len(self._items)
        self._items.append(None)
        self._rs_buf = []
        if out is None:
            return
        if self._rs_summary:
            out.append(
                {
                    "type": _ITEM_ADDED,
                    "sequence_number": self._next_seq(),
                    "output_index": idx,
                    "item": {"id": rid, "type": "reasoning", "summary": [], "status": "in_progress"},
                }
            )
            out.append(
                {
                    "type": _SUM_PART_ADDED,
                    "sequence_number": self._next_seq(),
                    "item_id": rid,
                    "output_index": idx,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }
            )
            return
        out.append(
            {
                "type": _ITEM_ADDED,
                "sequence_number": self._next_seq(),
                "output_index": idx,
                "item": {"id": rid, "type": "reasoning", "summary": [], "content": [], "status": "in_progress"},
            }
        )
        out.append(
            {
                "type": _PART_ADDED,
                "sequence_number": self._next_seq(),
                "item_id": rid,
                "output_index": idx,
                "content_index": 0,
                "part": {"type": "reasoning_text", "text": ""},
            }
        )

    def _close_reasoning(self, out: list | None, status: str) -> None:
        rid, idx = self._rs_id, self._rs_index
        text = "".join(self._rs_buf)
        summary = self._rs_summary
        item: dict[str, Any]
        if summary:
            # OpenAI's summary-mode items carry no `content` key at all.
            part = {"type": "summary_text", "text": text}
            item = {"id": rid, "type": "reasoning", "summary": [part], "status": status}
        else:
            part = {"type": "reasoning_text", "text": text}
            item = {"id": rid, "type": "reasoning", "summary": [], "content": [part], "status": status}
        if self.ctx.include_encrypted_reasoning:
            # The full text either way: it is what a replayed item gives back upstream.
            item["encrypted_content"] = encode_reasoning(text)
        self._items[idx] = item
        self._rs_id = None
        self._rs_buf = []
        if out is None:
            return
        seq = self._next_seq
        if summary:
            out.append(
                {
                    "type": _SUM_DONE,
                    "sequence_number": seq(),
                    "item_id": rid,
                    "output_index": idx,
                    "summary_index": 0,
                    "text": text,
                }
            )
            done = {
                "type": _SUM_PART_DONE,
                "sequence_number": seq(),
                "item_id": rid,
                "output_index": idx,
                "summary_index": 0,
                "part": part,
            }
            if status == "incomplete":
                # OpenAI marks a summary part cut short this way (omitted otherwise).
                done["status"] = "incomplete"
            out.append(done)
        else:
            out.append(
                {
                    "type": _RS_DONE,
                    "sequence_number": seq(),
                    "item_id": rid,
                    "output_index": idx,
                    "content_index": 0,
                    "text": text,
                }
            )
            out.append(
                {
                    "type": _PART_DONE,
                    "sequence_number": seq(),
                    "item_id": rid,
                    "output_index": idx,
                    "content_index": 0,
                    "part": part,
                }
            )
        out.append({"type": _ITEM_DONE, "sequence_number": seq(), "output_index": idx, "item": item})

    # message segment

    def _text(self, text: str, lp: list | None, out: list | None) -> None:
        if self._msg_id is None:
            # Whitespace alone (the "\n\n" many models put between reasoning
            # and tool calls) does not make a message; keep it in case text follows.
            # Pieces are kept in lists: a model looping on "\n" tokens must
            # not make this quadratic.
            if text.isspace():
                self._pending_ws.append(text)
                if lp:
                    self._pending_lp.extend(lp)
                return
            if self._pending_ws:
                self._pending_ws.append(text)
                text = "".join(self._pending_ws)
                self._pending_ws = []
                if self._pending_lp:
                    if lp:
                        self._pending_lp.extend(lp)
                    lp = self._pending_lp
                    self._pending_lp = []
            if self._rs_id is not None:
                self._close_reasoning(out, "completed")
            self._open_message(out)
        if self._part != "text":
            self._open_part("text", out)
        self._part_buf.append(text)
        if lp:
            self._part_lp.extend(lp)
        if out is not None:
            out.append(
                {
                    "type": _TEXT_DELTA,
                    "sequence_number": self._next_seq(),
                    "item_id": self._msg_id,
                    "output_index": self._msg_index,
                    "content_index": len(self._msg_content),
                    "delta": text,
                    "logprobs": lp or [],
                }
            )

    def _refusal(self, text: str, out: list | None) -> None:
        if self._msg_id is None:
            if self._rs_id is not None:
                self._close_reasoning(out, "completed")
            self._open_message(out)
        if self._part != "refusal":
            self._open_part("refusal", out)
        self._part_buf.append(text)
        if out is not None:
            out.append(
                {
                    "type": _REFUSAL_DELTA,
                    "sequence_number": self._next_seq(),
                    "item_id": self._msg_id,
                    "output_index": self._msg_index,
                    "content_index": len(self._msg_content),
                    "delta": text,
                }
            )

    def _open_message(self, out: list | None) -> None:
        self._msg_id = mid = new_id("msg")
        self._msg_index = idx = len(self._items)
        self._items.append(None)
        self._msg_content = []
        self._part = None
        if out is not None:
            out.append(
                {
                    "type": _ITEM_ADDED,
                    "sequence_number": self._next_seq(),
                    "output_index": idx,
                    "item": {"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
                }
            )

    def _open_part(self, kind: str, out: list | None) -> None:
        if self._part is not None:
            self._close_part(out)
        self._part = kind
        self._part_buf = []
        self._part_lp = []
        if out is not None:
            if kind == "text":
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            else:
                part = {"type": "refusal", "refusal": ""}
            out.append(
                {
                    "type": _PART_ADDED,
                    "sequence_number": self._next_seq(),
                    "item_id": self._msg_id,
                    "output_index": self._msg_index,
                    "content_index": len(self._msg_content),
                    "part": part,
                }
            )

    def _close_part(self, out: list | None) -> None:
        kind = self._part
        text = "".join(self._part_buf)
        ci = len(self._msg_content)
        if kind == "text":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": self._part_lp}
        else:
            part = {"type": "refusal", "refusal": text}
        self._msg_content.append(part)
        self._part = None
        self._part_buf = []
        self._part_lp = []
        if out is not None:
            mid, idx = self._msg_id, self._msg_index
            if kind == "text":
                done = {
                    "type": _TEXT_DONE,
                    "sequence_number": self._next_seq(),
                    "item_id": mid,
                    "output_index": idx,
                    "content_index": ci,
                    "text": text,
                    "logprobs": part["logprobs"],
                }
            else:
                done = {
                    "type": _REFUSAL_DONE,
                    "sequence_number": self._next_seq(),
                    "item_id": mid,
                    "output_index": idx,
                    "content_index": ci,
                    "refusal": text,
                }
            out.append(done)
            out.append(
                {
                    "type": _PART_DONE,
                    "sequence_number": self._next_seq(),
                    "item_id": mid,
                    "output_index": idx,
                    "content_index": ci,
                    "part": part,
                }
            )

    def _close_message(self, out: list | None, status: str) -> None:
        if self._part is not None:
            self._close_part(out)
        item = {
            "id": self._msg_id,
            "type": "message",
            "status": status,
            "content": self._msg_content,
            "role": "assistant",
        }
        idx = self._msg_index
        self._items[idx] = item
        self._msg_id = None
        self._msg_content = []
        if out is not None:
            out.append({"type": _ITEM_DONE, "sequence_number": self._next_seq(), "output_index": idx, "item": item})

    # tool calls

    def _tool_delta(self, tc: dict, out: list | None) -> None:
        calls = self._calls
        key = tc.get("index")
        cid = tc.get("id")
        if type(cid) is not str or not cid:
            cid = None
        call = None
        if key is None:
            if cid is not None:
                for c in self._call_order:
                    if c.call_id == cid:
                        call = c
                        break
                else:
                    key = ("id", cid)
            else:
                call = self._last_call
        else:
            call = calls.get(key)
            if call is not None and cid is not None and call.call_id is not None and call.call_id != cid:
                call = None  # a server reusing one index for several whole calls
        if call is None:
            call = _Call()
            calls[key if key is not None else ("n", len(self._call_order))] = call
            self._call_order.append(call)
        self._last_call = call
        if cid is not None and call.call_id is None:
            call.call_id = cid
        fn = tc.get("function")
        if not fn:
            return
        name = fn.get("name")
        if name and call.name is None and type(name) is str:
            call.name = name
        args = fn.get("arguments")
        if args:
            if type(args) is not str:  # some servers send the arguments object itself
                args = orjson.dumps(args).decode()
            call.args.append(args)
            if call.added and not call.custom and out is not None:
                out.append(
                    {
                        "type": _ARGS_DELTA,
                        "sequence_number": self._next_seq(),
                        "item_id": call.item_id,
                        "output_index": call.index,
                        "delta": args,
                    }
                )

    def _add_ready_calls(self, out: list | None, force: bool = False) -> None:
        """Add calls in order of first appearance, stopping at the first without a name.

        With ``force`` (the stream is over) nameless calls are dropped instead.
        """
        order = self._call_order
        i = self._next_add
        n = len(order)
        while i < n:
            call = order[i]
            if call.name is None:
                if not force:
                    break
                call.dropped = True
                self._note_drop("<unnamed>", "tool call without a function name")
            else:
                self._add_call(call, out)
            i += 1
        self._next_add = i

    def _note_drop(self, name: str, why: str) -> None:
        self.dropped_calls.append(name)
        self.ctx.warnings.append(f"dropped upstream tool call {name!r}: {why}")

    def _add_call(self, call: _Call, out: list | None) -> None:
        ctx = self.ctx
        name = call.name
        assert name is not None
        if ctx.allowed_tools is not None and name not in ctx.allowed_tools:
            call.dropped = True
            self._note_drop(name, "not in allowed_tools")
            return
        if self._msg_id is not None:
            self._close_message(out, "completed")
        if self._rs_id is not None:
            self._close_reasoning(out, "completed")
        if call.call_id is None:
            call.call_id = new_id("call")
        call.custom = name in ctx.custom_tools
        call.item_id = new_id("ctc" if call.custom else "fc")
        call.index = idx = len(self._items)
        self._items.append(None)
        call.added = True
        if out is None:
            return
        item = self._call_item(call, "in_progress", "")
        out.append({"type": _ITEM_ADDED, "sequence_number": self._next_seq(), "output_index": idx, "item": item})
        if call.args and not call.custom:
            out.append(
                {
                    "type": _ARGS_DELTA,
                    "sequence_number": self._next_seq(),
                    "item_id": call.item_id,
                    "output_index": idx,
                    "delta": "".join(call.args),
                }
            )

    def _call_item(self, call: _Call, status: str, payload: str) -> dict:
        name = call.name
        ns = self.ctx.namespaced.get(name) if self.ctx.namespaced else None
        if ns is not None:
            name = ns[1]
        if call.custom:
            item = {
                "id": call.item_id,
                "type": "custom_tool_call",
                "status": status,
                "call_id": call.call_id,
                "input": payload,
                "name": name,
            }
        else:
            item = {
                "id": call.item_id,
                "type": "function_call",
                "status": status,
                "arguments": payload,
                "call_id": call.call_id,
                "name": name,
            }
        if ns is not None:
            item["namespace"] = ns[0]
        return item

    def _close_call(self, call: _Call, out: list | None, status: str) -> None:
        args = "".join(call.args)
        if call.custom:
            payload = _custom_input(args)
        else:
            payload = args
        item = self._call_item(call, status, payload)
        idx = call.index
        self._items[idx] = item
        if out is None:
            return
        if call.custom:
            if payload:
                out.append(
                    {
                        "type": _CUSTOM_DELTA,
                        "sequence_number": self._next_seq(),
                        "item_id": call.item_id,
                        "output_index": idx,
                        "delta": payload,
                    }
                )
            out.append(
                {
                    "type": _CUSTOM_DONE,
                    "sequence_number": self._next_seq(),
                    "item_id": call.item_id,
                    "output_index": idx,
                    "input": payload,
                }
            )
        else:
            out.append(
                {
                    "type": _ARGS_DONE,
                    "sequence_number": self._next_seq(),
                    "item_id": call.item_id,
                    "output_index": idx,
                    "arguments": payload,
                }
            )
        out.append({"type": _ITEM_DONE, "sequence_number": self._next_seq(), "output_index": idx, "item": item})

    # closing

    def _close_all(self, out: list | None, failed: bool = False) -> None:
        """Close every open item (finish_reason, or failure).

        On finish the last item gets status ``incomplete`` when the response is
        incomplete; on failure every item still open is ``incomplete``.
        """
        r, c = self._think.flush()
        if r:
            self._reasoning(r, out)
        if c:
            self._text(c, None, out)
        self._add_ready_calls(out, force=True)
        last = len(self._items) - 1
        incomplete = self._incomplete is not None
        for call in self._call_order:
            if call.added and self._items[call.index] is None:
                status = "incomplete" if failed or (incomplete and call.index == last) else "completed"
                self._close_call(call, out, status)
        if self._msg_id is not None:
            status = "incomplete" if failed or (incomplete and self._msg_index == last) else "completed"
            self._close_message(out, status)
        if self._rs_id is not None:
            status = "incomplete" if failed or (incomplete and self._rs_index == last) else "completed"
            self._close_reasoning(out, status)


def _custom_input(args: str) -> str:
    """The ``input`` string of a custom tool call's ``{"input": ...}`` arguments.

    Anything else (invalid JSON, another shape) is the raw text itself.
    """
    if not args:
        return ""
    try:
        value = orjson.loads(args)
    except orjson.JSONDecodeError:
        return args
    if type(value) is dict:
        inner = value.get("input")
        if type(inner) is str:
            return inner
        if len(value) == 1:
            only = next(iter(value.values()))
            if type(only) is str:
                return only
    elif type(value) is str:
        return value
    return args
