"""What the fields of a chat chunk mean, beyond the delta: finish reasons, choices, errors.

Pure lookups, shared by the translator's ``feed`` and ``finish``; the delta's
fields are read where they are used (``translator._delta``).
"""
from __future__ import annotations

from typing import Any

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

# What a chunk of the wrong shape raises while it is read: it fails the response.
MALFORMED = (AttributeError, TypeError, KeyError, ValueError, IndexError)


def choice_zero(choices: Any) -> dict[str, Any] | None:
    """Choice 0 wherever it sits (n > 1, a backend default we never ask for)."""
    for c in choices:
        if type(c) is dict and c.get("index") == 0:
            return c
    return None


def upstream_error(err: Any) -> tuple[str, str]:
    """``(message, code)`` for a chunk's ``error`` (an object, a string, anything)."""
    if type(err) is dict:
        message = err.get("message")
        code = err.get("code")
    else:
        message, code = err, None
    if not isinstance(message, str) or not message:
        message = "upstream error"
    return "upstream error: " + message, code if type(code) is str else "server_error"
