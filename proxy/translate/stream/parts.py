"""Reasoning and text in the shapes beyond plain strings: content parts and ``reasoning_details``.

Both are read only after the shape check (``shape``) admitted the chunk, so the types the
translator relies on are known; anything else is skipped and named in ``unmapped``.

* Content as a list of parts (Mistral's Magistral): ``{"type": "text", "text"}`` is
  text; ``{"type": "thinking", "thinking": [{"type": "text", "text"}, …] | str}`` is
  reasoning; other part types are named in ``unmapped``.
* ``reasoning_details`` (OpenRouter, Snowflake Cortex): ``reasoning.text`` (``text``)
  and ``reasoning.summary`` (``summary``) are reasoning text; ``reasoning.encrypted``
  and signatures cannot be shown and are named in ``unmapped``. OpenRouter sends the
  same text in ``reasoning`` too: the translator reads these only when the delta has
  no reasoning string, so it is never counted twice.
"""
from __future__ import annotations

from typing import Any

_DETAIL_KEYS = frozenset({"type", "text", "summary", "index", "id", "format"})


def content_parts(parts: list[Any]) -> list[tuple[bool, str]]:
    """``(is_reasoning, text)`` for each part that carries text, in order."""
    out: list[tuple[bool, str]] = []
    for part in parts:
        if type(part) is not dict:
            continue
        kind = part.get("type")
        if kind == "thinking":
            thinking = part.get("thinking")
            if type(thinking) is str:
                if thinking:
                    out.append((True, thinking))
            elif type(thinking) is list:
                text = "".join(p.get("text") or "" for p in thinking)
                if text:
                    out.append((True, text))
        elif kind == "text" or kind is None:
            plain: str | None = part.get("text")  # a string or null: shape-checked
            if plain:
                out.append((False, plain))
    return out


def reasoning_details_text(details: Any, unmapped: set[str]) -> str:
    """The reasoning text of a ``reasoning_details`` list ("" when it carries none)."""
    if type(details) is not list:
        unmapped.add("choices[].delta.reasoning_details (not a list)")
        return ""
    texts: list[str] = []
    for d in details:
        if type(d) is not dict:
            continue
        kind = d.get("type")
        field = "text" if kind == "reasoning.text" else "summary" if kind == "reasoning.summary" else None
        if field is None:  # reasoning.encrypted and the like: nothing a client can be shown
            unmapped.add(f"choices[].delta.reasoning_details[type={kind}]")
            continue
        value = d.get(field)
        if type(value) is str:
            texts.append(value)
        elif value is not None:
            unmapped.add(f"choices[].delta.reasoning_details[type={kind}].{field} (not a string)")
        for key, extra in d.items():
            if extra and key not in _DETAIL_KEYS:
                unmapped.add(f"choices[].delta.reasoning_details[type={kind}].{key}")
    return "".join(texts)
