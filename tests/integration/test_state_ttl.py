"""``RESPONSE_STORE_TTL_SECS`` bounds every stored response and conversation, in real time, on
SQLite and on Redis: alive until then, on every route; gone after (404 for the response, the
conversation and a chain from them, 400 for a reference to their items); on Redis the keys
themselves carry the TTL and vanish."""
from __future__ import annotations

import os
import time

import pytest
import redis

from tests.http import wait_for
from tests.state_kit import delete, error, get, post, redis_db, upstream

__all__ = ["redis_db"]

TTL_SECS = 4


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_responses_and_conversations_expire_after_the_ttl(proxy_factory, mock, request, backend):
    url = request.getfixturevalue("redis_db") if backend == "redis" else None
    env = {"RESPONSE_STORE_TTL_SECS": str(TTL_SECS)}
    svc = proxy_factory(**env, **({"RESPONSE_STORE_URL": url} if url else {}))
    model = "ttl-" + os.urandom(3).hex()
    started = time.monotonic()
    first = post(svc.url, "/v1/responses", {"model": model, "input": "short-lived"}).json()
    conv = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "short conv"}]}).json()
    item = get(svc.url, f"/v1/conversations/{conv['id']}/items").json()["data"][0]["id"]
    out = first["output"][0]["id"]

    # Alive within the TTL, on every route.
    assert get(svc.url, f"/v1/responses/{first['id']}").status_code == 200
    assert get(svc.url, f"/v1/responses/{first['id']}/input_items").status_code == 200
    assert get(svc.url, f"/v1/conversations/{conv['id']}").status_code == 200
    chained = post(svc.url, "/v1/responses", {"model": model, "input": "within", "previous_response_id": first["id"]})
    assert chained.status_code == 200
    # (store: false: a stored response would keep a copy of the item, alive for its own TTL)
    assert post(svc.url, "/v1/responses", {"model": model, "input": [{"id": out}], "store": False}).status_code == 200
    alive_for = time.monotonic() - started
    if url is not None:
        with redis.Redis.from_url(url) as client:
            keys = list(client.scan_iter())
            assert keys
            ttls = {k.decode(): client.pttl(k) for k in keys}
        # Every key carries a TTL: the data keys the store's, the holders of a conversation's items
        # at most one more (they are renewed once per TTL, not at every write: redis_lua.touch_conv).
        limit = {"ix": 2 * TTL_SECS * 1000}
        wrong = {k: t for k, t in ttls.items() if not 0 < t <= limit.get(k.split(":")[1], TTL_SECS * 1000)}
        assert not wrong, wrong
        assert {k.split(":")[1] for k in ttls} >= {"r", "t", "ix", "c", "ci", "cb"}

    if alive_for < TTL_SECS - 0.5:  # (a very slow machine: the checks above ran past the TTL already)
        time.sleep(TTL_SECS - alive_for)
    wait_for(lambda: get(svc.url, f"/v1/responses/{first['id']}").status_code == 404, timeout=20,
             what="the response to expire")
    wait_for(lambda: get(svc.url, f"/v1/conversations/{conv['id']}").status_code == 404, timeout=20,
             what="the conversation to expire")
    calls = len(upstream(mock, model))
    assert error(get(svc.url, f"/v1/responses/{first['id']}/input_items"), 404)["param"] == "response_id"
    assert error(delete(svc.url, f"/v1/responses/{first['id']}"), 404)["param"] == "response_id"
    err = error(post(svc.url, "/v1/responses", {"model": model, "input": "late", "previous_response_id": first["id"]}),
                404)
    assert err["code"] == "previous_response_not_found"
    err = error(post(svc.url, "/v1/responses", {"model": model, "input": "late", "conversation": conv["id"]}), 404)
    assert (err["param"], err["code"]) == ("conversation", "conversation_not_found")
    assert error(post(svc.url, "/v1/responses", {"model": model, "input": [{"id": out}]}), 400)["param"] == "input[0]"
    assert error(post(svc.url, "/v1/responses", {"model": model, "input": [{"id": item}]}), 400)["param"] == "input[0]"
    for path in (f"/v1/conversations/{conv['id']}/items", f"/v1/conversations/{conv['id']}/items/{item}"):
        assert error(get(svc.url, path), 404)["param"] == "conversation_id"
    assert len(upstream(mock, model)) == calls
    # The chained response was stored later and lives its own TTL: chaining from it still needed
    # the expired first turn, which stays exactly as long as that.
    late = chained.json()["id"]
    wait_for(lambda: get(svc.url, f"/v1/responses/{late}").status_code == 404, timeout=20,
             what="the chained response to expire")
    if url is not None:
        with redis.Redis.from_url(url) as client:
            wait_for(lambda: not list(client.scan_iter()), timeout=20, what="Redis to drop every expired key")
