"""Background mode through real gunicorn (2 Uvicorn workers) on one SQLite store: polling to
completion and chaining from the result, cancels from the other worker while the backend streams
(the backend sees the disconnect), streams left and resumed from several points, the refusals,
and the caps. SIGKILL, SIGTERM and 50 jobs at once: ``test_background_lifecycle``; two
instances on Redis: ``test_background_redis``."""
from __future__ import annotations

import time
from contextlib import closing

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response

from tests.background_kit import (
    background,
    check_queued_start,
    check_resumed,
    client_on,
    get,
    poll,
    read_some,
    slow_text,
    start,
    stream_events,
    wait_upstream,
    worker_of,
)
from tests.conformance import check_response, check_stream, parse_sse
from tests.conftest import API_KEY
from tests.http import auth, error_of, post


def test_a_background_response_is_polled_to_completion_and_chains(proxy_factory, mock):
    svc = start(proxy_factory)
    text = "poll me " + slow_text(2.0)
    queued = background(svc, {"model": "mock-slow-100", "input": text, "metadata": {"k": "v"}})
    check_response(queued)
    Response.model_validate(queued)
    assert queued["status"] == "queued" and queued["output"] == [] and queued["usage"] is None
    statuses = []
    while (doc := get(svc, queued["id"]))["status"] not in ("completed", "failed"):
        statuses.append(doc["status"])
        time.sleep(0.1)
    assert "in_progress" in statuses, statuses
    final = check_response(doc)
    assert final["status"] == "completed" and final["background"] is True and final["metadata"] == {"k": "v"}
    assert final["output"][0]["content"][0]["text"] == "You said: " + text
    assert final["usage"]["output_tokens"] > 0
    # Any worker finds the same final response.
    with closing(client_on(svc, final["id"], other_than=worker_of(svc, final["id"]))) as other:
        assert other.get(f"/v1/responses/{final['id']}").json() == final
    # Chaining from a finished background response works like from any other.
    r = post(svc.url, {"model": "mock-echo", "input": "and then?", "previous_response_id": final["id"]})
    assert r.status_code == 200, r.text
    sent = mock.requests("mock-echo")[-1]["body"]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", text), ("assistant", "You said: " + text), ("user", "and then?")
    ]


def test_chaining_from_a_running_background_response_is_refused_until_it_ends(proxy_factory, mock):
    """Its output is not there yet: chaining from it would hand the backend the turn without its
    answer. A 400 naming previous_response_id (on either worker, over HTTP and through the
    SDK), nothing sent to the backend; once it has ended, the chain carries its answer."""
    svc = start(proxy_factory)
    text = "wait for me " + slow_text(1.5)
    running = background(svc, {"model": "mock-slow-100", "input": text})
    chained = {"model": "mock-echo", "input": "and then?", "previous_response_id": running["id"]}
    echo_calls = len(mock.requests("mock-echo"))
    r = post(svc.url, chained)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert (err["type"], err["param"], err["code"]) == (
        "invalid_request_error", "previous_response_id", "previous_response_in_progress"
    ), err
    assert running["id"] in err["message"] and "in progress" in err["message"]
    with closing(client_on(svc, running["id"], other_than=worker_of(svc, running["id"]))) as other:
        assert other.post("/v1/responses", json={**chained, "stream": True}).status_code == 400
    client = openai.OpenAI(base_url=svc.url + "/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(**chained)
    assert refused.value.code == "previous_response_in_progress"
    assert len(mock.requests("mock-echo")) == echo_calls  # nothing reached the backend
    final = poll(svc, running["id"])
    assert final["status"] == "completed"
    answer = client.responses.create(**chained)
    assert answer.status == "completed"
    sent = mock.requests("mock-echo")[-1]["body"]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", text), ("assistant", "You said: " + text), ("user", "and then?")
    ]


def test_what_background_mode_refuses(proxy_factory, mock):
    svc = start(proxy_factory)
    r = post(svc.url, {"model": "mock-echo", "input": "x", "background": True, "store": False})
    assert r.status_code == 400 and error_of(r)["param"] == "background"
    plain = post(svc.url, {"model": "mock-echo", "input": "x"}).json()
    for path in (f"/v1/responses/{plain['id']}/cancel",):
        r = httpx.post(svc.url + path, headers=auth(), timeout=10)
        assert r.status_code == 400 and error_of(r)["message"] == "Cannot cancel a synchronous response.", r.text
    r = httpx.get(f"{svc.url}/v1/responses/{plain['id']}", params={"stream": "true"}, headers=auth(), timeout=10)
    assert r.status_code == 400 and "background" in error_of(r)["message"] and error_of(r)["param"] == "stream"
    quiet = background(svc, {"model": "mock-echo", "input": "not streamed"})
    poll(svc, quiet["id"])
    r = httpx.get(f"{svc.url}/v1/responses/{quiet['id']}", params={"stream": "true"}, headers=auth(), timeout=10)
    assert r.status_code == 400 and error_of(r)["param"] == "stream"
    for bad in ("-1", "x", "1.5", "+1", " 1", "1_0", "\u0661"):
        r = httpx.get(
            f"{svc.url}/v1/responses/{quiet['id']}", params={"stream": "true", "starting_after": bad},
            headers=auth(), timeout=10,
        )
        assert r.status_code == 400 and error_of(r)["param"] == "starting_after", bad
    r = httpx.post(f"{svc.url}/v1/responses/resp_{'0' * 32}/cancel", headers=auth(), timeout=10)
    assert r.status_code == 404 and error_of(r)["param"] == "response_id"
    # Another key can neither see, cancel nor stream it: 404, as for any unknown id.
    for call in (
        lambda: httpx.post(f"{svc.url}/v1/responses/{quiet['id']}/cancel", headers=auth("sk-other-key-0000"), timeout=10),
        lambda: httpx.get(f"{svc.url}/v1/responses/{quiet['id']}", params={"stream": "true"},
                          headers=auth("sk-other-key-0000"), timeout=10),
    ):
        assert call().status_code == 404


