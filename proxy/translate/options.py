"""OpenAI's newer request options: ``prompt_cache_options``, ``moderation``, ``background_options``,
``context_management``, ``image``, ``access_programs``.

The pinned openai SDK's ``ResponseCreateParams`` declares them; before this module they were
ignored like unknown fields, whatever their shape. Each is now checked as the SDK types it (a 400
naming the field on the first problem) and then, one by one:

- ``prompt_cache_options`` has a Chat Completions home (OpenAI's ``CompletionCreateParams`` takes
  ``mode`` and a ``ttl`` of ``30m``): forwarded under ``FORWARD_PROMPT_CACHE_OPTIONS``, like every
  OpenAI-only field, and echoed as the options the Response shows (``mode``/``ttl`` defaults
  filled in). ``prewarm: true`` asks for no output at all, which a chat backend cannot do (it
  would generate, and bill, an answer): refused. A ``comparison_response_id`` asks for cache
  diagnostics, which no chat backend gives: the Response says so, ``prompt_cache_diagnostics``
  ``{"type": "unavailable"}`` (the SDK's own variant for it).
- ``moderation`` cannot be honoured: the backend runs no moderation model here, and the
  proxy has no way to map a chat backend's moderation results. Ignoring it would let flagged
  input and output through unchecked (``block``), or lose the scores the client asked for
  (``score``): refused, after its shape is checked.
- ``background_options``: its windows are honoured by running at once (``soonest`` is what
  background mode does; ``2h``/``8h`` bound when it must finish, and it finishes sooner);
  ``continuation_id`` is a prioritisation hint with nothing to order here. Their documented
  preconditions are checked as OpenAI states them (``2h``/``8h``: ``background: true``, standard
  processing, not streamed). The Response has no such field.
- ``context_management`` (``compaction`` at a token threshold) is accepted with a warning: the
  whole context goes to the backend, as it does below any threshold; a context that outgrows the
  backend's window fails there, loudly, never silently cut. The Response has no such field.
- ``image.context_compression``: no image is ever compressed here, so ``enabled`` ("require
  compression support") is refused and ``auto``/``disabled`` are echoed as the policy that applied,
  ``disabled``.
- ``access_programs.cyber``: a Daybreak program needs an authorisation a chat backend does not
  have (OpenAI refuses a request that requires unavailable Daybreak access): refused;
  ``standard`` is what runs, echoed as the explicit selection OpenAI shows.

The Response keys this adds (``access_programs``, ``image``, ``prompt_cache_options``,
``prompt_cache_diagnostics``) appear only when the request set the option, as ``conversation``
does: OpenAI's Response leaves them null otherwise.
"""
from __future__ import annotations

from typing import Any

from . import validate as v
from .errors import InvalidRequest

CYBER_PROGRAMS = ("standard", "daybreak_blue", "daybreak_red")
COMPLETION_WINDOWS = ("soonest", "2h", "8h")
CONTEXT_COMPRESSIONS = ("auto", "enabled", "disabled")
MODERATION_MODES = ("score", "block")
PROMPT_CACHE_MODES = ("implicit", "explicit")
PROMPT_CACHE_TTLS = ("30m", "12h")
CHAT_PROMPT_CACHE_TTLS = ("30m",)  # the SDK's chat PromptCacheOptions.ttl
# The tiers OpenAI calls Standard processing (``auto`` is the project's, ``default`` unless configured).
_STANDARD_TIERS = (None, "auto", "default")


def request_options(
    body: dict[str, Any],
    chat: dict[str, Any],
    warnings: list[str],
    *,
    forward_prompt_cache_options: bool,
    background: bool,
    stream: bool,
    service_tier: str | None,
) -> dict[str, Any]:
    """Check the options, write what goes upstream into ``chat`` and what the log should say into
    ``warnings``; return the Response keys they add (empty for a request that sets none)."""
    shown: dict[str, Any] = {}
    _access_programs(body, shown)
    _background_options(body, background=background, stream=stream, service_tier=service_tier)
    _context_management(body, warnings)
    image = v.opt_object(body, "image", "image")
    if image is not None:
        compression = v.opt_enum(image, "context_compression", CONTEXT_COMPRESSIONS, "image.context_compression")
        if compression == "enabled":
            raise InvalidRequest(
                "Invalid 'image.context_compression': 'enabled' requires image context compression, which this "
                "server does not offer; use 'auto' or 'disabled'.",
                "image.context_compression",
                "unsupported_value",
            )
        shown["image"] = {"context_compression": "disabled"}
    _moderation(body)
    _prompt_cache_options(body, chat, warnings, shown, forward=forward_prompt_cache_options)
    return shown


def _access_programs(body: dict[str, Any], shown: dict[str, Any]) -> None:
    programs = v.opt_object(body, "access_programs", "access_programs")
    if programs is None:
        return
    cyber = v.opt_enum(programs, "cyber", CYBER_PROGRAMS, "access_programs.cyber")
    if cyber is not None and cyber != "standard":
        raise InvalidRequest(
            f"Invalid 'access_programs.cyber': the {cyber!r} access program is not available on this server "
            "(its backend has no Daybreak access); omit it or use 'standard'.",
            "access_programs.cyber",
            "permission_denied",
            403,  # the SDK's AccessPrograms.cyber: "Requests that require unavailable Daybreak access return 403"
        )
    if cyber == "standard":
        shown["access_programs"] = {"cyber": "standard"}


