"""The SQLite store survives a full restart of the service: gunicorn stopped (SIGTERM, every
worker gone), a new one started on the same file — a different port, new workers — serves the
same stored responses byte for byte, their input items and conversations, and chains from them."""
from __future__ import annotations

import os

from tests.faults.helpers import worker_pids
from tests.state_kit import get, post, upstream


def test_a_new_service_on_the_same_file_serves_and_chains_what_the_old_one_stored(proxy_factory, mock, tmp_path):
    store = tmp_path / "kept.sqlite3"
    env = {"RESPONSE_STORE_URL": f"sqlite:///{store}"}
    model = "restart-" + os.urandom(3).hex()
    mock.script(model, *({"text": f"answer {i}"} for i in range(4)))
    old = proxy_factory(**env)
    old_workers = set(worker_pids(old))
    ids, raws, previous = [], [], None
    for i in range(3):
        body = {"model": model, "input": f"question {i}", **({"previous_response_id": previous} if previous else {})}
        r = post(old.url, "/v1/responses", body)
        assert r.status_code == 200
        previous = r.json()["id"]
        ids.append(previous)
        raws.append(r.content)
    conv = post(old.url, "/v1/conversations", {"items": [{"role": "user", "content": "remember me"}],
                                               "metadata": {"n": "1"}}).json()
    paths = [f"/v1/responses/{ids[1]}/input_items", f"/v1/conversations/{conv['id']}",
             f"/v1/conversations/{conv['id']}/items"]
    before = [get(old.url, p).content for p in paths]
    assert old.stop() == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in old_workers), "every old worker must be gone"

    new = proxy_factory(**env)
    assert new.port != old.port and not set(worker_pids(new)) & old_workers
    assert [get(new.url, f"/v1/responses/{rid}").content for rid in ids] == raws
    assert [get(new.url, p).content for p in paths] == before
    r = post(new.url, "/v1/responses", {"model": model, "input": "question 3", "previous_response_id": ids[-1]})
    assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == "answer 3"
    assert upstream(mock, model)[-1] == [
        m for i in range(3) for m in ({"role": "user", "content": f"question {i}"},
                                      {"role": "assistant", "content": f"answer {i}"})
    ] + [{"role": "user", "content": "question 3"}]
    joined = post(new.url, "/v1/responses", {"model": "mock-echo", "input": "still here?", "conversation": conv["id"]})
    assert joined.status_code == 200
    assert upstream(mock, "mock-echo")[-1][0] == {"role": "user", "content": "remember me"}
