"""What the response side must know about the request it answers.

``translate_request`` builds one ``ResponseContext`` per request; the stream
translator and the Response assembler read it. It is plain data so the core
stays free of I/O, and frozen: nothing downstream writes to it (the stream
translator's own findings are its ``warnings`` and ``dropped_calls``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The request values a Response object echoes (23 keys). The first 21, together
# with id, object, created_at, completed_at, status, incomplete_details, model,
# output, error and usage, make the spec's 31 ResponseResource keys; the last two
# are OpenAI's (its Response always carries them, null when not requested).
ECHO_KEYS: tuple[str, ...] = (
    "previous_response_id",
    "instructions",
    "tools",
    "tool_choice",
    "truncation",
    "parallel_tool_calls",
    "text",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "top_logprobs",
    "temperature",
    "reasoning",
    "max_output_tokens",
    "max_tool_calls",
    "store",
    "background",
    "service_tier",
    "metadata",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "user",
)


@dataclass(slots=True, frozen=True)
class ResponseContext:
    """Per-request facts the Chat → Responses direction needs."""

    response_id: str
    created_at: int
    model: str
    # Exactly the ECHO_KEYS, with the request's values (spec defaults where absent).
    echo: dict[str, Any]
    stream: bool = False
    # Upstream function names that stand for Responses `custom` tools: their
    # calls come back as `custom_tool_call` items carrying `input`.
    custom_tools: frozenset[str] = frozenset()
    # Upstream (flattened) function name -> (namespace, name inside it).
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Upstream names the client may receive calls for (tool_choice
    # allowed_tools); None means every offered tool.
    allowed_tools: frozenset[str] | None = None
    # include: ["reasoning.encrypted_content"]
    include_encrypted_reasoning: bool = False
    # reasoning.summary was requested ("auto", "concise", "detailed"): stream the
    # backend's reasoning as the item's summary (response.reasoning_summary_*
    # events, summary_text parts) instead of reasoning_text content, because
    # Codex and the Agents SDK display summaries and hide raw reasoning text.
    # A chat backend has no separate summary, so the whole reasoning is it.
    reasoning_as_summary: bool = False
    # include: ["message.output_text.logprobs"] or top_logprobs set.
    include_logprobs: bool = False
    # The conversation this response belongs to (`conversation` on the request):
    # echoed as the Response's `conversation: {"id": …}`, as OpenAI does.
    conversation_id: str | None = None
    # Response keys shown only when the request set their option (proxy.translate.options), in
    # order: access_programs, image, prompt_cache_options, prompt_cache_diagnostics.
    shown: dict[str, Any] = field(default_factory=dict)
    # Warnings of the request's translation (dropped built-in tools, ...), for logs.
    warnings: list[str] = field(default_factory=list)