def _background_options(body: dict[str, Any], *, background: bool, stream: bool, service_tier: str | None) -> None:
    options = v.opt_object(body, "background_options", "background_options")
    if options is None:
        return
    param = "background_options.completion_window"
    window = v.opt_enum(options, "completion_window", COMPLETION_WINDOWS, param)
    v.opt_str(options, "continuation_id", "background_options.continuation_id")
    if window in ("2h", "8h"):
        if not background:
            problem = "background: true"
        elif stream:
            problem = "stream: false or omitted"
        elif service_tier not in _STANDARD_TIERS:
            problem = f"Standard processing (service_tier 'auto' or 'default', got {service_tier!r})"
        else:
            return
        raise InvalidRequest(
            f"Invalid '{param}': the '2h' and '8h' completion windows require {problem}.", param, "invalid_value"
        )


def _context_management(body: dict[str, Any], warnings: list[str]) -> None:
    entries = body.get("context_management")
    if entries is None:
        return
    if not isinstance(entries, list):
        raise v.fail("context_management", "an array of context management entries", entries)
    for k, entry in enumerate(entries):
        param = f"context_management[{k}]"
        if not isinstance(entry, dict):
            raise v.fail(param, "an object like {\"type\": \"compaction\"}", entry)
        etype = entry.get("type")
        if etype != "compaction":
            if not isinstance(etype, str):
                raise v.wrong(param + ".type", "a string", etype, "the context management entry type")
            raise InvalidRequest(
                f"Invalid '{param}.type': only 'compaction' is supported, got {etype!r}.", param + ".type",
                "invalid_value",
            )
        threshold = entry.get("compact_threshold")
        # (0 too: the SDK types it a plain integer, and the Agents SDK's policies can send it.)
        if threshold is not None and (not v.is_int(threshold) or threshold < 0):
            raise v.fail(param + ".compact_threshold", "a non-negative integer (a number of tokens)", threshold)
    if entries:
        warnings.append("context_management: this server does not compact; the whole context goes to the backend")


def _moderation(body: dict[str, Any]) -> None:
    moderation = v.opt_object(body, "moderation", "moderation")
    if moderation is None:
        return
    v.req_str(moderation, "model", "moderation.model")
    policy = v.opt_object(moderation, "policy", "moderation.policy")
    for side in ("input", "output"):
        sub = None if policy is None else v.opt_object(policy, side, f"moderation.policy.{side}")
        if sub is not None:
            mode = sub.get("mode")
            if mode not in MODERATION_MODES:
                raise v.wrong(f"moderation.policy.{side}.mode", "'score' or 'block'", mode)
    raise InvalidRequest(
        "moderation is not supported by this server: its Chat Completions backend runs no moderation model, so "
        "the input and output would go unchecked and no moderation results would come back. Omit 'moderation' "
        "(the Moderations API can check the text).",
        "moderation",
        "unsupported_parameter",
    )


def _prompt_cache_options(
    body: dict[str, Any], chat: dict[str, Any], warnings: list[str], shown: dict[str, Any], *, forward: bool
) -> None:
    options = v.opt_object(body, "prompt_cache_options", "prompt_cache_options")
    if options is None:
        return
    comparison = v.opt_str(options, "comparison_response_id", "prompt_cache_options.comparison_response_id")
    mode = v.opt_enum(options, "mode", PROMPT_CACHE_MODES, "prompt_cache_options.mode")
    prewarm = v.opt_bool(options, "prewarm", "prompt_cache_options.prewarm")
    ttl = v.opt_enum(options, "ttl", PROMPT_CACHE_TTLS, "prompt_cache_options.ttl")
    if prewarm:
        raise InvalidRequest(
            "Invalid 'prompt_cache_options.prewarm': preparing the prompt cache without generating output is not "
            "supported by this server (its Chat Completions backend would generate, and bill, an answer); omit it "
            "or set it to false.",
            "prompt_cache_options.prewarm",
            "unsupported_value",
        )
    if forward:
        upstream: dict[str, Any] = {}
        if mode is not None:
            upstream["mode"] = mode
        if ttl in CHAT_PROMPT_CACHE_TTLS:
            upstream["ttl"] = ttl
        elif ttl is not None:
            warnings.append(f"prompt_cache_options.ttl {ttl!r} not forwarded: Chat Completions takes only '30m'")
        if upstream:
            chat["prompt_cache_options"] = upstream
    # The SDK's Response.PromptCacheOptions requires mode and ttl: their documented defaults.
    shown["prompt_cache_options"] = {
        "mode": mode or "implicit", "ttl": ttl or "30m", "comparison_response_id": comparison,
    }
    if comparison is not None:
        shown["prompt_cache_diagnostics"] = {"type": "unavailable"}
