"""The Responses WebSocket protocol's frames: what a client may send, and our frames back.

Pure functions over text and dicts, so the connection loop in
``proxy.resources.websocket`` only moves frames. The shapes are the openai SDK's
WebSocket types (openai 3.57, ``types/responses/responses_client_event.py`` and
``responses_server_event.py``), which Codex 0.171 and the Agents SDK 0.24 parse too:

- client → server: ``response.create`` (the ``POST /v1/responses`` body plus
  ``type``, and the WebSocket-only ``generate`` and ``stream_id``, the lane: OpenAI's
  1-256 letters, digits, ``_``, ``-`` or ``.``),
  ``response.steer``; Codex also sends ``response.processed`` after each
  response, which needs no answer and gets none.
- server → client: every event of a response exactly as the SSE ``data:`` line,
  except ``error``: over a WebSocket it nests ``code``/``message``/``param``/``type``
  under ``error`` (``ResponseWsError``). A protocol error — the request refused
  before any response exists — also carries the HTTP ``status`` it would have had,
  which is how Codex tells a 400 from a 401 or a 429 on this transport; an error
  inside a response's stream carries its ``sequence_number`` instead. A refused
  frame that parsed and named a valid ``stream_id`` has it echoed (``FrameError``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.translate import json_body
from proxy.translate import validate as v
from proxy.translate.context import ResponseContext
from proxy.translate.errors import InvalidRequest
from proxy.translate.stream import StreamTranslator

# Client frames that need no answer (Codex acknowledges each response it has processed).
IGNORED_TYPES = frozenset({"response.processed"})
# Keys of `response.create` that belong to the WebSocket envelope, not to the request.
_ENVELOPE_KEYS = ("type", "generate", "stream_id")
# A lane's name, as OpenAI takes it (its WebSocket-mode guide; the SDK's lane helper checks the same).
_STREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")


class FrameError(InvalidRequest):
    """A client frame refused: the refusal of ``InvalidRequest`` (its status), and the frame's ``stream_id`` when it
    parsed and named a valid one, so the ``error`` frame tells the client which lane it refuses."""

    def __init__(self, refusal: InvalidRequest, stream_id: str | None = None) -> None:
        super().__init__(refusal.message, refusal.param, refusal.code, refusal.status)
        self.stream_id = stream_id


@dataclass(frozen=True, slots=True)
class Create:
    """A ``response.create``: ``body`` is the Responses request it carries (always streamed)."""

    body: dict[str, Any]
    generate: bool
    stream_id: str | None


@dataclass(frozen=True, slots=True)
class Steer:
    """A ``response.steer``: more input for a response that is running. It should name no
    ``stream_id`` (its target's lane is its lane), but one it names is echoed when the target is
    not on the connection."""

    previous_response_id: str
    input: Any
    stream_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    type: str


Frame = Create | Steer | Ignored


def parse_frame(text: str) -> Frame:
    """Read one client text frame; raise ``FrameError`` (a 400 naming ``param``) if it is not one we
    take, carrying the frame's ``stream_id`` once the frame is an object naming a valid one."""
    try:
        doc = json_body.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(InvalidRequest(
            f"The message is not valid JSON: {exc.msg} at position {exc.pos}.", code="invalid_json"
        )) from None
    if not isinstance(doc, dict):
        raise FrameError(InvalidRequest(
            f"The message must be a JSON object, got {v.type_name(doc)}.", code="invalid_json"
        ))
    stream_id = stream_id_of(doc)  # raises (with no stream_id to echo) if it is not a lane's name
    try:
        return _frame(doc, text, stream_id)
    except InvalidRequest as refusal:
        raise FrameError(refusal, stream_id) from None


def stream_id_of(doc: dict[str, Any]) -> str | None:
    """The frame's lane: None (the default lane) when absent or null; ``invalid_stream_id`` unless
    1-256 ASCII letters, digits, ``_``, ``-`` or ``.`` (OpenAI's rule: an empty string is invalid)."""
    value = doc.get("stream_id")
    if value is None:
        return None
    if not isinstance(value, str) or _STREAM_ID.fullmatch(value) is None:
        raise FrameError(InvalidRequest(
            "The 'stream_id' field must be a non-empty string with at most 256 characters and may only "
            "contain letters, numbers, underscores, hyphens, and periods; omit it for the default lane.",
            "stream_id",
            "invalid_stream_id",
        ))
    return value


def _frame(doc: dict[str, Any], text: str, stream_id: str | None) -> Frame:
    kind = doc.get("type")
    if kind == "response.create":
        v.check_nesting(doc, "The message", text)
        return _create(doc, stream_id)
    if kind == "response.steer":
        return _steer(doc, stream_id)
    if isinstance(kind, str) and kind in IGNORED_TYPES:
        return Ignored(kind)
    if kind is None:
        raise v.missing("type", "'response.create'")
    if not isinstance(kind, str):
        raise v.fail("type", "a string such as 'response.create'", kind)
    raise InvalidRequest(
        f"Unknown message type {kind[:64]!r}: this server takes 'response.create' (and answers "
        "'response.steer').",
        "type",
        "unknown_event_type",
    )


def _create(doc: dict[str, Any], stream_id: str | None) -> Create:
    generate = v.opt_bool(doc, "generate")
    if doc.get("background") is True:
        raise InvalidRequest(
            "background mode is not supported over a WebSocket (the connection streams every response); "
            "omit 'background', or use POST /v1/responses.",
            "background",
            "unsupported_parameter",
        )
    body = {k: value for k, value in doc.items() if k not in _ENVELOPE_KEYS}
    body["stream"] = True  # implicit over a WebSocket
    return Create(body, generate is not False, stream_id)


def _steer(doc: dict[str, Any], stream_id: str | None) -> Steer:
    previous = doc.get("previous_response_id")
    if previous is None:
        raise v.missing("previous_response_id", "the response to steer")
    if not isinstance(previous, str):
        raise v.fail("previous_response_id", "a string", previous)
    if doc.get("input") is None:
        raise v.missing("input", "the input to steer with")
    return Steer(previous, doc["input"], stream_id)


def error_event(
    status: int, error: dict[str, Any], headers: dict[str, str] | None = None, stream_id: str | None = None
) -> dict[str, Any]:
    """A protocol error: the request was refused before any response began. ``error`` is the
    OpenAI-shaped error object (``message``, ``type``, ``param``, ``code``) an HTTP client gets
    with ``status``; ``headers`` (e.g. ``Retry-After``) ride inside it. ``stream_id`` is the
    refused ``response.create``'s lane, echoed as on its events so a client can tell which one."""
    if headers:
        error = {**error, "headers": dict(headers)}
    event = {"type": "error", "status": status, "error": error}
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event


def stream_error_event(event: dict[str, Any], error_type: str) -> dict[str, Any]:
    """A response stream's (flat) ``error`` event in the WebSocket shape, same sequence number."""
    return {
        "type": "error",
        "sequence_number": event["sequence_number"],
        "error": {
            "type": error_type,
            "code": event.get("code"),
            "message": event.get("message"),
            "param": event.get("param"),
        },
    }


def steer_failed_event(steer: Steer, sequence_number: int, stream_id: str | None = None) -> dict[str, Any]:
    """``response.steer.failed``: steering is not supported; the input goes back to the client.
    ``stream_id``: the lane of the targeted response, or the steer's own (``ResponseSteerFailedEvent``)."""
    event: dict[str, Any] = {
        "type": "response.steer.failed",
        "sequence_number": sequence_number,
        "error": {
            "type": "invalid_request_error",
            "code": "steering_not_supported",
            "message": "Steering is not supported by this server: the response runs to its end. Send the input "
            "in a new 'response.create' with 'previous_response_id' once this response is done.",
        },
        "steer": {"input": steer.input, "previous_response_id": steer.previous_response_id},
    }
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event


def encode(event: dict[str, Any]) -> str:
    """One event as the text of one message."""
    return orjson.dumps(event).decode()


# A chat "answer" with nothing in it: what `generate: false` feeds the translator.
_NOTHING_GENERATED: dict[str, Any] = {
    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
}


def prepared_events(ctx: ResponseContext) -> list[dict[str, Any]]:
    """``generate: false`` (Codex's warm-up): the request's state is prepared and nothing is generated.

    The same translator as every response builds the events — ``response.created``,
    ``response.in_progress``, then ``response.completed`` with no output and zero
    usage — and the backend is never called; the response's id can be chained from.
    """
    translator = StreamTranslator(ctx)
    return translator.start() + translator.feed(_NOTHING_GENERATED) + translator.finish()
