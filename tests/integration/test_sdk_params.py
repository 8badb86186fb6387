"""Parameter values the pinned openai SDK's own types admit, sent through the SDK to the real
service: each must be accepted (never a 400 for a value the client library offers), reach
the backend where the proxy forwards it, and come back echoed as OpenAI echoes it.

Every answer is validated by tests/conformance.py (through the ``openai_client`` tap).
"""
from __future__ import annotations

import typing
from typing import Any

import openai
import pytest
from openai.types.responses.service_tier import ServiceTier
from openai.types.shared.reasoning_effort import ReasoningEffort

from tests.conftest import API_KEY


def _literals(alias: object) -> list[str]:
    """The string values of an ``Optional[Literal[...]]`` alias of the SDK."""
    (lit,) = [a for a in typing.get_args(alias) if a is not type(None)]
    return list(typing.get_args(lit))


def _answer(client: Any, stream: bool, **kwargs: Any) -> Any:
    """The final Response of a JSON ``create``, or of the ``responses.stream`` helper."""
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as events:
        return events.get_final_response()


def test_the_values_once_refused_are_among_those_tested():
    # The tests below take their values from the SDK; this keeps them from silently losing
    # the ones that were 400s ('max'; 'fast', 'ultrafast') should the SDK's aliases change shape.
    assert {"minimal", "xhigh", "max"} <= set(_literals(ReasoningEffort))
    assert {"flex", "priority", "fast", "ultrafast"} <= set(_literals(ServiceTier))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("effort", _literals(ReasoningEffort))
def test_every_reasoning_effort_of_the_sdk_is_forwarded_and_echoed(openai_client, mock, effort, stream):
    model = f"sdk-effort-{effort}"
    mock.script(model, {"text": "ok"})
    response = _answer(openai_client, stream, model=model, input="hi", reasoning={"effort": effort})
    assert response.status == "completed" and response.output_text == "ok"
    assert response.reasoning.effort == effort
    assert mock.requests(model)[-1]["body"]["reasoning_effort"] == effort


# What OpenAI's Response shows for each requested tier: `fast` is served as `priority` (the
# SDK's own docstring: "The response will show service_tier=priority regardless of if you
# specify service_tier=fast or priority").
_TIER_ECHO = {"fast": "priority"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("tier", _literals(ServiceTier))
def test_every_service_tier_of_the_sdk_is_accepted_and_echoed(openai_client, mock, tier, stream):
    model = f"sdk-tier-{tier}"
    mock.script(model, {"text": "ok"})
    response = _answer(openai_client, stream, model=model, input="hi", service_tier=tier)
    assert response.status == "completed" and response.output_text == "ok"
    assert response.service_tier == _TIER_ECHO.get(tier, tier)
    assert "service_tier" not in mock.requests(model)[-1]["body"]  # FORWARD_SERVICE_TIER is off


def test_a_forwarded_fast_tier_reaches_the_backend_as_sent(proxy_factory, mock):
    forwarding = proxy_factory(FORWARD_SERVICE_TIER="true")
    mock.script("sdk-tier-fwd", {"text": "ok"})
    with openai.OpenAI(base_url=forwarding.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        for tier in ("fast", "ultrafast"):
            response = client.responses.create(model="sdk-tier-fwd", input="hi", service_tier=tier)
            assert response.service_tier == _TIER_ECHO.get(tier, tier)
            assert mock.requests("sdk-tier-fwd")[-1]["body"]["service_tier"] == tier
