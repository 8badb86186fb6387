"""Content parts by place, through real gunicorn, on SQLite and on Redis: each message role and each
tool output given every part type. A part of the other side (``output_text``, ``refusal``,
``summary_text``, ``reasoning_text`` from a user, system, developer or tool; ``input_text`` in an
assistant message) is OpenAI's 400 on ``POST /v1/responses``, ``POST /v1/conversations`` and
``POST …/items`` alike, and nothing is stored; every part a place takes is served, and lists back
from ``input_items`` and the conversation's items as the openai SDK's types (they were stored as
sent and failed them)."""
from __future__ import annotations

import os
from typing import Any

import pytest
from openai.types.conversations import ConversationItemList
from openai.types.responses import ResponseInputItem, ResponseItemList
from pydantic import TypeAdapter

from tests.fixtures.content_parts import INPUT_SIDE, OUTPUT_SIDE, PARTS, TEXT_PARTS, TOOL_SIDE
from tests.state_kit import error, get, post, redis_db, state_proxy

__all__ = ["redis_db", "state_proxy"]

# place: (what it takes, OpenAI's list for the parts of the other side)
PLACES = {
    "user": ({"input_text", "input_image", "input_file"}, INPUT_SIDE),
    "system": ({"input_text"}, INPUT_SIDE),
    "developer": ({"input_text"}, INPUT_SIDE),
    "assistant": ({"output_text", "refusal"}, OUTPUT_SIDE),
    "function_call_output": ({"input_text", "input_image", "input_file"}, TOOL_SIDE),
    "custom_tool_call_output": ({"input_text", "input_image", "input_file"}, TOOL_SIDE),
}


def _items(place: str, parts: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The item of ``place`` holding ``parts`` (after the call it answers, for a tool output)."""
    if place in PLACES and not place.endswith("_output"):
        return [{"type": "message", "role": place, "content": parts}]
    call = {"type": "function_call", "call_id": f"c{n}", "name": "f", "arguments": "{}"}
    if place == "custom_tool_call_output":
        call = {"type": "custom_tool_call", "call_id": f"c{n}", "name": "apply_patch", "input": "x"}
    return [call, {"type": place, "call_id": f"c{n}", "output": parts}]


def _kinds(item: dict[str, Any]) -> list[str]:
    """The part types of an item's content or output (string content is listed as one input_text)."""
    parts = item.get("content", item.get("output"))
    if isinstance(parts, str):
        return ["input_text"]
    return [p["type"] for p in parts or []]


def _proxy(request: pytest.FixtureRequest, backend: str):
    if backend == "sqlite":
        return request.getfixturevalue("state_proxy")
    return request.getfixturevalue("proxy_factory")(RESPONSE_STORE_URL=request.getfixturevalue("redis_db"))


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_parts_of_the_other_side_are_refused_and_the_rest_list_as_the_sdk_types(request, mock, backend):
    svc = _proxy(request, backend)
    conv = post(svc.url, "/v1/conversations", {}).json()["id"]
    for place, (taken, supported) in PLACES.items():
        for ptype in sorted(set(TEXT_PARTS) - taken):
            items = _items(place, [PARTS[ptype]], 0)
            at = len(items) - 1
            field = "output" if place.endswith("_output") else "content"
            for path, key, body in (("/v1/responses", "input", {"model": "mock-echo", "stream": False}),
                                    ("/v1/conversations", "items", {}),
                                    (f"/v1/conversations/{conv}/items", "items", {})):
                err = error(post(svc.url, path, {**body, key: items}), 400)
                want = {"message": f"Invalid value: '{ptype}'. Supported values are: {supported}.",
                        "type": "invalid_request_error", "param": f"{key}[{at}].{field}[0]", "code": "invalid_value"}
                assert err == want, (path, place, ptype)
    assert get(svc.url, f"/v1/conversations/{conv}/items").json()["data"] == []

    # Every part each place takes, in one input and one conversation.
    given = [item for n, (place, (taken, _)) in enumerate(PLACES.items())
             for item in _items(place, [PARTS[p] for p in sorted(taken)], n)]
    given.append({"role": "user", "content": "q-" + os.urandom(3).hex()})
    r = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": given})
    assert r.status_code == 200, r.text[:500]
    listed = get(svc.url, f"/v1/responses/{r.json()['id']}/input_items", order="asc", limit=100).json()
    ResponseItemList.model_validate(listed)
    conv = post(svc.url, "/v1/conversations", {"items": given}).json()["id"]
    page = get(svc.url, f"/v1/conversations/{conv}/items", order="asc", limit=100).json()
    ConversationItemList.model_validate(page)
    for data in (listed["data"], page["data"]):
        assert [i["type"] for i in data] == [i.get("type", "message") for i in given]
        assert [_kinds(i) for i in data] == [_kinds(i) for i in given]
        for item in data:  # and each is input again, as the SDK types it
            TypeAdapter(ResponseInputItem).validate_python(item)
