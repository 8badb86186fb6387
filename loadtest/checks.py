"""What counts as a successful answer, for the Locust scenarios and the bench client.

Pure functions over the raw status, content type and body bytes; kept out of
``locustfile.py`` so tests can import them without importing Locust (which
monkey-patches the whole process with gevent).
"""
from __future__ import annotations

import orjson

COMPLETED_TAIL = b"data: [DONE]\n\n"


def stream_failure(status: int, content_type: str, body: bytes) -> str | None:
    """Why a streamed answer is not a complete success, or ``None`` when it is.

    The body must end with ``event: response.completed`` (its data line) and then
    ``data: [DONE]``; anything else (``response.failed``, ``response.incomplete``,
    a cut stream) is a failure.
    """
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if not content_type.startswith("text/event-stream"):
        return f"content-type {content_type!r}"
    if not body.endswith(COMPLETED_TAIL):
        return f"stream does not end with [DONE]: ...{body[-200:]!r}"
    events = body[: -len(COMPLETED_TAIL)].rstrip(b"\n").rsplit(b"\n\n", 1)
    last = events[-1]
    if not last.startswith(b"event: response.completed\n"):
        return f"last event is not response.completed: {last[:200]!r}"
    return None


def json_failure(status: int, body: bytes) -> str | None:
    """Why a JSON answer is not a completed Response, or ``None``."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"not JSON: {body[:200]!r}"
    if not isinstance(doc, dict) or doc.get("status") != "completed":
        return f"status is not completed: {body[:200]!r}"
    return None


def function_call(body: bytes) -> dict | None:
    """The ``function_call`` item of the ``response.completed`` event of a stream."""
    events = body[: -len(COMPLETED_TAIL)].rstrip(b"\n").rsplit(b"\n\n", 1)
    data = events[-1].split(b"\ndata: ", 1)[1]
    for item in orjson.loads(data)["response"]["output"]:
        if item.get("type") == "function_call":
            return item
    return None
