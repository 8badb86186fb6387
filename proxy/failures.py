"""Every way a request can fail, and what each one means to everyone involved.

One table decides, for each cause: the HTTP status a client gets when no byte
of the answer has been sent yet (JSON clients, and streams that fail before
their first output), the OpenAI error ``type``, the ``response.failed``
``error.code`` a streaming client gets afterwards, the circuit breaker's
verdict, the log level and the metrics label. The JSON path, the SSE path and
every other transport read it, so they cannot disagree.

``Failure`` carries one occurrence: its cause, a message for the client, and
the precise ``code`` — the backend's own code when it sent one (e.g.
``context_length_exceeded``), else ours (``backend_timeout``, ``truncated``…).
That code goes on the SSE ``error`` event and in the JSON error body as is;
``response.failed`` gets ``response_code``, because the openai SDK types
``ResponseError.code`` as a closed enum and a value outside it would make an
unmodified client fail to parse the event.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from .breaker import Verdict
from .errors import ProxyError


class Cause(enum.Enum):
    CLIENT_INPUT = "client_input"  # our own validation refused the request
    BACKEND_REJECTED = "backend_rejected"  # the backend refused the request (its 4xx, or an error blaming it)
    BACKEND_FAILED = "backend_failed"  # 5xx, a broken, malformed or truncated answer, an error of its own
    BACKEND_UNREACHABLE = "backend_unreachable"  # connect refused, DNS, TLS, connect timeout
    BACKEND_TIMEOUT = "backend_timeout"  # no answer in time, or silence between chunks
    CLIENT_GONE = "client_gone"  # the client left before the answer was complete
    BREAKER_OPEN = "breaker_open"  # refused without calling the backend
    OVERLOADED = "overloaded"  # a limit of ours (upstream pool, job caps): retry shortly
    STORE_UNAVAILABLE = "store_unavailable"  # the response store could not be read or written
    INTERNAL = "internal"  # a bug of ours


@dataclass(frozen=True, slots=True)
class Row:
    status: int
    error_type: str
    response_code: str
    verdict: Verdict
    log_level: int


TAXONOMY: dict[Cause, Row] = {
    Cause.CLIENT_INPUT: Row(400, "invalid_request_error", "invalid_prompt", Verdict.NONE, logging.INFO),
    Cause.BACKEND_REJECTED: Row(400, "invalid_request_error", "invalid_prompt", Verdict.SUCCESS, logging.INFO),
    Cause.BACKEND_FAILED: Row(502, "server_error", "server_error", Verdict.MODEL_FAILURE, logging.WARNING),
    Cause.BACKEND_UNREACHABLE: Row(502, "server_error", "server_error", Verdict.HOST_FAILURE, logging.WARNING),
    Cause.BACKEND_TIMEOUT: Row(504, "server_error", "server_error", Verdict.MODEL_FAILURE, logging.WARNING),
    Cause.CLIENT_GONE: Row(499, "invalid_request_error", "server_error", Verdict.NONE, logging.INFO),
    Cause.BREAKER_OPEN: Row(503, "server_error", "server_error", Verdict.NONE, logging.INFO),
    Cause.OVERLOADED: Row(503, "server_error", "server_error", Verdict.NONE, logging.WARNING),
    Cause.STORE_UNAVAILABLE: Row(503, "server_error", "server_error", Verdict.NONE, logging.WARNING),
    Cause.INTERNAL: Row(500, "server_error", "server_error", Verdict.NONE, logging.ERROR),
}

# The values the openai SDK's ResponseError.code accepts (openai 3.57,
# types/responses/response_error.py); a backend's own code among them is kept.
RESPONSE_ERROR_CODES = frozenset(
    {
        "server_error", "rate_limit_exceeded", "invalid_prompt", "data_residency_mismatch", "bio_policy",
        "misalignment_policy_violation", "vector_store_timeout", "invalid_image", "invalid_image_format",
        "invalid_base64_image", "invalid_image_url", "image_too_large", "image_too_small", "image_parse_error",
        "image_content_policy_violation", "invalid_image_mode", "image_file_too_large",
        "unsupported_image_media_type", "empty_image_file", "failed_to_download_image", "image_file_not_found",
    }
)


@dataclass(slots=True)
class Failure(Exception):
    """One failure of one request (see the module docstring)."""

    cause: Cause
    message: str
    code: str | None  # None only where the backend itself sent none (its 4xx passed through)
    # The metrics label of an upstream failure (unreachable, timeout, status_5xx,
    # malformed, truncated, mid_stream_error, oversize_event, …); None otherwise.
    kind: str | None = None
    status: int | None = None  # overrides the cause's status (the backend's own 4xx)
    error_type: str | None = None  # overrides the cause's type (the backend's own)
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    @property
    def row(self) -> Row:
        return TAXONOMY[self.cause]

    @property
    def verdict(self) -> Verdict:
        return self.row.verdict

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else self.row.status

    @property
    def response_code(self) -> str:
        """``response.failed``'s ``error.code``: within the openai SDK's enum."""
        if self.code in RESPONSE_ERROR_CODES:
            return self.code
        if self.cause is Cause.BACKEND_REJECTED and self.http_status == 429:
            return "rate_limit_exceeded"
        return self.row.response_code

    def http_error(self) -> ProxyError:
        """The OpenAI-shaped HTTP error for a client that has received nothing yet."""
        return ProxyError(
            self.http_status,
            self.message,
            type=self.error_type or self.row.error_type,
            param=self.param,
            code=self.code,
            headers=self.headers,
        )


def client_gone() -> Failure:
    return Failure(Cause.CLIENT_GONE, "The client disconnected.", "client_disconnected")


def internal(message: str = "Internal proxy error.") -> Failure:
    return Failure(Cause.INTERNAL, message, "internal_error")


# Mid-stream error objects that blame the request rather than the backend.
_REQUEST_ERROR_CODES = frozenset(
    {
        "context_length_exceeded", "invalid_request_error", "invalid_prompt", "content_filter",
        "content_policy_violation", "rate_limit_exceeded", "string_above_max_length",
    }
)
_REQUEST_ERROR_TYPES = frozenset(
    {"invalid_request_error", "BadRequestError", "rate_limit_error", "RateLimitError", "NotFoundError"}
)


def from_stream_error(err: object, message: str) -> Failure:
    """A backend's ``{"error": …}`` object inside a stream (or a body that said 200).

    vLLM and others put an HTTP-like integer ``code`` there; OpenAI-style servers a
    string ``code`` and ``type``. Errors that blame the request (context too long,
    rate limited) are the backend doing its job, not failing.
    """
    code: object = err.get("code") if isinstance(err, dict) else None
    kind: object = err.get("type") if isinstance(err, dict) else None
    param: object = err.get("param") if isinstance(err, dict) else None
    text_code = code if isinstance(code, str) and code else None
    status = None
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        status = code
    rejected = (status is not None and status < 500) or (
        (text_code in _REQUEST_ERROR_CODES) or (isinstance(kind, str) and kind in _REQUEST_ERROR_TYPES)
    )
    if rejected:
        if status is None:
            limited = text_code == "rate_limit_exceeded" or kind in ("rate_limit_error", "RateLimitError")
            status = 429 if limited else 400
        return Failure(
            Cause.BACKEND_REJECTED, message,
            text_code or ("rate_limit_exceeded" if status == 429 else "invalid_request"),
            kind="mid_stream_error", status=status,
            error_type="rate_limit_error" if status == 429 else "invalid_request_error",
            param=param if isinstance(param, str) else None,
        )
    return Failure(Cause.BACKEND_FAILED, message, text_code or "backend_error", kind="mid_stream_error")
