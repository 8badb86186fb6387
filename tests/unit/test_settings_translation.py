"""The translation settings reach the policy the request translator uses."""
from __future__ import annotations

import pytest

from proxy import settings as s
from proxy.runtime import Runtime


def test_reasoning_in_history_defaults_on_and_can_be_turned_off() -> None:
    assert s.load({}).reasoning_in_history is True
    assert s.load({"REASONING_IN_HISTORY": "false"}).reasoning_in_history is False
    with pytest.raises(s.SettingsError, match="REASONING_IN_HISTORY"):
        s.load({"REASONING_IN_HISTORY": "sometimes"})


@pytest.mark.parametrize("value", ["true", "false"])
def test_the_policy_follows_the_setting(value: str) -> None:
    settings = s.load({"REASONING_IN_HISTORY": value, "CIRCUIT_BREAKER_ENABLED": "false"})
    assert Runtime.build(settings).policy.reasoning_in_history is (value == "true")
