"""Responses request → Chat Completions request (plus the ``ResponseContext``).

One pass over the request: validate each field as it is read (a 400 naming
``param`` on the first problem), build the chat body, and record what the
response direction must echo or undo. Client objects that pass through
unchanged (JSON Schemas, tool parameters, metadata) are shared by reference,
never copied: the caller must treat both outputs as read-only.

The parts: ``messages`` (``instructions`` + ``input`` → chat ``messages``, with
``content`` for the parts), ``tools`` and ``tool_choice``,
``params`` (``text``, ``reasoning``, ``include``, and the refusals of a
stateless server), ``options`` (OpenAI's newer options: prompt caching,
moderation, background options, context management, image, access programs),
``validate`` (the scalar checks). Every refusal is an
``InvalidRequest`` naming ``param``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from . import params as p
from . import validate as v
from .context import ResponseContext
from .errors import InvalidRequest
from .ids import new_id
from .messages import translate_input
from .options import request_options
from .tool_choice import translate_tool_choice
from .tools import translate_tools


@dataclass(slots=True, frozen=True)
class TranslationPolicy:
    """What the configured backend accepts; the defaults suit most open model servers."""

    # Built-in tools (web_search, tool_search, file_search, mcp, ...): drop
    # with a warning, or 400.
    builtin_tools: Literal["drop", "reject"] = "drop"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Most open backends reject unknown `verbosity`; it is echoed either way.
    forward_verbosity: bool = False
    forward_service_tier: bool = False
    forward_prompt_cache_key: bool = False
    # OpenAI's Chat Completions takes prompt_cache_retention and prompt_cache_options too; other
    # backends may refuse them.
    forward_prompt_cache_retention: bool = False
    forward_prompt_cache_options: bool = False
    # Put replayed reasoning text as `reasoning_content` on the following
    # assistant message (REASONING_IN_HISTORY; some backends reject the field).
    reasoning_in_history: bool = True


def translate_request(
    body: dict[str, Any],
    policy: TranslationPolicy,
    *,
    now: int | None = None,
    previous_response_id: str | None = None,
    conversation_id: str | None = None,
    background_mode: bool = False,
    stored_items: int = 0,
) -> tuple[dict[str, Any], ResponseContext]:
    """Validate a parsed Responses request body and build ``(chat_request_body, ResponseContext)``.

    ``previous_response_id`` and ``conversation_id`` are what the edge resolved
    from the store (the body it passes has their items folded into ``input``,
    ``proxy.translate.history``): they are echoed, never refused.
    ``background_mode``: the edge runs ``background: true`` requests (echoed as such).
    ``stored_items``: how many of ``input``'s first items are that context (read as a store's,
    ``messages.translate_input``).

    Raises ``InvalidRequest`` (with ``param``) for anything invalid or
    unservable. The chat body always streams with usage; the caller decides
    whether the client gets SSE or one JSON object from ``ctx.stream``.
    """
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, got {v.type_name(body)}.", None, "invalid_body"
        )
    model = v.model_name(body)
    stream = v.opt_bool(body, "stream")
    background = p.refuse_state(body, background_mode=background_mode)
    instructions = v.opt_str(body, "instructions")

    chat: dict[str, Any] = {
        "model": model,
        "messages": None,  # filled below; keeps the key first after model
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    # Tools first: history translation does not depend on them, but a 400 on
    # a tool is cheaper to find before walking a long input.
    ts = translate_tools(body.get("tools"), policy.builtin_tools)
    choice = translate_tool_choice(body.get("tool_choice"), ts, policy.builtin_tools)
    warnings: list[str] = []
    if ts.dropped_builtins:
        warnings.append(
            "dropped built-in tools the chat backend cannot run: " + ", ".join(ts.dropped_builtins)
        )
    if choice.warning:
        warnings.append(choice.warning)

    chat["messages"] = translate_input(
        body.get("input"), instructions, keep_reasoning=policy.reasoning_in_history, stored=stored_items
    )

    upstream_tools = ts.upstream
    echo_tools = ts.echo
    if choice.allowed is not None:
        allowed = choice.allowed
        upstream_tools = [t for t in upstream_tools if t["function"]["name"] in allowed]
    parallel = v.opt_bool(body, "parallel_tool_calls")
    if upstream_tools:
        chat["tools"] = upstream_tools
        if choice.upstream is not None:
            chat["tool_choice"] = choice.upstream
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel

    text_echo = p.text_config(body, chat, forward_verbosity=policy.forward_verbosity)
    reasoning_echo = p.reasoning_config(body, chat)

    max_output_tokens = v.opt_int(body, "max_output_tokens", 16)
    if max_output_tokens is not None:
        chat[policy.max_tokens_field] = max_output_tokens
    max_tool_calls = v.opt_int(body, "max_tool_calls", 1)
    temperature = v.opt_number(body, "temperature", 0, 2)
    top_p = v.opt_number(body, "top_p", 0, 1)
    presence = v.opt_number(body, "presence_penalty", -2, 2)
    frequency = v.opt_number(body, "frequency_penalty", -2, 2)
    for key, value in (
        ("temperature", temperature),
        ("top_p", top_p),
        ("presence_penalty", presence),
        ("frequency_penalty", frequency),
    ):
        if value is not None:
            chat[key] = value

    include = p.include_list(body)
    top_logprobs = v.opt_int(body, "top_logprobs", 0, 20)
    include_logprobs = p.INCLUDE_LOGPROBS in include or bool(top_logprobs)
    if include_logprobs:
        chat["logprobs"] = True
        if top_logprobs:
            chat["top_logprobs"] = top_logprobs

    safety_identifier = v.opt_str(body, "safety_identifier", max_len=v.MAX_SAFETY_IDENTIFIER)
    user = v.opt_str(body, "user", max_len=v.MAX_SAFETY_IDENTIFIER)
    chat_user = user if safety_identifier is None else safety_identifier
    if chat_user is not None:
        chat["user"] = chat_user
    prompt_cache_key = v.opt_str(body, "prompt_cache_key", max_len=v.MAX_ID_STRING)
    if prompt_cache_key is not None and policy.forward_prompt_cache_key:
        chat["prompt_cache_key"] = prompt_cache_key
    prompt_cache_retention = v.opt_enum(body, "prompt_cache_retention", p.PROMPT_CACHE_RETENTIONS)
    if prompt_cache_retention is not None and policy.forward_prompt_cache_retention:
        chat["prompt_cache_retention"] = prompt_cache_retention
    service_tier = v.opt_enum(body, "service_tier", p.SERVICE_TIERS)
    if service_tier is not None and policy.forward_service_tier:
        chat["service_tier"] = service_tier
    shown = request_options(
        body, chat, warnings, forward_prompt_cache_options=policy.forward_prompt_cache_options,
        background=background, stream=bool(stream), service_tier=service_tier,
    )

    truncation = v.opt_enum(body, "truncation", p.TRUNCATIONS)
    store = v.opt_bool(body, "store")
    metadata = v.metadata(body)
    client_metadata = body.get("client_metadata")
    if client_metadata is not None and not isinstance(client_metadata, dict):
        raise v.fail("client_metadata", "an object", client_metadata)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise v.fail("stream_options", "an object", stream_options)

    echo: dict[str, Any] = {
        "previous_response_id": previous_response_id,
        "instructions": instructions,
        "tools": echo_tools,
        "tool_choice": choice.echo,
        "truncation": truncation or "disabled",
        "parallel_tool_calls": True if parallel is None else parallel,
        "text": text_echo,
        # Numbers as OpenAI writes them (1.0, not a request's 1): the spec's type is number.
        "top_p": 1.0 if top_p is None else float(top_p),
        "presence_penalty": 0.0 if presence is None else float(presence),
        "frequency_penalty": 0.0 if frequency is None else float(frequency),
        "top_logprobs": top_logprobs or 0,
        "temperature": 1.0 if temperature is None else float(temperature),
        "reasoning": reasoning_echo,
        "max_output_tokens": max_output_tokens,
        "max_tool_calls": max_tool_calls,
        "store": True if store is None else store,
        "background": background,
        # As requested; an ended Response shows the tier that served it (response_object).
        "service_tier": service_tier or p.DEFAULT_SERVICE_TIER,
        "metadata": metadata,
        "safety_identifier": safety_identifier,
        "prompt_cache_key": prompt_cache_key,
        "prompt_cache_retention": prompt_cache_retention,
        "user": user,
    }
    ctx = ResponseContext(
        response_id=new_id("resp"),
        created_at=int(time.time()) if now is None else now,
        model=model,
        echo=echo,
        stream=bool(stream),
        custom_tools=frozenset(ts.custom),
        namespaced=ts.namespaced,
        allowed_tools=choice.allowed,
        include_encrypted_reasoning=p.INCLUDE_ENCRYPTED in include,
        reasoning_as_summary=reasoning_echo["summary"] is not None,
        include_logprobs=include_logprobs,
        conversation_id=conversation_id,
        shown=shown,
        warnings=warnings,
    )
    return chat, ctx
