"""A conversation's context as Responses items: what a chained request stands on.

``previous_response_id`` (over HTTP with the store, or within one WebSocket
connection without it) and ``conversation`` both mean "the model sees these
earlier items, then the new input". Chat Completions has no such notion, so the
edge resolves the earlier items and this module folds them into the request
body *before* translation: the translator then sees one ordinary request whose
``input`` is the whole conversation, and nothing downstream needs to know.

The rules (OpenAI's, see the stateful API guide): the earlier responses' input
items and output items, in order, then the new input; earlier ``instructions``
are not carried over (the new request's own apply). Output items are valid input
items as they are (reasoning items replay as reasoning, calls as calls), which
is what ``tests/unit/test_round_trip.py`` proves for everything we emit.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Item = dict[str, Any]

# Request keys that name stored context; they never reach the translator.
CONTEXT_KEYS = ("previous_response_id", "conversation")


def input_items(body: dict[str, Any]) -> list[Item]:
    """The request's own ``input`` as a list of items (a string is one user message).

    Anything that is neither a string nor a list is returned as it was met, in a
    one-element list, so translation reports it with its usual 400.
    """
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if isinstance(raw, list):
        return raw
    return [] if raw is None else [raw]


def with_context(body: dict[str, Any], context: list[Item]) -> dict[str, Any]:
    """A copy of ``body`` whose ``input`` is ``context`` then its own input, without
    the keys that named the context. ``body`` itself is not changed.

    A request with no input of its own keeps none (a chained turn must add
    something: translation then reports the empty input as it always does,
    unless the context alone is the conversation, e.g. a retry).
    """
    chained = {k: v for k, v in body.items() if k not in CONTEXT_KEYS}
    own = input_items(body) if body.get("input") is not None else []
    chained["input"] = [*context, *own]
    return chained


def next_context(context: list[Item], own_input: list[Item], response: Mapping[str, Any]) -> list[Item]:
    """The context a request chaining from ``response`` stands on: everything its
    request stood on, its own input, then its output."""
    output = response.get("output")
    return [*context, *own_input, *(output if isinstance(output, list) else [])]
