"""The stored Response of a background job ended from outside its generation, and event framing.

A cancel or a reaper ends a job that may be running on another host: it cannot ask that job's
translator for the Response, so it rewrites the stored one — the status, the ``service_tier``
(the tier that served it, as every ended Response shows: ``auto`` becomes ``default``), and for
a failure the ``error`` — keeping everything else as stored (output so far, the other echoes).
Pure functions over the stored JSON bytes.
"""
from __future__ import annotations

from typing import Any

import orjson

from ..translate.response import response_error, tier_shown

FINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})

# What a client reads in ``error.message`` when the job could not end by itself.
LOST_MESSAGE = (
    "The background response was lost: the worker running it stopped renewing its lease "
    "(it was killed or its host went away). Create the response again."
)
SHUTDOWN_MESSAGE = (
    "The service shut down before this background response finished (its graceful timeout ran out). "
    "Create the response again."
)
LOG_FULL_MESSAGE = (
    "The events of this background response exceeded the store's object limit "
    "(RESPONSE_STORE_MAX_OBJECT_BYTES), so it was stopped rather than kept with a stream that "
    "could not be replayed whole."
)
STORE_LOST_MESSAGE = (
    "The response store could not be written for too long while this background response ran, "
    "so it was stopped."
)


def parse(body: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(body)
    return doc


def is_final(doc: dict[str, Any]) -> bool:
    return doc.get("status") in FINAL_STATUSES


def ended(body: bytes, status: str, message: str | None = None) -> bytes:
    """``body`` (a stored Response) ended as ``status``: ``cancelled``, or ``failed`` with ``message``."""
    doc = parse(body)
    doc["status"] = status
    doc["completed_at"] = None
    if "service_tier" in doc:
        doc["service_tier"] = tier_shown(status, doc["service_tier"])
    if status == "failed":
        doc["error"] = response_error("server_error", message or LOST_MESSAGE)
    return orjson.dumps(doc)


def event_type(data: bytes) -> bytes:
    """The ``type`` of an event's JSON. Every event this service builds starts with its type
    (``{"type":"response.created",…``), so it is read without parsing; anything else is parsed."""
    if data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        if end > 9:
            return data[9:end]
    kind = orjson.loads(data).get("type", "message")
    return str(kind).encode()


def sse_frame(data: bytes) -> bytes:
    """One SSE event from its JSON, exactly as ``proxy.translate.sse.encode_event`` writes it."""
    return b"event: " + event_type(data) + b"\ndata: " + data + b"\n\n"
