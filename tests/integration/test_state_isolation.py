"""What one key stores, another key can neither read, list, delete, chain from, reference nor
append to — on every route, on SQLite and on Redis: 404 (400 for an item reference) worded exactly
as for an id that never existed, never 403; the owner's objects are unharmed afterwards. In
operator mode ownership follows the client's proxy key, not the backend key every request shares.
Keys themselves are never stored."""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.state_kit import (
    KEY_A,
    KEY_B,
    call,
    error,
    get,
    post,
    redis_db,
    redis_mentions,
    store_file,
    stored_bytes,
    upstream,
)

__all__ = ["redis_db"]


def _call(url: str, method: str, path: str, key: str, body: dict[str, Any] | None):
    return call(url, method, path, key, body)


def _attempts(rid: str, in_id: str, out_id: str, cid: str, iid: str, model: str) -> list[tuple[str, str, Any]]:
    """Every route that names a stored object, as (method, path, body)."""
    return [
        ("GET", f"/v1/responses/{rid}", None),
        ("GET", f"/responses/{rid}", None),
        ("DELETE", f"/v1/responses/{rid}", None),
        ("GET", f"/v1/responses/{rid}/input_items", None),
        ("POST", f"/v1/responses/{rid}/cancel", None),
        ("POST", "/v1/responses", {"model": model, "input": "x", "previous_response_id": rid}),
        ("POST", "/v1/responses", {"model": model, "input": "x", "previous_response_id": rid, "stream": True}),
        ("POST", "/v1/responses", {"model": model, "input": [{"role": "user", "content": "x"},
                                                             {"type": "item_reference", "id": in_id}]}),
        ("POST", "/v1/responses", {"model": model, "input": [{"id": out_id}], "stream": True}),
        ("POST", "/v1/responses", {"model": model, "input": [{"type": "item_reference", "id": iid}]}),
        ("POST", "/v1/responses", {"model": model, "input": "x", "conversation": cid}),
        ("POST", "/v1/responses", {"model": model, "input": "x", "conversation": {"id": cid}, "stream": True}),
        ("GET", f"/v1/conversations/{cid}", None),
        ("POST", f"/v1/conversations/{cid}", {"metadata": {"owner": "mallory"}}),
        ("DELETE", f"/v1/conversations/{cid}", None),
        ("POST", f"/v1/conversations/{cid}/items", {"items": [{"role": "user", "content": "injected"}]}),
        ("GET", f"/v1/conversations/{cid}/items", None),
        ("GET", f"/v1/conversations/{cid}/items/{iid}", None),
        ("DELETE", f"/v1/conversations/{cid}/items/{iid}", None),
    ]


def _owned_state(url: str, key: str, model: str) -> dict[str, Any]:
    first = post(url, "/v1/responses", {"model": model, "input": "A's question"}, key=key)
    assert first.status_code == 200, first.text
    doc = first.json()
    conv = post(url, "/v1/conversations", {"items": [{"role": "user", "content": "A's item"}],
                                           "metadata": {"owner": "alice"}}, key=key).json()
    state = {"raw": first.content, "id": doc["id"], "out": doc["output"][0]["id"], "cid": conv["id"]}
    state["in"] = get(url, f"/v1/responses/{doc['id']}/input_items", key=key).json()["data"][0]["id"]
    state["iid"] = get(url, f"/v1/conversations/{conv['id']}/items", key=key).json()["data"][0]["id"]
    return state


