"""What the fields of a chat chunk mean, beyond the delta: finish reasons, choices, errors.

Pure lookups, shared by the translator's ``feed`` and ``finish``; the delta's
fields are read where they are used (``translator._delta``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# finish() without any finish_reason: the upstream stream was cut.
TRUNCATED_MESSAGE = "upstream stream ended before completion"

# finish_reason → Response.incomplete_details.reason.
INCOMPLETE_REASONS = {
    "length": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "content_filter": "content_filter",
}

# Finish reasons that mean the generation did not end normally (vLLM ends an
# aborted request with "abort": the answer is cut short, so it must not read
# as completed). Any other unknown reason (TGI's "eos_token",
# "stop_sequence", ...) counts as a normal stop.
FAILED_REASONS = ("error", "abort")

FailureKind = Literal["upstream_error", "finish_error", "malformed", "truncated"]

# The precise code of each kind of failure the translator finds (an upstream
# error's own string code wins), for the ``error`` event and the caller's taxonomy.
_CODES: dict[str, str] = {
    "upstream_error": "backend_error",
    "finish_error": "backend_error",
    "malformed": "invalid_chunk",
    "truncated": "truncated",
}


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """Why the translator ended a response as failed (``StreamTranslator.failure``).

    ``upstream_error``: the backend sent an error (``error``: its error object, any
    JSON value); ``finish_error``: it finished with ``finish_reason`` "error" or
    "abort"; ``malformed``: a chunk of a shape we cannot read (``message`` names the
    field); ``truncated``: the stream ended without a finish reason and not cleanly.
    """

    kind: FailureKind
    message: str
    error: Any = None
    finish_reason: str | None = None

    @property
    def code(self) -> str:
        if self.kind == "upstream_error" and type(self.error) is dict:
            code = self.error.get("code")
            if type(code) is str and code:
                return code
        return _CODES[self.kind]


def choice_zero(choices: Any) -> dict[str, Any] | None:
    """Choice 0 wherever it sits (n > 1, a backend default we never ask for)."""
    for c in choices:
        if type(c) is dict and c.get("index") == 0:
            return c
    return None


def upstream_error(err: Any) -> StreamFailure:
    """The failure a chunk's ``error`` (an object, a string, anything) means."""
    message = err.get("message") if type(err) is dict else err
    if not isinstance(message, str) or not message:
        message = "upstream error"
    return StreamFailure("upstream_error", "upstream error: " + message, error=err)
