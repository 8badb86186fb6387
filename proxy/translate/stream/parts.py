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
* ``annotations`` (OpenRouter's web search, OpenAI's search models): each
  ``{"type": "url_citation", "url_citation": {url, title, start_index, end_index}}`` is
  the Responses ``url_citation`` annotation of the message's text; what it cannot carry
  (OpenRouter's ``content``, the page's text) and other kinds are named in ``unmapped``.
"""
from __future__ import annotations

from typing import Any

from ..shapes import UrlCitation

_DETAIL_KEYS = frozenset({"type", "text", "summary", "index", "id", "format"})
_CITATION_KEYS = frozenset({"url", "title", "start_index", "end_index"})


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


def url_citations(annotations: list[Any], unmapped: set[str]) -> list[UrlCitation]:
    """The ``url_citation`` annotations of a delta's ``annotations`` list (shape-checked: a list)."""
    out: list[UrlCitation] = []
    for a in annotations:
        citation = a.get("url_citation") if type(a) is dict and a.get("type") == "url_citation" else None
        if type(citation) is not dict or type(citation.get("url")) is not str:
            kind = a.get("type") if type(a) is dict else None
            unmapped.add(f"choices[].delta.annotations[type={kind}]")
            continue
        title, start, end = citation.get("title"), citation.get("start_index"), citation.get("end_index")
        out.append({"type": "url_citation", "url": citation["url"], "title": title if type(title) is str else "",
                    "start_index": start if type(start) is int else 0, "end_index": end if type(end) is int else 0})
        for key, extra in citation.items():
            if extra and key not in _CITATION_KEYS:
                unmapped.add(f"choices[].delta.annotations[].url_citation.{key}")
    return out