def test_a_cancel_on_the_other_worker_stops_the_backend_and_answers_cancelled(proxy_factory, mock):
    svc = start(proxy_factory)
    text = slow_text(30)
    job = background(svc, {"model": "mock-slow-100", "input": text})
    wait_upstream(mock, text, ended=False)
    runner = worker_of(svc, job["id"])
    with closing(client_on(svc, job["id"], other_than=runner)) as other:
        asked = time.time()
        r = other.post(f"/v1/responses/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    cancelled = check_response(r.json())
    assert cancelled["status"] == "cancelled" and cancelled["id"] == job["id"]
    record = wait_upstream(mock, text, ended=True, timeout=15)
    assert record["disconnected"] and not record["completed"]
    print(f"cancel to upstream closed: {record['ended_at'] - asked:.3f} s (worker {runner} ran it)")
    assert get(svc, job["id"]) == cancelled
    again = httpx.post(f"{svc.url}/v1/responses/{job['id']}/cancel", headers=auth(), timeout=10)
    assert again.status_code == 200 and again.json() == cancelled  # unchanged
    # One that completed is a 400, as OpenAI answers, and stays as it was (every end state: test_background_cancel).
    done = background(svc, {"model": "mock-echo", "input": "quick"})
    final = poll(svc, done["id"])
    r = httpx.post(f"{svc.url}/v1/responses/{done['id']}/cancel", headers=auth(), timeout=10)
    assert r.status_code == 400 and error_of(r)["message"] == "Cannot cancel a completed response.", r.text
    assert get(svc, done["id"]) == final


def test_a_cancelled_stream_ends_and_its_replay_stops_where_it_was_cancelled(proxy_factory, mock):
    svc = start(proxy_factory)
    text = slow_text(30)
    live = read_some(svc, {"model": "mock-slow-100", "input": text}, 8)
    rid = live[0]["response"]["id"]
    r = httpx.post(f"{svc.url}/v1/responses/{rid}/cancel", headers=auth(), timeout=10)
    assert r.json()["status"] == "cancelled"
    replay = stream_events(svc, rid)  # ends ([DONE]) after the events logged before the cancel
    assert replay[:8] == live
    assert [e["sequence_number"] for e in replay] == list(range(len(replay)))
    assert not any(e["type"] in ("response.completed", "response.failed") for e in replay)


def test_a_stream_left_early_goes_on_and_resumes_from_any_point_on_any_worker(proxy_factory, mock):
    svc = start(proxy_factory, SSE_KEEPALIVE_SECS="1")
    text = "resume " + slow_text(3.0)
    live = read_some(svc, {"model": "mock-slow-100", "input": text}, 6)
    rid = live[0]["response"]["id"]
    # Followed live while it is still generating, from the other worker.
    with closing(client_on(svc, rid, other_than=worker_of(svc, rid))) as other:
        with other.stream("GET", f"/v1/responses/{rid}", params={"stream": "true", "starting_after": 4}) as r:
            assert r.status_code == 200
            following = [orjson.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    final = poll(svc, rid)
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "You said: " + text
    full = stream_events(svc, rid)
    assert check_stream(full) == final
    assert full[:6] == live  # the client saw the same events, with the same sequence numbers
    check_resumed(full, 4, following)
    for after in (0, 1, 5, len(full) // 2, len(full) - 2, len(full) - 1):
        check_resumed(full, after, stream_events(svc, rid, starting_after=after))


def test_a_streamed_background_response_starts_queued_then_in_progress_live_and_in_its_log(proxy_factory, mock):
    """As OpenAI streams a background response: ``response.created`` and ``response.queued`` with the
    Response ``queued``, then ``response.in_progress`` once the job began (a GET then finds it in
    progress), numbered from 0; the log replays the same events, and a resume from 0, 1 or 2 (either
    side of the queued/in_progress boundary) gets exactly the ones after it."""
    svc = start(proxy_factory)
    text = "queued first " + slow_text(3.0)
    rid, raw = None, b""
    with httpx.stream(
        "POST", svc.url + "/v1/responses", json={"model": "mock-slow-100", "input": text, "background": True,
                                                  "stream": True}, headers=auth(), timeout=60,
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_bytes():
            raw += chunk
            _, sep, data = raw.partition(b"event: response.in_progress\ndata: ")
            if rid is None and sep and b"\n" in data:
                rid = orjson.loads(data.split(b"\n", 1)[0])["response"]["id"]
                assert get(svc, rid)["status"] == "in_progress"  # stored before the event was sent
    assert rid is not None
    live = parse_sse(raw)
    check_queued_start(live)
    assert check_stream(live) == poll(svc, rid)
    full = stream_events(svc, rid)
    assert full == live
    for after, first in ((0, "response.queued"), (1, "response.in_progress"), (2, "response.output_item.added")):
        resumed = stream_events(svc, rid, starting_after=after)
        assert resumed[0]["type"] == first and resumed[0]["sequence_number"] == after + 1
        check_resumed(full, after, resumed)


def test_the_key_and_worker_caps_answer_429_and_leave_interactive_requests_alone(proxy_factory, mock):
    svc = start(proxy_factory, BACKGROUND_MAX_PER_KEY="2", BACKGROUND_MAX_PER_WORKER="1")
    long = {"model": "mock-slow-100", "input": slow_text(30)}
    first = background(svc, long)
    # One slot per worker and two workers: of three more jobs (other keys), one at least is refused.
    answers = [
        httpx.post(svc.url + "/v1/responses", json={**long, "background": True}, headers=auth(f"sk-key-{n}-abcdef"),
                   timeout=30)
        for n in range(3)
    ]
    refused = [a for a in answers if a.status_code == 429]
    accepted = [a for a in answers if a.status_code == 200]
    assert len(refused) >= 2 and len(accepted) <= 1, [a.status_code for a in answers]
    for a in refused:
        err = error_of(a)
        assert err["type"] == "rate_limit_error" and "BACKGROUND_MAX_PER_WORKER" in err["message"]
        assert int(a.headers["Retry-After"]) >= 1
    # Interactive requests are served while the background slots are full.
    for _ in range(4):
        assert post(svc.url, {"model": "mock-echo", "input": "still here"}).status_code == 200
    for doc, key in [(first, API_KEY)] + [(a.json(), a.request.headers["authorization"][7:]) for a in accepted]:
        r = httpx.post(f"{svc.url}/v1/responses/{doc['id']}/cancel", headers=auth(key), timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_the_key_cap_counts_across_workers(proxy_factory, mock):
    svc = start(proxy_factory, BACKGROUND_MAX_PER_KEY="2")
    long = {"model": "mock-slow-100", "input": slow_text(30)}
    jobs = [background(svc, long) for _ in range(2)]
    for _ in range(4):  # fresh connections: both workers refuse the key's third job
        r = httpx.post(svc.url + "/v1/responses", json={**long, "background": True}, headers=auth(), timeout=30)
        assert r.status_code == 429, r.text
        assert "BACKGROUND_MAX_PER_KEY" in error_of(r)["message"] and int(r.headers["Retry-After"]) >= 1
    assert background(svc, long, key="sk-another-key-123456")["status"] == "queued"  # its own count
    httpx.post(f"{svc.url}/v1/responses/{jobs[0]['id']}/cancel", headers=auth(), timeout=10)
    again = background(svc, long)  # a cancelled job gave its slot back at once
    for doc in (jobs[1], again):
        httpx.post(f"{svc.url}/v1/responses/{doc['id']}/cancel", headers=auth(), timeout=10)
    assert API_KEY not in svc.log_text()


def test_a_background_response_on_a_conversation_appends_to_it_when_it_ends(proxy_factory, mock):
    svc = start(proxy_factory)
    conv = httpx.post(svc.url + "/v1/conversations", json={"items": [{"role": "user", "content": "earlier"}]},
                      headers=auth(), timeout=10).json()
    job = background(svc, {"model": "mock-echo", "input": "now", "conversation": conv["id"]})
    assert job["conversation"] == {"id": conv["id"]}
    final = poll(svc, job["id"])
    assert final["status"] == "completed"
    items = httpx.get(f"{svc.url}/v1/conversations/{conv['id']}/items", params={"order": "asc"}, headers=auth(),
                      timeout=10).json()["data"]
    texts = [i["content"][0]["text"] for i in items]
    assert texts == ["earlier", "now", "You said: now"]
    sent = mock.requests("mock-echo")[-1]["body"]["messages"]
    assert [m["content"] for m in sent] == ["earlier", "now"]  # the backend saw the conversation first


def test_deleting_a_running_background_response_stops_it(proxy_factory, mock):
    svc = start(proxy_factory)
    text = slow_text(30)
    job = background(svc, {"model": "mock-slow-100", "input": text})
    wait_upstream(mock, text, ended=False)
    r = httpx.delete(f"{svc.url}/v1/responses/{job['id']}", headers=auth(), timeout=10)
    assert r.status_code == 200 and r.json() == {"id": job["id"], "object": "response", "deleted": True}
    assert wait_upstream(mock, text, ended=True, timeout=15)["disconnected"]
    assert httpx.get(f"{svc.url}/v1/responses/{job['id']}", headers=auth(), timeout=10).status_code == 404
