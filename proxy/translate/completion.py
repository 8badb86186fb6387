"""A non-streamed ``chat.completion`` as the chunks a streaming backend sends.

A JSON client's answer is asked for as one JSON document (``JSON_UPSTREAM=json``),
and some servers ignore ``stream: true`` and answer with one. Rather than a second
translation path, the document is recast as the equivalent chunks and fed to the
same ``StreamTranslator``, so both kinds of answer give identical responses.

The message becomes the delta whole — content as a string or a list of parts,
every reasoning field (``reasoning_details`` too), tool calls with their index —
and the choice's and the document's other fields ride along on the chunk, so the
translator reads everything it maps (``annotations`` too) and names in ``unmapped``
whatever it cannot (``content_filter_results``, ``prompt_filter_results``…), as it
does for a stream. A missing finish reason is left missing: the caller ends the
chunks with ``finish(clean=True)``, which infers it.
"""
from __future__ import annotations

from typing import Any

# Document keys that are not carried on the chunk: the choices become its delta, the usage its own chunk.
_NOT_CARRIED = ("choices", "usage")


def completion_to_chunks(doc: Any) -> list[dict[str, Any]]:
    """Chunks equivalent to ``doc`` (only ``choices[0]`` is used, as in streaming).

    Without a choice there is no answer: the chunks have none (the caller decides).
    """
    if not isinstance(doc, dict):
        return [{"error": {"message": "the backend answered with JSON that is not an object"}}]
    if doc.get("error"):  # some servers send "error": null on success
        return [doc]
    chunks: list[dict[str, Any]] = []
    choices = doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice: dict[str, Any] = choices[0]
        message = choice.get("message")
        delta: dict[str, Any] = dict(message) if isinstance(message, dict) else {}
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls:
            delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)]
        chunk_choice = {key: value for key, value in choice.items() if key != "message"}
        chunk_choice["index"] = 0
        chunk_choice["delta"] = delta
        chunk = {key: value for key, value in doc.items() if key not in _NOT_CARRIED}
        chunk["choices"] = [chunk_choice]
        chunks.append(chunk)
    if isinstance(doc.get("usage"), dict):
        chunks.append({"choices": [], "usage": doc["usage"]})
    return chunks
