"""``store: false`` keeps nothing, ever — on SQLite (not a byte of it in the file or its WAL) and on
Redis (no key or value mentions it) — yet may chain from a stored response, which it leaves as it
was; its conversation gets nothing either."""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conformance import check_stream, parse_sse
from tests.state_kit import delete, error, get, post, redis_db, redis_mentions, store_file, stored_bytes, upstream

__all__ = ["redis_db"]


def _traces(backend: str, svc, url: str | None, needles: list[str]) -> list[str]:
    if backend == "sqlite":
        held = stored_bytes(store_file(svc))
        assert held, "the store file should exist (something was stored)"
        return [n for n in needles if n.encode() in held]
    assert url is not None
    return [n for n in needles if redis_mentions(url, n)]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_store_false_keeps_nothing_and_may_chain_from_a_stored_response(proxy_factory, mock, request, backend):
    url = request.getfixturevalue("redis_db") if backend == "redis" else None
    svc = proxy_factory(**({"RESPONSE_STORE_URL": url} if url else {}))
    model = "nostore-" + os.urandom(3).hex()
    marker = "UNSTORED-" + os.urandom(6).hex()
    mock.script(model, {"text": "stored answer"}, {"text": f"json {marker}"}, {"text": f"sse {marker}"},
                {"text": f"conv {marker}"})
    stored = post(svc.url, "/v1/responses", {"model": model, "input": "stored question"})
    assert stored.status_code == 200
    base = stored.json()
    conv = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "kept"}]}).json()
    conv_items = get(svc.url, f"/v1/conversations/{conv['id']}/items").json()
    base_items = get(svc.url, f"/v1/responses/{base['id']}/input_items").json()

    r = post(svc.url, "/v1/responses", {"model": model, "input": f"json question {marker}", "store": False,
                                        "previous_response_id": base["id"]})
    assert r.status_code == 200, r.text
    unstored_json = r.json()
    r = post(svc.url, "/v1/responses", {"model": model, "input": f"sse question {marker}", "store": False,
                                        "previous_response_id": base["id"], "stream": True})
    unstored_sse = check_stream(parse_sse(r.content))
    r = post(svc.url, "/v1/responses", {"model": model, "input": f"conv question {marker}", "store": False,
                                        "conversation": conv["id"]})
    assert r.status_code == 200, r.text
    unstored_conv = r.json()
    assert unstored_conv["conversation"] == {"id": conv["id"]}

    unstored = [unstored_json, unstored_sse, unstored_conv]
    for doc in unstored:
        assert doc["store"] is False and doc["status"] == "completed"
    assert [d["previous_response_id"] for d in unstored] == [base["id"], base["id"], None]
    sent = upstream(mock, model)
    assert sent[1] == [{"role": "user", "content": "stored question"}, {"role": "assistant", "content": "stored answer"},
                       {"role": "user", "content": f"json question {marker}"}]
    assert sent[2][-1] == {"role": "user", "content": f"sse question {marker}"} and sent[2][:2] == sent[1][:2]
    assert sent[3] == [{"role": "user", "content": "kept"}, {"role": "user", "content": f"conv question {marker}"}]

    for doc in unstored:
        rid = doc["id"]
        assert error(get(svc.url, f"/v1/responses/{rid}"), 404)["param"] == "response_id"
        assert error(get(svc.url, f"/v1/responses/{rid}/input_items"), 404)["param"] == "response_id"
        assert error(delete(svc.url, f"/v1/responses/{rid}"), 404)["param"] == "response_id"
        err = error(post(svc.url, "/v1/responses", {"model": model, "input": "x", "previous_response_id": rid}), 404)
        assert err["code"] == "previous_response_not_found"
        ref: dict[str, Any] = {"type": "item_reference", "id": doc["output"][0]["id"]}
        assert error(post(svc.url, "/v1/responses", {"model": model, "input": [ref]}), 400)["param"] == "input[0]"
    assert len(upstream(mock, model)) == 4

    # The stored predecessor and the conversation are as they were.
    assert get(svc.url, f"/v1/responses/{base['id']}").content == stored.content
    assert get(svc.url, f"/v1/responses/{base['id']}/input_items").json() == base_items
    assert get(svc.url, f"/v1/conversations/{conv['id']}/items").json() == conv_items

    needles = [marker] + [d["id"] for d in unstored] + [i["id"] for d in unstored for i in d["output"]]
    assert _traces(backend, svc, url, needles) == []
    assert _traces(backend, svc, url, [base["id"], conv["id"]]) == [base["id"], conv["id"]]  # the probe works