def _snapshot(url: str, key: str, s: dict[str, Any]) -> list[bytes]:
    paths = [f"/v1/responses/{s['id']}", f"/v1/responses/{s['id']}/input_items", f"/v1/conversations/{s['cid']}",
             f"/v1/conversations/{s['cid']}/items", f"/v1/conversations/{s['cid']}/items/{s['iid']}"]
    out = []
    for path in paths:
        r = get(url, path, key=key)
        assert r.status_code == 200, (path, r.text)
        out.append(r.content)
    return out


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_another_key_finds_nothing_on_any_route_and_harms_nothing(proxy_factory, mock, request, backend):
    url = request.getfixturevalue("redis_db") if backend == "redis" else None
    svc = proxy_factory(**({"RESPONSE_STORE_URL": url} if url else {}))
    model = "iso-" + os.urandom(3).hex()
    mine = _owned_state(svc.url, KEY_A, model)
    before = _snapshot(svc.url, KEY_A, mine)
    calls = len(mock.requests())
    ghost = {k: (v[:-6] + "0" * 6 if isinstance(v, str) else v) for k, v in mine.items()}  # ids never issued

    attempts = _attempts(mine["id"], mine["in"], mine["out"], mine["cid"], mine["iid"], model)
    unknown = _attempts(ghost["id"], ghost["in"], ghost["out"], ghost["cid"], ghost["iid"], model)
    for (method, path, body), (_, ghost_path, ghost_body) in zip(attempts, unknown):
        r = _call(svc.url, method, path, KEY_B, body)
        expected_status = 400 if body and "input" in body and isinstance(body["input"], list) else 404
        err = error(r, expected_status)
        never = error(_call(svc.url, method, ghost_path, KEY_B, ghost_body), expected_status)
        for real, fake in zip((mine["id"], mine["in"], mine["out"], mine["cid"], mine["iid"]),
                              (ghost["id"], ghost["in"], ghost["out"], ghost["cid"], ghost["iid"])):
            never = {k: v.replace(fake, real) if isinstance(v, str) else v for k, v in never.items()}
        assert err == never, f"{method} {path}: another key's object must look like one that never existed"
        # The owner itself gets past the ownership check on the same route (the probe is real).
        if method == "GET":
            assert _call(svc.url, method, path, KEY_A, body).status_code == 200, (method, path)
    assert len(mock.requests()) == calls, "nothing another key tried reached the backend"

    assert _snapshot(svc.url, KEY_A, mine) == before
    assert get(svc.url, f"/v1/responses/{mine['id']}", key=KEY_A).content == mine["raw"]
    chained = post(svc.url, "/v1/responses", {"model": model, "input": "A again", "previous_response_id": mine["id"]})
    joined = post(svc.url, "/v1/responses", {"model": model, "input": "A in conv", "conversation": mine["cid"]})
    assert chained.status_code == 200 and joined.status_code == 200
    assert upstream(mock, model)[-2][0] == {"role": "user", "content": "A's question"}
    assert upstream(mock, model)[-1][0] == {"role": "user", "content": "A's item"}

    # The keys are never stored, only their hashes.
    if backend == "sqlite":
        held = stored_bytes(store_file(svc))
        assert mine["id"].encode() in held and KEY_A.encode() not in held and KEY_B.encode() not in held
    else:
        assert redis_mentions(url, mine["id"]) and not redis_mentions(url, KEY_A) and not redis_mentions(url, KEY_B)
    assert KEY_A not in svc.log_text() and KEY_B not in svc.log_text()


def test_in_operator_mode_ownership_follows_the_clients_proxy_key(proxy_factory, mock):
    alice, bob = "pk-alice-0123456789abcdef", "pk-bob-0123456789abcdef"
    backend_key = "sk-operator-0123456789abcdef-SECRET"
    svc = proxy_factory(BACKEND_API_KEY=backend_key, PROXY_API_KEYS=f"{alice},{bob}")
    model = "op-" + os.urandom(3).hex()
    mine = _owned_state(svc.url, alice, model)
    assert mock.requests(model)[0]["headers"]["authorization"] == f"Bearer {backend_key}"
    for method, path, body in _attempts(mine["id"], mine["in"], mine["out"], mine["cid"], mine["iid"], model):
        status = _call(svc.url, method, path, bob, body).status_code
        assert status in (400, 404), (method, path, status)
        assert _call(svc.url, method, path, "pk-eve-0123456789abcdef", body).status_code == 401, (method, path)
    assert _snapshot(svc.url, alice, mine)
    r = post(svc.url, "/v1/responses", {"model": model, "input": "again", "previous_response_id": mine["id"]},
             key=alice)
    assert r.status_code == 200
    assert post(svc.url, "/v1/responses", {"model": model, "input": "bob's own"}, key=bob).status_code == 200
    held = stored_bytes(store_file(svc))
    assert not any(k.encode() in held for k in (alice, bob, backend_key))
