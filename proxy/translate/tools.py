"""Responses ``tools`` → Chat Completions ``tools`` (``tool_choice`` is ``tool_choice.py``).

A chat backend only knows function tools, so:

- ``function`` tools map 1:1 (the client's JSON Schema object is passed by
  reference, so its key order survives and nothing is copied);
- ``custom`` tools (Codex's freeform ``apply_patch``) become a function with one
  required string parameter ``input``; the response side turns calls of those
  names back into ``custom_tool_call`` items (``custom`` below);
- ``namespace`` tools are flattened to ``<namespace>__<name>`` (``namespaced``
  maps the upstream name back);
- built-in tools (``web_search``, ``tool_search``, ``mcp``, …) cannot run on a
  chat backend: they are dropped with one warning, or rejected, per policy.
  Dropping is the default because a 400 for the whole request would lock Codex
  out (it always sends ``web_search``).

The echo (``Response.tools``) lists the tools the client defined, each as it
sent it, in the shape of the openai SDK's tool types, as OpenAI's Response
does: a ``custom`` tool stays ``custom`` (with its ``format``; an absent one is
the documented default, ``text``), a ``namespace`` keeps its nested tools under
their own names, every optional field is present (null, or ``""`` for a
namespace's description, which the SDK requires; a function's ``strict`` is the
boolean the backend applied, ``false`` when left out). Only validated fields are
echoed, so that the echo always parses. Dropped built-ins are not echoed: they
were not available to the model (the spec's "tools that were available to the
model"), and their fields, never checked, could make the whole Response
unparsable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidRequest
from .validate import fail, missing, wrong

NAMESPACE_SEPARATOR = "__"

BuiltinPolicy = Literal["drop", "reject"]


@dataclass(slots=True)
class ToolSet:
    """The translated ``tools`` plus what the rest of the request needs to know."""

    upstream: list[dict[str, Any]] = field(default_factory=list)
    echo: list[dict[str, Any]] = field(default_factory=list)
    # Client-facing names (plain, and flattened) -> upstream name.
    by_name: dict[str, str] = field(default_factory=dict)
    custom: set[str] = field(default_factory=set)
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    dropped_builtins: list[str] = field(default_factory=list)


def flat_name(namespace: str, name: str) -> str:
    """The upstream function name of tool ``name`` inside ``namespace``."""
    return namespace + NAMESPACE_SEPARATOR + name


def custom_input_schema(description: str | None, fmt: Any) -> dict[str, Any]:
    """The one-string-parameter schema that stands for a ``custom`` tool.

    The parameter description repeats the tool description and carries the
    grammar, because the model only sees the function schema and must know the
    exact freeform format (e.g. the ``apply_patch`` lark grammar).
    """
    text = "The raw input for this tool, passed verbatim as a string (freeform text, not JSON)."
    if description:
        text += "\n\nTool description: " + description
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax") if isinstance(fmt.get("syntax"), str) else "lark"
        text += f"\n\nThe input must match this {syntax} grammar:\n" + fmt["definition"]
    return {
        "type": "object",
        "properties": {"input": {"type": "string", "description": text}},
        "required": ["input"],
        "additionalProperties": False,
    }


def _name_and_description(tool: dict[str, Any], param: str, kind: str) -> tuple[str, str | None]:
    name = tool.get("name")
    if name is None:
        raise missing(param + ".name", f"every {kind} tool needs a name")
    if not isinstance(name, str) or not name:
        raise fail(param + ".name", "a non-empty string", name)
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise fail(param + ".description", "a string", description)
    return name, description


def _function_fields(tool: dict[str, Any], param: str) -> tuple[str, Any, Any, bool | None]:
    name, description = _name_and_description(tool, param, "function")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise fail(param + ".parameters", "a JSON Schema object", parameters)
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise fail(param + ".strict", "a boolean", strict)
    return name, description, parameters, strict


_GRAMMAR_SYNTAXES = ("lark", "regex")


def _custom_fields(tool: dict[str, Any], param: str) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
    """A custom tool's name, description, upstream schema and echo."""
    name, description = _name_and_description(tool, param, "custom")
    fmt = tool.get("format")
    echo_fmt: dict[str, Any] = {"type": "text"}
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise fail(param + ".format", "an object", fmt)
        ftype = fmt.get("type")
        if ftype not in ("text", "grammar"):
            raise fail(param + ".format.type", "'text' or 'grammar'", ftype)
        if ftype == "grammar":
            definition = fmt.get("definition")
            if not isinstance(definition, str):
                raise fail(param + ".format.definition", "a string (the grammar)", definition)
            syntax = fmt.get("syntax")
            if syntax is None:
                syntax = "lark"
            elif syntax not in _GRAMMAR_SYNTAXES:
                raise fail(param + ".format.syntax", "'lark' or 'regex'", syntax)
            echo_fmt = {"type": "grammar", "definition": definition, "syntax": syntax}
    echo = {"type": "custom", "name": name, "description": description, "format": echo_fmt}
    return name, description, custom_input_schema(description, fmt), echo


