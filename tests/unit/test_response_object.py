"""The Response assembler: every status a Response can have, from one context.

The stream translator builds ``in_progress`` / ``completed`` / ``incomplete`` /
``failed`` objects; a store or background mode will build ``queued`` and
``cancelled`` ones from the same context. Each must be the spec's 31 keys in
the spec's order (then OpenAI's two), carry the request's echo, and parse in both type systems.
"""
from __future__ import annotations

from typing import Any, get_args

import pytest
from openai.types.responses import Response
from openresponses_types import ResponseResource

from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.response import response_error, response_object
from proxy.translate.shapes import ResponseStatus
from proxy.translate.usage import map_usage
from tests.conformance import SENT_KEYS

BODY = {"model": "m", "input": "hi", "temperature": 0.3, "metadata": {"k": "v"}, "max_tool_calls": 3,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]}
ITEM = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}]}


def ctx() -> Any:
    return translate_request(BODY, TranslationPolicy(), now=1_700_000_000)[1]


def state(status: str) -> dict[str, Any]:
    """The facts a Response in ``status`` carries besides the echo."""
    usage = map_usage({"prompt_tokens": 3, "completion_tokens": 1})
    return {
        "queued": {},
        "in_progress": {},
        "cancelled": {"output": [ITEM], "usage": usage},
        "completed": {"output": [ITEM], "usage": usage, "completed_at": 1_700_000_001},
        "incomplete": {"output": [ITEM], "usage": usage, "incomplete_details": {"reason": "max_output_tokens"}},
        "failed": {"usage": usage, "error": response_error("backend_timeout", "The backend did not answer.")},
    }[status]


@pytest.mark.parametrize("status", get_args(ResponseStatus))
def test_every_status_is_a_valid_response_with_the_echo(status: str) -> None:
    c = ctx()
    obj = response_object(c, status=status, **state(status))
    assert tuple(obj) == SENT_KEYS  # the spec's keys, in the spec's order, then OpenAI's
    assert (obj["id"], obj["created_at"], obj["model"], obj["status"]) == (c.response_id, 1_700_000_000, "m", status)
    # The one echo that depends on the status: the requested tier (auto) until it has been served.
    served = {} if status in ("queued", "in_progress") else {"service_tier": "default"}
    assert {k: obj[k] for k in c.echo} == {**c.echo, **served}
    assert obj["temperature"] == 0.3 and obj["metadata"] == {"k": "v"} and obj["max_tool_calls"] == 3
    assert Response.model_validate(obj).status == status
    ResponseResource.model_validate(obj)


def test_failed_code_is_one_the_sdk_knows() -> None:
    assert response_error("backend_timeout", "m") == {"code": "server_error", "message": "m"}
    assert response_error("rate_limit_exceeded", "m") == {"code": "rate_limit_exceeded", "message": "m"}


def test_each_call_is_a_new_object() -> None:
    c = ctx()
    output = [ITEM]
    a = response_object(c, status="in_progress", output=output)
    b = response_object(c, status="in_progress", output=output)
    assert a == b and a is not b and a["output"] is not b["output"] and a["output"] is not output
    a["output"].append(ITEM)
    assert b["output"] == [ITEM] and output == [ITEM]


@pytest.mark.parametrize(("requested", "open_tier", "ended_tier"), [
    (None, "auto", "default"), ("auto", "auto", "default"), ("default", "default", "default"),
    ("flex", "flex", "flex"), ("scale", "scale", "scale"), ("priority", "priority", "priority"),
    ("fast", "fast", "priority"), ("ultrafast", "ultrafast", "ultrafast"),
])
def test_service_tier_is_the_requested_one_until_served(requested: Any, open_tier: str, ended_tier: str) -> None:
    """As OpenAI's stream shows it: ``response.created``/``in_progress`` carry the requested tier
    (``auto`` when none was), the ended Response the tier that served it — the project's
    ``default`` for ``auto`` (the SDK's docstring), ``priority`` for Fast mode. ``auto`` was echoed
    as ``auto`` in the ended Response, and an absent tier as ``default`` while in progress."""
    body = dict(BODY) if requested is None else {**BODY, "service_tier": requested}
    c = translate_request(body, TranslationPolicy(), now=1)[1]
    for status in get_args(ResponseStatus):
        want = open_tier if status in ("queued", "in_progress") else ended_tier
        assert response_object(c, status=status, **state(status))["service_tier"] == want, status
