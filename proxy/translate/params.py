"""The request's scalar and config parameters: ``text``, ``reasoning``, ``include``,
and what a stateless proxy refuses.

Each function validates one field as it reads it (a 400 naming ``param`` on
the first problem), writes its chat counterpart into ``chat``, and returns the
value the Response echoes, filled in as OpenAI's Response shows it where the
request left it out (``text.verbosity`` ``medium``, ``reasoning`` with null
fields).

**Unknown top-level parameters are ignored**, not refused: clients send fields
newer than this server (the openai SDK grows some every release, Codex sends
its own ``client_metadata``), and a 400 for one would lock them out. The one
exception to "ignored" is Chat Completions' top-level ``verbosity``, which has a
Responses home: it is read as ``text.verbosity`` when that is absent
(validated, forwarded and echoed as such) rather than silently lost.

**Stateless.** ``previous_response_id``, ``conversation``, ``prompt`` templates
and ``background`` cannot be honoured without storage, so they are refused with
a clear 400 rather than silently losing context (the edge folds the first two
into ``input`` when it has a store, and says when it runs background mode).
"""
from __future__ import annotations

import re
from typing import Any

from . import validate as v
from .errors import InvalidRequest

# The values of the pinned openai SDK's ReasoningEffort and ServiceTier (Open Responses lists
# fewer): a value the client library offers is never a 400.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
REASONING_SUMMARIES = ("auto", "concise", "detailed")
VERBOSITIES = ("low", "medium", "high")
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
# OpenAI's Response shows the requested tier (``auto`` when none was) while it is queued or in
# progress, and the tier that served it once it ended: the project's ``default`` for ``auto``,
# and ``priority`` for ``fast`` (Fast mode; the SDK's docstring: "The response will show
# service_tier=priority regardless of if you specify service_tier=fast or priority").
DEFAULT_SERVICE_TIER = "auto"
TIER_SERVED = {"auto": "default", "fast": "priority"}
PROMPT_CACHE_RETENTIONS = ("in_memory", "24h")
DEFAULT_VERBOSITY = "medium"  # the spec's "use the model's default verbosity", as OpenAI echoes an absent one
TRUNCATIONS = ("auto", "disabled")
INCLUDE_ENCRYPTED = "reasoning.encrypted_content"
INCLUDE_LOGPROBS = "message.output_text.logprobs"
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def text_config(body: dict[str, Any], chat: dict[str, Any], *, forward_verbosity: bool) -> dict[str, Any]:
    """``text`` → ``response_format`` (+``verbosity``); returns the echo, which always has a
    ``verbosity``: the request's ``text.verbosity``, else its top-level Chat-style ``verbosity``,
    else ``medium``."""
    text = body.get("text")
    if text is None:
        return {"format": {"type": "text"}, "verbosity": _verbosity(body, None, chat, forward_verbosity)}
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
    verbosity = v.opt_enum(text, "verbosity", VERBOSITIES, "text.verbosity")
    return {"format": echo_fmt, "verbosity": _verbosity(body, verbosity, chat, forward_verbosity)}


def _verbosity(body: dict[str, Any], verbosity: str | None, chat: dict[str, Any], forward: bool) -> str:
    """The verbosity echoed (and forwarded when ``forward``): ``text.verbosity``, else the
    top-level ``verbosity`` a Chat Completions habit puts there, else the model's default."""
    if verbosity is None:
        verbosity = v.opt_enum(body, "verbosity", VERBOSITIES)
        if verbosity is None:
            return DEFAULT_VERBOSITY
    if forward:
        chat["verbosity"] = verbosity
    return verbosity


def reasoning_config(body: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """``reasoning`` → ``reasoning_effort``; returns the echo (both fields null when absent, as
    OpenAI's Response shows it)."""
    reasoning = body.get("reasoning")
    if reasoning is None:
        return {"effort": None, "summary": None}
    if not isinstance(reasoning, dict):
        raise v.fail("reasoning", "an object", reasoning)
    effort = v.opt_enum(reasoning, "effort", REASONING_EFFORTS, "reasoning.effort")
    summary = v.opt_enum(reasoning, "summary", REASONING_SUMMARIES, "reasoning.summary")
    if summary is None:  # deprecated spelling
        summary = v.opt_enum(reasoning, "generate_summary", REASONING_SUMMARIES, "reasoning.generate_summary")
    if effort is not None:
        chat["reasoning_effort"] = effort
    return {"effort": effort, "summary": summary}


def include_list(body: dict[str, Any]) -> list[str]:
    include = body.get("include")
    if include is None:
        return []
    if not isinstance(include, list):
        raise v.fail("include", "an array of strings", include)
    for k, value in enumerate(include):
        if not isinstance(value, str):
            raise v.fail(f"include[{k}]", "a string", value)
    return include


def refuse_state(body: dict[str, Any], *, background_mode: bool = False) -> bool:
    """Refuse what a stateless proxy cannot honour (never lose context silently); return
    ``background``. ``background_mode``: the edge runs background responses (it has a store),
    which must then be stored (``store: false`` with ``background: true`` is refused)."""
    prev = body.get("previous_response_id")
    if prev is not None:
        if not isinstance(prev, str):
            raise v.fail("previous_response_id", "a string", prev)
        raise InvalidRequest(
            "previous_response_id is not supported: this server is stateless and stores no responses. "
            "Send the whole conversation in 'input' instead.",
            "previous_response_id",
            "unsupported_parameter",
        )
    if body.get("conversation") is not None:
        raise InvalidRequest(
            "conversation is not supported: this server is stateless and stores no conversations. "
            "Send the whole conversation in 'input' instead.",
            "conversation",
            "unsupported_parameter",
        )
    if body.get("prompt") is not None:
        raise InvalidRequest(
            "prompt templates are not supported by this server; send 'instructions' and 'input' instead.",
            "prompt",
            "unsupported_parameter",
        )
    background = v.opt_bool(body, "background")
    if background and not background_mode:
        raise InvalidRequest(
            "background mode is not supported by this server; omit 'background' or set it to false.",
            "background",
            "unsupported_parameter",
        )
    if background and body.get("store") is False:
        raise InvalidRequest(
            "background mode requires store: true (a background response is kept so that it can be "
            "retrieved, cancelled and streamed again); omit 'store' or set it to true.",
            "background",
            "invalid_value",
        )
    return bool(background)
