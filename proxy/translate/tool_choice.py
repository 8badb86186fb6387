"""Responses ``tool_choice`` → Chat Completions ``tool_choice``, against the translated tools.

A choice may only name a tool the request defines (by its plain, flattened or
unambiguous inner namespaced name); it is echoed as the client named it (with its
``namespace`` when it gave one). ``allowed_tools`` is a hard constraint in
the spec, so only the allowed tools are offered upstream and the response side
drops calls to any other (``ctx.allowed_tools``). Built-in tool types are
ignored with a warning, or refused, per the built-in tools policy. A built-in
choice is echoed as the ``auto`` the backend ran with: the tool it names was
dropped, so the Response's ``tools`` does not list it (they echo what the model
saw), and a choice forcing it would claim what did not happen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .tools import BuiltinPolicy, ToolSet, flat_name
from .validate import fail, wrong

_TOOL_CHOICE_VALUES = ("auto", "none", "required")


@dataclass(slots=True)
class ToolChoice:
    """The translated ``tool_choice``: ``upstream`` None means "omit the field"."""

    upstream: Any
    echo: Any
    allowed: frozenset[str] | None = None
    warning: str | None = None


def _resolve(ts: ToolSet, entry: dict[str, Any], param: str) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise wrong(param + ".name", "the name of a tool in 'tools'", name, "the name of a tool in 'tools'")
    ns = entry.get("namespace")
    key = flat_name(ns, name) if isinstance(ns, str) and ns else name
    upstream = ts.by_name.get(key)
    if upstream is None:
        raise InvalidRequest(
            f"Invalid '{param}': tool {name!r} is not among the request's 'tools'. "
            "tool_choice may only name a tool that the request defines.",
            param,
        )
    return upstream


def translate_tool_choice(raw: Any, ts: ToolSet, builtin_policy: BuiltinPolicy) -> ToolChoice:
    """Translate ``tool_choice`` against the already translated tools.

    ``allowed_tools`` is a hard constraint in the spec, so only the allowed
    tools are offered upstream (the caller filters ``ts.upstream`` by
    ``ToolChoice.allowed``) and the response side can refuse calls to others.
    """
    if raw is None:
        return ToolChoice(upstream=None, echo="auto")
    if isinstance(raw, str):
        if raw not in _TOOL_CHOICE_VALUES:
            raise fail("tool_choice", "'auto', 'none', 'required' or a tool choice object", raw)
        return ToolChoice(upstream=raw, echo=raw)
    if not isinstance(raw, dict):
        raise fail("tool_choice", "a string or an object", raw)
    ctype = raw.get("type")
    if ctype in ("function", "custom"):
        upstream = _resolve(ts, raw, "tool_choice")
        # As the client named it (the SDK's ToolChoiceFunction / ToolChoiceCustom), with the
        # namespace it qualified the name with (the SDK keeps it as an extra field).
        echo = {"type": ctype, "name": raw["name"]}
        ns = raw.get("namespace")
        if isinstance(ns, str) and ns:
            echo["namespace"] = ns
        return ToolChoice(upstream={"type": "function", "function": {"name": upstream}}, echo=echo)
    if ctype == "allowed_tools":
        # The spec makes ``mode`` optional: "auto" when it is left out (or null).
        mode = raw.get("mode")
        if mode is None:
            mode = "auto"
        if mode not in _TOOL_CHOICE_VALUES:
            raise fail("tool_choice.mode", "'auto', 'required' or 'none'", mode)
        entries = raw.get("tools")
        if not isinstance(entries, list):
            raise fail("tool_choice.tools", "an array of tool references", entries)
        if not entries:  # the spec's minItems: 1
            raise InvalidRequest(
                "Invalid 'tool_choice.tools': expected at least one tool reference.", "tool_choice.tools", "empty_array"
            )
        allowed: dict[str, None] = {}  # ordered set: no quadratic dedup on long lists
        named: list[dict[str, Any]] = []  # the entries honoured, as sent (the echo)
        skipped: list[str] = []
        for k, entry in enumerate(entries):
            eparam = f"tool_choice.tools[{k}]"
            if not isinstance(entry, dict):
                raise fail(eparam, "an object like {\"type\": \"function\", \"name\": ...}", entry)
            etype = entry.get("type")
            if etype in ("function", "custom"):
                allowed[_resolve(ts, entry, eparam)] = None
                named.append(entry)
            elif isinstance(etype, str) and etype:
                if builtin_policy == "reject":
                    raise InvalidRequest(
                        f"Invalid '{eparam}': the built-in tool type {etype!r} is not supported by this server.",
                        eparam,
                        "unsupported_tool",
                    )
                skipped.append(etype)
            else:
                raise fail(eparam + ".type", "a tool type such as 'function'", etype)
        warning = None
        if skipped:
            warning = "tool_choice.allowed_tools: ignored built-in tool types " + ", ".join(skipped)
        if mode == "none":
            # No tool may be called, whichever are allowed: plain "none", which is also how it is
            # echoed (OpenAI's ToolChoiceAllowed has no mode "none", so the openai SDK could not
            # parse an allowed_tools echo with it; the Open Responses spec takes either).
            return ToolChoice(upstream="none", echo="none", warning=warning)
        return ToolChoice(
            upstream=mode,
            echo={"type": "allowed_tools", "mode": mode, "tools": named},
            allowed=frozenset(allowed),
            warning=warning,
        )
    if isinstance(ctype, str) and ctype:
        # A built-in tool type (web_search, file_search, mcp, ...).
        if builtin_policy == "reject":
            raise InvalidRequest(
                f"Invalid 'tool_choice': the built-in tool type {ctype!r} is not supported by this server.",
                "tool_choice",
                "unsupported_tool",
            )
        return ToolChoice(
            upstream=None,
            echo="auto",
            warning=f"tool_choice of built-in type {ctype!r} replaced by 'auto'",
        )
    raise wrong("tool_choice.type", "'function', 'custom' or 'allowed_tools'", ctype)