def _function_echo(name: str, description: Any, parameters: Any, strict: bool | None) -> dict[str, Any]:
    """A function tool as the Response shows it. ``strict`` is what the backend applied, a boolean,
    never null: one left out goes upstream without ``strict``, which Chat Completions reads as
    non-strict (best effort), so it is echoed ``false`` — the value OpenAI's Responses shows when it
    falls back from strict mode (its function-calling guide: an omitted ``strict`` is normalised into
    strict mode when the schema allows it, else "non-strict, best-effort function calling"); this
    proxy does not rewrite schemas, so it never claims strict mode it did not ask for."""
    return {"type": "function", "name": name, "description": description, "parameters": parameters,
            "strict": bool(strict)}


class _Builder:
    __slots__ = ("ts", "param_of")

    def __init__(self) -> None:
        self.ts = ToolSet()
        self.param_of: dict[str, str] = {}

    def add(self, upstream_name: str, description: Any, parameters: Any, strict: Any, param: str) -> None:
        if upstream_name in self.param_of:
            raise InvalidRequest(
                f"Invalid '{param}': duplicate tool name {upstream_name!r} "
                f"(also defined by '{self.param_of[upstream_name]}'). Tool names must be unique.",
                param,
            )
        self.param_of[upstream_name] = param
        fn: dict[str, Any] = {"name": upstream_name}
        if description is not None:
            fn["description"] = description
        if parameters is not None:
            fn["parameters"] = parameters
        if strict is not None:
            fn["strict"] = strict
        self.ts.upstream.append({"type": "function", "function": fn})
        self.ts.by_name[upstream_name] = upstream_name


def translate_tools(raw: Any, builtin_policy: BuiltinPolicy) -> ToolSet:
    """Translate the request's ``tools`` array (see the module docstring)."""
    b = _Builder()
    if raw is None:
        return b.ts
    if not isinstance(raw, list):
        raise fail("tools", "an array of tools", raw)
    ts = b.ts
    for i, tool in enumerate(raw):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise fail(param, "a tool object", tool)
        ttype = tool.get("type")
        if not isinstance(ttype, str) or not ttype:
            raise missing(param + ".type", "e.g. 'function'") if ttype is None else fail(
                param + ".type", "a string", ttype
            )
        if ttype == "function":
            name, description, parameters, strict = _function_fields(tool, param)
            b.add(name, description, parameters, strict, param)
            ts.echo.append(_function_echo(name, description, parameters, strict))
        elif ttype == "custom":
            name, description, schema, echo = _custom_fields(tool, param)
            b.add(name, description, schema, None, param)
            ts.custom.add(name)
            ts.echo.append(echo)
        elif ttype == "namespace":
            ns = tool.get("name")
            if not isinstance(ns, str) or not ns:
                raise wrong(param + ".name", "a non-empty string", ns, "every namespace tool needs a name")
            ns_description = tool.get("description")
            if ns_description is not None and not isinstance(ns_description, str):
                raise fail(param + ".description", "a string", ns_description)
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise fail(param + ".tools", "an array of function or custom tools", inner)
            inner_echo: list[dict[str, Any]] = []
            for j, sub in enumerate(inner):
                sparam = f"{param}.tools[{j}]"
                if not isinstance(sub, dict):
                    raise fail(sparam, "a tool object", sub)
                stype = sub.get("type")
                if stype == "function":
                    name, description, parameters, strict = _function_fields(sub, sparam)
                    upstream = flat_name(ns, name)
                    b.add(upstream, description, parameters, strict, sparam)
                    inner_echo.append(_function_echo(name, description, parameters, strict))
                elif stype == "custom":
                    name, description, schema, echo = _custom_fields(sub, sparam)
                    upstream = flat_name(ns, name)
                    b.add(upstream, description, schema, None, sparam)
                    ts.custom.add(upstream)
                    inner_echo.append(echo)
                else:
                    raise fail(sparam + ".type", "'function' or 'custom' inside a namespace", stype)
                ts.namespaced[upstream] = (ns, name)
            ts.echo.append({"type": "namespace", "name": ns, "description": ns_description or "", "tools": inner_echo})
        else:
            if builtin_policy == "reject":
                raise InvalidRequest(
                    f"Invalid '{param}': the built-in tool type {ttype!r} is not supported by this server "
                    "(it forwards to a Chat Completions backend that only runs function tools). "
                    "Remove the tool or use a function tool.",
                    param,
                    "unsupported_tool",
                )
            ts.dropped_builtins.append(ttype)
    # Namespaced tools are also addressable by their inner name when unambiguous.
    inner_names: dict[str, str | None] = {}
    for flat, (_, inner) in ts.namespaced.items():
        inner_names[inner] = None if inner in inner_names else flat
    for inner, only in inner_names.items():
        if only is not None and inner not in ts.by_name:
            ts.by_name[inner] = only
    return ts


def history_name(name: str, namespace: Any) -> str:
    """The upstream function name for a call replayed from history."""
    if isinstance(namespace, str) and namespace:
        return flat_name(namespace, name)
    return name


__all__ = [
    "NAMESPACE_SEPARATOR",
    "ToolSet",
    "custom_input_schema",
    "flat_name",
    "history_name",
    "translate_tools",
]
