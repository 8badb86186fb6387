"""Every recorded refusal is still made, by the core's own ``InvalidRequest``, word for word.

The corpus (``tests/fixtures/request_errors.py``: every bad request the request
tests send, with the policy used) was recorded while the core raised the HTTP
edge's ``ProxyError``; the same message, param and code must come out now.
``tests/integration/test_core_edge.py`` sends them through the service.
"""
from __future__ import annotations

from typing import Any

import pytest

from proxy.translate.errors import InvalidRequest
from proxy.translate.request import TranslationPolicy, translate_request
from tests.fixtures.request_errors import load

CASES = load()


def test_corpus_covers_every_kind_of_refusal() -> None:
    codes = {case["error"]["code"] for case in CASES}
    assert {None, "missing_required_parameter", "unsupported_parameter", "unsupported_input_item", "empty_array",
            "unsupported_tool", "string_above_max_length", "unsupported_content_type", "empty_string",
            "invalid_body"} <= codes
    assert len(CASES) > 500


@pytest.mark.parametrize("case", CASES, ids=[f"{i}:{c['error']['param']}" for i, c in enumerate(CASES)])
def test_refusal_is_the_recorded_one(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as info:
        translate_request(case["body"], TranslationPolicy(**case["policy"]), now=1)
    err = case["error"]
    assert (info.value.message, info.value.param, info.value.code) == (err["message"], err["param"], err["code"])
