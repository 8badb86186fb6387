"""The Response object, assembled from a ``ResponseContext`` in any state.

The stream translator builds the ``in_progress`` snapshot and the terminal
``completed`` / ``incomplete`` / ``failed`` objects with it; a store or
background mode builds ``queued``, ``in_progress`` or ``cancelled`` ones from
the same context, so every Response this service sends has the same 33 keys:
the spec's 31 ``ResponseResource`` keys in its order — the facts of the answer
(id, status, output, usage, …) interleaved with the request values the context
echoes (``ECHO_KEYS``) — then OpenAI's ``prompt_cache_retention`` and ``user``,
which its Response always carries (null when not requested), then the keys of
OpenAI's newer options the request set (``ctx.shown``: ``access_programs``, ``image``,
``prompt_cache_options``, ``prompt_cache_diagnostics``), and ``conversation`` when
the request named one.

``service_tier`` is the one echo that depends on the status, as OpenAI's does:
the requested tier while queued or in progress, the tier that served it after.
"""
from __future__ import annotations

from collections.abc import Sequence

from .context import ResponseContext
from .params import TIER_SERVED
from .shapes import IncompleteDetails, OutputItem, Response, ResponseError, ResponseStatus, Usage

__all__ = ["ERROR_CODES", "response_error", "response_object", "tier_shown"]

# Codes the openai SDK's ResponseError accepts; anything else becomes "server_error".
ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "misalignment_policy_violation",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)


# The statuses whose Response shows the requested service tier (nothing has served it yet).
_REQUESTED_TIER_SHOWN = frozenset({"queued", "in_progress"})


def tier_shown(status: str, tier: str | None) -> str | None:
    """The ``service_tier`` a Response of ``status`` shows for the requested ``tier``: the requested
    one while queued or in progress, the one that served it once ended (``auto`` → ``default``).
    Also what a background job ended from outside its generation (a cancel, a reaper) shows."""
    if status in _REQUESTED_TIER_SHOWN or tier is None:
        return tier
    return TIER_SERVED.get(tier, tier)


def response_error(code: str, message: str) -> ResponseError:
    """``Response.error``: the openai SDK parses ``code`` as an enum, so an unknown
    code (``backend_timeout``, a backend's own) becomes ``server_error`` here; the
    stream's ``error`` event, free text, keeps the precise one."""
    return {"code": code if code in ERROR_CODES else "server_error", "message": message}


def response_object(
    ctx: ResponseContext,
    *,
    status: ResponseStatus,
    output: Sequence[OutputItem] = (),
    usage: Usage | None = None,
    error: ResponseError | None = None,
    incomplete_details: IncompleteDetails | None = None,
    completed_at: int | None = None,
) -> Response:
    """A new Response for ``ctx`` (a fresh dict each call; ``output`` is copied into a list)."""
    e = ctx.echo
    tier = tier_shown(status, e.get("service_tier"))
    response: Response = {
        "id": ctx.response_id,
        "object": "response",
        "created_at": ctx.created_at,
        "completed_at": completed_at,
        "status": status,
        "incomplete_details": incomplete_details,
        "model": ctx.model,
        "previous_response_id": e.get("previous_response_id"),
        "instructions": e.get("instructions"),
        "output": list(output),
        "error": error,
        "tools": e.get("tools"),
        "tool_choice": e.get("tool_choice"),
        "truncation": e.get("truncation"),
        "parallel_tool_calls": e.get("parallel_tool_calls"),
        "text": e.get("text"),
        "top_p": e.get("top_p"),
        "presence_penalty": e.get("presence_penalty"),
        "frequency_penalty": e.get("frequency_penalty"),
        "top_logprobs": e.get("top_logprobs"),
        "temperature": e.get("temperature"),
        "reasoning": e.get("reasoning"),
        "usage": usage,
        "max_output_tokens": e.get("max_output_tokens"),
        "max_tool_calls": e.get("max_tool_calls"),
        "store": e.get("store"),
        "background": e.get("background"),
        "service_tier": tier,
        "metadata": e.get("metadata"),
        "safety_identifier": e.get("safety_identifier"),
        "prompt_cache_key": e.get("prompt_cache_key"),
        "prompt_cache_retention": e.get("prompt_cache_retention"),
        "user": e.get("user"),
    }
    if ctx.shown:
        # OpenAI's keys for the options the request set (null in its Response otherwise).
        response.update(ctx.shown)  # type: ignore[typeddict-item]  # keys of shapes.Response, NotRequired
    if ctx.conversation_id is not None:
        # Not one of the spec's keys: OpenAI's Response carries it when the request named one.
        response["conversation"] = {"id": ctx.conversation_id}
    return response
