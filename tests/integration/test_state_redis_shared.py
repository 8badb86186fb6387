"""Two proxy instances (each gunicorn with 2 workers) on one Redis: a chain whose turns alternate
between them sees its whole history at every turn; the turn sent right after the terminal event,
to the other instance, finds what the first stored (read-your-writes); conversations and stored
responses are one set for both."""
from __future__ import annotations

import os
from typing import Any

import orjson

from tests.state_kit import HTTP, auth, get, post, redis_db, upstream

__all__ = ["redis_db"]


def test_turns_alternating_between_two_instances_on_one_redis(proxy_factory, mock, redis_db):
    one = proxy_factory(RESPONSE_STORE_URL=redis_db)
    two = proxy_factory(RESPONSE_STORE_URL=redis_db)
    model = "shared-" + os.urandom(3).hex()
    mock.script(model, *({"text": f"answer {i}"} for i in range(10)))
    previous: str | None = None
    for i in range(10):
        here = (one, two)[i % 2]
        body: dict[str, Any] = {"model": model, "input": f"question {i}", "instructions": f"turn {i}"}
        if previous:
            body["previous_response_id"] = previous
        if i % 4 in (0, 1):
            r = post(here.url, "/v1/responses", body)
            assert r.status_code == 200, r.text
            previous = r.json()["id"]
            continue
        # A stream: the next request leaves for the other instance the moment response.completed
        # is read, before this stream has ended.
        with HTTP.stream("POST", here.url + "/v1/responses", json={**body, "stream": True}, headers=auth()) as s:
            lines = s.iter_lines()
            final = next(orjson.loads(line[6:])["response"] for line in lines
                         if line.startswith("data: ") and '"response.completed"' in line)
            there = (two, one)[i % 2]
            assert get(there.url, f"/v1/responses/{final['id']}").json() == final
            probe = post(there.url, "/v1/responses", {"model": "mock-echo", "input": "probe", "store": False,
                                                      "previous_response_id": final["id"]})
            assert probe.status_code == 200, probe.text
            assert upstream(mock, "mock-echo")[-1][-2:] == [{"role": "assistant", "content": f"answer {i}"},
                                                            {"role": "user", "content": "probe"}]
            previous = final["id"]
            assert [line for line in lines if line][-1] == "data: [DONE]"
    sent = upstream(mock, model)
    assert len(sent) == 10
    for i, messages in enumerate(sent):
        history = [m for k in range(i) for m in ({"role": "user", "content": f"question {k}"},
                                                 {"role": "assistant", "content": f"answer {k}"})]
        assert messages == [{"role": "system", "content": f"turn {i}"}, *history,
                            {"role": "user", "content": f"question {i}"}], f"turn {i}"


def test_conversations_and_deletes_are_shared_by_both_instances(proxy_factory, mock, redis_db):
    one = proxy_factory(RESPONSE_STORE_URL=redis_db)
    two = proxy_factory(RESPONSE_STORE_URL=redis_db)
    conv = post(one.url, "/v1/conversations", {"items": [{"role": "user", "content": "shared"}]}).json()
    r = post(two.url, "/v1/responses", {"model": "mock-echo", "input": "via two", "conversation": conv["id"]})
    assert r.status_code == 200
    items = get(one.url, f"/v1/conversations/{conv['id']}/items", order="asc").json()["data"]
    assert [i["content"][0]["text"] for i in items] == ["shared", "via two", "You said: via two"]
    assert upstream(mock, "mock-echo")[-1] == [{"role": "user", "content": "shared"},
                                               {"role": "user", "content": "via two"}]
    rid = r.json()["id"]
    assert get(one.url, f"/v1/responses/{rid}").content == r.content
    assert HTTP.delete(one.url + f"/v1/responses/{rid}", headers=auth()).status_code == 200
    assert get(two.url, f"/v1/responses/{rid}").status_code == 404
    assert HTTP.delete(two.url + f"/v1/conversations/{conv['id']}", headers=auth()).status_code == 200
    assert get(one.url, f"/v1/conversations/{conv['id']}").status_code == 404
