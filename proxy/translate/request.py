"""Responses request → Chat Completions request (plus the ``ResponseContext``).

One pass over the request: validate each field as it is read (a 400 naming
``param`` on the first problem), build the chat body, and record what the
response direction must echo or undo. Client objects that pass through
unchanged (JSON Schemas, tool parameters, metadata) are shared by reference,
never copied: the caller must treat both outputs as read-only.

Choices worth knowing:

- **One system message.** ``instructions`` and every ``system``/``developer``
  message, wherever it appears in ``input``, are merged (instructions first,
  in order, joined by a blank line) into a single leading ``system`` message.
  Many open-model chat templates reject ``developer`` and reject a system
  message that is not first; Codex sends its prompt as several developer
  messages.
- **Tool calls.** Consecutive ``function_call``/``custom_tool_call`` items
  become one assistant message with ``tool_calls`` (merged into a directly
  preceding assistant message), placed before their ``tool`` results.
- **Reasoning** items are never rejected: their text (our own
  ``encrypted_content``, else ``content``, else ``summary``) becomes
  ``reasoning_content`` of the next assistant message, or is dropped.
- **Stateless.** ``previous_response_id``, ``conversation``, ``item_reference``
  and ``background`` cannot be honoured without storage, so they are refused
  with a clear 400 rather than silently losing context.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from proxy.errors import invalid_request
from proxy.translate import validate as v
from proxy.translate.compaction import TRIGGER, summary_message
from proxy.translate.context import ResponseContext
from proxy.translate.ids import new_id
from proxy.translate.reasoning_codec import decode_reasoning
from proxy.translate.tools import history_name, translate_tool_choice, translate_tools


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
    # Put replayed reasoning text as `reasoning_content` on the following
    # assistant message.
    reasoning_in_history: bool = True


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
REASONING_SUMMARIES = ("auto", "concise", "detailed")
VERBOSITIES = ("low", "medium", "high")
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority")
TRUNCATIONS = ("auto", "disabled")
IMAGE_DETAILS = ("auto", "low", "high")
INCLUDE_ENCRYPTED = "reasoning.encrypted_content"
INCLUDE_LOGPROBS = "message.output_text.logprobs"
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

_TEXT_PARTS = ("input_text", "output_text")
_CALL_TYPES = ("function_call", "custom_tool_call")
_OUTPUT_TYPES = ("function_call_output", "custom_tool_call_output")
_MESSAGE_ROLES = ("user", "assistant", "system", "developer")


# --------------------------------------------------------------------------- content


def _image_part(part: dict, param: str) -> dict[str, Any]:
    url = part.get("image_url")
    if url is None:
        if part.get("file_id") is not None:
            raise invalid_request(
                f"Invalid '{param}': 'file_id' images are not supported (this server has no file store); "
                "send 'image_url' with a URL or a data URL instead.",
                param + ".file_id",
            )
        raise v.missing(param + ".image_url", "a URL or a base64 data URL")
    if isinstance(url, dict):  # Chat-style {"url": ...}, tolerated
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise v.fail(param + ".image_url", "a URL or data URL string", url)
    image: dict[str, Any] = {"url": url}
    detail = part.get("detail")
    if detail is not None:
        if not isinstance(detail, str):
            raise v.fail(param + ".detail", "'auto', 'low' or 'high'", detail)
        if detail in IMAGE_DETAILS:
            image["detail"] = detail
        # other values (e.g. "original") have no chat equivalent: backend default
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict, param: str) -> dict[str, Any]:
    file: dict[str, Any] = {}
    data = part.get("file_data")
    url = part.get("file_url")
    if data is not None:
        if not isinstance(data, str):
            raise v.fail(param + ".file_data", "a base64 string or data URL", data)
        file["file_data"] = data
    elif url is not None:
        if not isinstance(url, str):
            raise v.fail(param + ".file_url", "a URL string", url)
        file["file_url"] = url
    elif part.get("file_id") is not None:
        raise invalid_request(
            f"Invalid '{param}': 'file_id' files are not supported (this server has no file store); "
            "send 'file_data' or 'file_url' instead.",
            param + ".file_id",
        )
    else:
        raise v.missing(param + ".file_data", "or 'file_url'")
    filename = part.get("filename")
    if filename is not None:
        if not isinstance(filename, str):
            raise v.fail(param + ".filename", "a string", filename)
        file["filename"] = filename
    return {"type": "file", "file": file}


def _text_of(part: dict, key: str, param: str) -> str:
    text = part.get(key)
    if not isinstance(text, str):
        raise v.fail(f"{param}.{key}", "a string", text) if text is not None else v.missing(f"{param}.{key}")
    return text


def _parts(content: list, param: str, rich: bool, joiner: str) -> str | list[dict[str, Any]]:
    """Content parts → a plain string when all are text, else chat parts.

    ``rich`` says whether images/files are allowed (user messages and tool
    results); assistant and system content must be text.
    """
    texts: list[str] = []
    parts: list[dict[str, Any]] | None = None
    for j, part in enumerate(content):
        pparam = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise v.fail(pparam, "a content part object", part)
        ptype = part.get("type")
        if ptype in _TEXT_PARTS or ptype == "summary_text" or ptype == "reasoning_text":
            chat = {"type": "text", "text": _text_of(part, "text", pparam)}
        elif ptype == "refusal":
            chat = {"type": "text", "text": _text_of(part, "refusal", pparam)}
        elif ptype in ("input_image", "input_file") and rich:
            chat = _image_part(part, pparam) if ptype == "input_image" else _file_part(part, pparam)
        elif ptype in ("input_image", "input_file"):
            raise invalid_request(
                f"Invalid '{pparam}': {ptype} is only supported in user messages and tool outputs.",
                pparam + ".type",
            )
        elif ptype == "input_audio" or ptype == "input_video":
            raise invalid_request(
                f"Invalid '{pparam}': {ptype} content is not supported by this server; "
                "send text, images (input_image) or files (input_file).",
                pparam + ".type",
                "unsupported_content_type",
            )
        else:
            raise v.fail(pparam + ".type", "a content part type such as 'input_text'", ptype)
        if parts is None:
            if chat["type"] == "text":
                texts.append(chat["text"])
                continue
            parts = [{"type": "text", "text": t} for t in texts]
        parts.append(chat)
    return joiner.join(texts) if parts is None else parts


def _content(item: dict, param: str, rich: bool, joiner: str) -> str | list[dict[str, Any]]:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _parts(content, param + ".content", rich, joiner)
    if content is None:
        raise v.missing(param + ".content")
    raise v.fail(param + ".content", "a string or an array of content parts", content)


def _tool_output(item: dict, param: str) -> str | list[dict[str, Any]]:
    output = item.get("output")
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _parts(output, param + ".output", True, "\n")
    if output is None:
        raise v.missing(param + ".output")
    raise v.fail(param + ".output", "a string or an array of content parts", output)


def reasoning_text(item: dict, key: bytes | None = None) -> str:
    """The text a replayed reasoning item stands for ('' if none).

    Our own ``encrypted_content`` holds the full text; otherwise visible
    ``content`` (reasoning_text) beats ``summary``. Malformed parts are
    skipped, never rejected: every Codex turn replays these items.
    """
    text = decode_reasoning(item.get("encrypted_content"), key)
    if text is not None:
        return text
    for field, joiner in (("content", "\n"), ("summary", "\n\n")):
        parts = item.get(field)
        if isinstance(parts, list):
            texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
            if texts:
                return joiner.join(texts)
    return ""


# --------------------------------------------------------------------------- input


class _History:
    """Accumulates chat messages; owns call grouping and reasoning attachment."""

    __slots__ = ("system", "messages", "pending_reasoning", "keep_reasoning")

    def __init__(self, keep_reasoning: bool) -> None:
        self.system: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.pending_reasoning: list[str] = []
        self.keep_reasoning = keep_reasoning

    def _attach(self, msg: dict[str, Any]) -> None:
        if self.pending_reasoning:
            text = "\n\n".join(self.pending_reasoning)
            self.pending_reasoning = []
            prev = msg.get("reasoning_content")
            msg["reasoning_content"] = prev + "\n\n" + text if prev else text

    def add(self, msg: dict[str, Any]) -> None:
        if msg["role"] == "assistant":
            self._attach(msg)
        else:
            self.pending_reasoning = []  # reasoning with no assistant answer: nothing to attach to
        self.messages.append(msg)

    def add_call(self, call: dict[str, Any]) -> None:
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            self._attach(last)
            calls = last.get("tool_calls")
            if calls is None:
                last["tool_calls"] = [call]
            else:
                calls.append(call)
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [call]})

    def add_reasoning(self, item: dict) -> None:
        if self.keep_reasoning:
            text = reasoning_text(item)
            if text:
                self.pending_reasoning.append(text)


def _message(h: _History, item: dict, param: str) -> None:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        if role is None:
            raise v.missing(param + ".role", "'user', 'assistant', 'system' or 'developer'")
        raise v.fail(param + ".role", "'user', 'assistant', 'system' or 'developer'", role)
    if role == "user":
        h.add({"role": "user", "content": _content(item, param, True, "\n")})
    elif role == "assistant":
        text = _content(item, param, False, "")
        h.add({"role": "assistant", "content": text})
    else:
        h.system.append(_content(item, param, False, "\n"))  # type: ignore[arg-type]


def _call(h: _History, item: dict, itype: str, param: str) -> None:
    call_id = v.req_str(item, "call_id", param + ".call_id")
    name = v.req_str(item, "name", param + ".name")
    if itype == "function_call":
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            if arguments is None:
                raise v.missing(param + ".arguments", "a JSON string")
            raise v.fail(param + ".arguments", "a JSON-encoded string", arguments)
    else:
        data = item.get("input")
        if not isinstance(data, str):
            if data is None:
                raise v.missing(param + ".input")
            raise v.fail(param + ".input", "a string", data)
        arguments = orjson.dumps({"input": data}).decode()
    h.add_call(
        {
            "id": call_id,
            "type": "function",
            "function": {"name": history_name(name, item.get("namespace")), "arguments": arguments},
        }
    )


def translate_input(raw: Any, instructions: str | None, policy: TranslationPolicy) -> list[dict[str, Any]]:
    """``instructions`` + ``input`` → chat ``messages`` (see the module docstring)."""
    h = _History(policy.reasoning_in_history)
    if instructions:
        h.system.append(instructions)
    if isinstance(raw, str):
        if len(raw) > v.MAX_INPUT_STRING:
            raise invalid_request(
                f"Invalid 'input': string too long, expected at most {v.MAX_INPUT_STRING} characters.", "input"
            )
        h.add({"role": "user", "content": raw})
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            param = f"input[{i}]"
            if not isinstance(item, dict):
                raise v.fail(param, "an input item object", item)
            itype = item.get("type")
            if itype == "message" or (itype is None and "role" in item):
                _message(h, item, param)
            elif itype in _CALL_TYPES:
                _call(h, item, itype, param)
            elif itype in _OUTPUT_TYPES:
                call_id = v.req_str(item, "call_id", param + ".call_id")
                h.add({"role": "tool", "tool_call_id": call_id, "content": _tool_output(item, param)})
            elif itype == "reasoning":
                h.add_reasoning(item)
            elif itype == "compaction":
                # The summary stands in for the history it replaced (proxy.translate.compaction).
                h.add({"role": "user", "content": summary_message(item, param)})
            elif itype == TRIGGER:
                # The edge answers a request ending with one; anywhere else it is a mistake.
                raise invalid_request(
                    f"Invalid '{param}': a compaction_trigger item must be the last input item.",
                    param,
                    "invalid_compaction_trigger",
                )
            elif itype == "item_reference" or (itype is None and "role" not in item and "id" in item):
                # The openai SDK's ItemReference: {"id": ...} with an optional type.
                raise invalid_request(
                    f"Invalid '{param}': item_reference is not supported because this server stores no "
                    "responses; send the referenced item itself.",
                    param,
                    "unsupported_input_item",
                )
            elif itype is None:
                raise v.missing(param + ".type", "or 'role' for a message")
            else:
                raise invalid_request(
                    f"Invalid '{param}': input item type {str(itype)[:64]!r} is not supported by this server "
                    "(it forwards to a Chat Completions backend).",
                    param,
                    "unsupported_input_item",
                )
    elif raw is None:
        raise v.missing("input", "a string or an array of input items")
    else:
        raise v.fail("input", "a string or an array of input items", raw)
    if h.system:
        h.messages.insert(0, {"role": "system", "content": "\n\n".join(h.system)})
    if not h.messages:
        raise invalid_request("Invalid 'input': expected at least one input item.", "input", "empty_array")
    return h.messages


# --------------------------------------------------------------------------- params


def _text_config(body: dict, policy: TranslationPolicy, chat: dict[str, Any]) -> dict[str, Any]:
    """``text`` → ``response_format`` (+``verbosity``); returns the echo."""
    text = body.get("text")
    if text is None:
        return {"format": {"type": "text"}}
    if not isinstance(text, dict):
        raise v.fail("text", "an object", text)
    fmt = text.get("format")
    echo_fmt: dict[str, Any]
    if fmt is None:
        echo_fmt = {"type": "text"}
    elif not isinstance(fmt, dict):
        raise v.fail("text.format", "an object", fmt)
    else:
        ftype = fmt.get("type")
        if ftype == "text":
            echo_fmt = {"type": "text"}
        elif ftype == "json_object":
            echo_fmt = {"type": "json_object"}
            chat["response_format"] = {"type": "json_object"}
        elif ftype == "json_schema":
            name = fmt.get("name")
            if name is None:
                raise v.missing("text.format.name", "the name of the JSON schema")
            if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
                raise v.fail("text.format.name", "a name of 1-64 characters a-z, A-Z, 0-9, '_' or '-'", name)
            schema = fmt.get("schema")
            if schema is None:
                raise v.missing("text.format.schema", "a JSON Schema object")
            if not isinstance(schema, dict):
                raise v.fail("text.format.schema", "a JSON Schema object", schema)
            strict = v.opt_bool(fmt, "strict", "text.format.strict")
            description = v.opt_str(fmt, "description", "text.format.description")
            js: dict[str, Any] = {"name": name, "schema": schema}
            if strict is not None:
                js["strict"] = strict
            if description is not None:
                js["description"] = description
            chat["response_format"] = {"type": "json_schema", "json_schema": js}
            echo_fmt = {
                "type": "json_schema",
                "name": name,
                "description": description,
                "schema": schema,
                "strict": bool(strict),
            }
        elif ftype is None:
            raise v.missing("text.format.type", "'text', 'json_object' or 'json_schema'")
        else:
            raise v.fail("text.format.type", "'text', 'json_object' or 'json_schema'", ftype)
    echo: dict[str, Any] = {"format": echo_fmt}
    verbosity = v.opt_enum(text, "verbosity", VERBOSITIES, "text.verbosity")
    if verbosity is not None:
        echo["verbosity"] = verbosity
        if policy.forward_verbosity:
            chat["verbosity"] = verbosity
    return echo


def _reasoning(body: dict, chat: dict[str, Any]) -> dict[str, Any] | None:
    """``reasoning`` → ``reasoning_effort``; returns the echo (null when absent)."""
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise v.fail("reasoning", "an object", reasoning)
    effort = v.opt_enum(reasoning, "effort", REASONING_EFFORTS, "reasoning.effort")
    summary = v.opt_enum(reasoning, "summary", REASONING_SUMMARIES, "reasoning.summary")
    if summary is None:  # deprecated spelling
        summary = v.opt_enum(reasoning, "generate_summary", REASONING_SUMMARIES, "reasoning.generate_summary")
    if effort is not None:
        chat["reasoning_effort"] = effort
    return {"effort": effort, "summary": summary}


def _include(body: dict) -> list[str]:
    include = body.get("include")
    if include is None:
        return []
    if not isinstance(include, list):
        raise v.fail("include", "an array of strings", include)
    for k, value in enumerate(include):
        if not isinstance(value, str):
            raise v.fail(f"include[{k}]", "a string", value)
    return include


def _refuse_state(body: dict) -> None:
    """Refuse what a stateless proxy cannot honour (never lose context silently)."""
    prev = body.get("previous_response_id")
    if prev is not None:
        if not isinstance(prev, str):
            raise v.fail("previous_response_id", "a string", prev)
        raise invalid_request(
            "previous_response_id is not supported: this server is stateless and stores no responses. "
            "Send the whole conversation in 'input' instead.",
            "previous_response_id",
            "unsupported_parameter",
        )
    if body.get("conversation") is not None:
        raise invalid_request(
            "conversation is not supported: this server is stateless and stores no conversations. "
            "Send the whole conversation in 'input' instead.",
            "conversation",
            "unsupported_parameter",
        )
    if body.get("prompt") is not None:
        raise invalid_request(
            "prompt templates are not supported by this server; send 'instructions' and 'input' instead.",
            "prompt",
            "unsupported_parameter",
        )
    background = v.opt_bool(body, "background")
    if background:
        raise invalid_request(
            "background mode is not supported by this server; omit 'background' or set it to false.",
            "background",
            "unsupported_parameter",
        )


# --------------------------------------------------------------------------- entry


def translate_request(
    body: dict, policy: TranslationPolicy, *, now: int | None = None
) -> tuple[dict[str, Any], ResponseContext]:
    """Validate a parsed Responses request body and build ``(chat_request_body, ResponseContext)``.

    Raises ``ProxyError`` (400, with ``param``) for anything invalid or
    unservable. The chat body always streams with usage; the caller decides
    whether the client gets SSE or one JSON object from ``ctx.stream``.
    """
    if not isinstance(body, dict):
        raise invalid_request(
            f"The request body must be a JSON object, got {v.type_name(body)}.", None, "invalid_body"
        )
    model = v.model_name(body)
    stream = v.opt_bool(body, "stream")
    _refuse_state(body)
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

    chat["messages"] = translate_input(body.get("input"), instructions, policy)

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

    text_echo = _text_config(body, policy, chat)
    reasoning_echo = _reasoning(body, chat)

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

    include = _include(body)
    top_logprobs = v.opt_int(body, "top_logprobs", 0, 20)
    include_logprobs = INCLUDE_LOGPROBS in include or bool(top_logprobs)
    if include_logprobs:
        chat["logprobs"] = True
        if top_logprobs:
            chat["top_logprobs"] = top_logprobs

    safety_identifier = v.opt_str(body, "safety_identifier", max_len=v.MAX_ID_STRING)
    user = safety_identifier if safety_identifier is not None else v.opt_str(body, "user", max_len=v.MAX_ID_STRING)
    if user is not None:
        chat["user"] = user
    prompt_cache_key = v.opt_str(body, "prompt_cache_key", max_len=v.MAX_ID_STRING)
    if prompt_cache_key is not None and policy.forward_prompt_cache_key:
        chat["prompt_cache_key"] = prompt_cache_key
    service_tier = v.opt_enum(body, "service_tier", SERVICE_TIERS)
    if service_tier is not None and policy.forward_service_tier:
        chat["service_tier"] = service_tier

    truncation = v.opt_enum(body, "truncation", TRUNCATIONS)
    store = v.opt_bool(body, "store")
    metadata = v.metadata(body)
    client_metadata = body.get("client_metadata")
    if client_metadata is not None and not isinstance(client_metadata, dict):
        raise v.fail("client_metadata", "an object", client_metadata)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise v.fail("stream_options", "an object", stream_options)

    echo: dict[str, Any] = {
        "previous_response_id": None,
        "instructions": instructions,
        "tools": echo_tools,
        "tool_choice": choice.echo,
        "truncation": truncation or "disabled",
        "parallel_tool_calls": True if parallel is None else parallel,
        "text": text_echo,
        "top_p": 1.0 if top_p is None else top_p,
        "presence_penalty": 0.0 if presence is None else presence,
        "frequency_penalty": 0.0 if frequency is None else frequency,
        "top_logprobs": top_logprobs or 0,
        "temperature": 1.0 if temperature is None else temperature,
        "reasoning": reasoning_echo,
        "max_output_tokens": max_output_tokens,
        "max_tool_calls": max_tool_calls,
        "store": True if store is None else store,
        "background": False,
        "service_tier": service_tier or "default",
        "metadata": metadata,
        "safety_identifier": safety_identifier,
        "prompt_cache_key": prompt_cache_key,
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
        include_encrypted_reasoning=INCLUDE_ENCRYPTED in include,
        reasoning_as_summary=reasoning_echo is not None and reasoning_echo["summary"] is not None,
        include_logprobs=include_logprobs,
        warnings=warnings,
    )
    return chat, ctx
