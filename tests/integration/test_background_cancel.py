"""Cancel and stream-again answered as OpenAI answers them, through real gunicorn (2 workers) and
the openai SDK: a cancel on every end state and on responses that were not background ones, a
cancel racing the job's own end on the other worker (SQLite and Redis), a cancel while the job's
event log is busy (the replay holds every event the live client got), and the edge values of
``GET …?stream=true&starting_after=N``.

What OpenAI answers a cancel of a response that already ended (public reports; the SDK's docstring
only says that background responses can be cancelled): ``cancelled`` again is idempotent, the same
Response; ``completed``, ``failed`` or ``incomplete`` is a 400 ``Cannot cancel a completed
response.`` (failed, incomplete); one created without ``background`` is a 400 ``Cannot cancel a
synchronous response.``; a stream of one created without ``background`` is a 400 naming
``stream``."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.background_kit import (
    background,
    client_on,
    get,
    poll,
    slow_text,
    start,
    stream_events,
    wait_upstream,
    worker_of,
)
from tests.conformance import TERMINAL_TYPES, check_response, check_stream, parse_sse
from tests.conftest import API_KEY
from tests.faults.helpers import worker_pids
from tests.http import auth, error_of, post
from tests.redis_server import RedisServer

SYNCHRONOUS = "Cannot cancel a synchronous response."
NOT_BACKGROUND_STREAM = "This response cannot be streamed because it was not created with background=true."


def refusal(r: httpx.Response, message: str, param: str) -> None:
    assert r.status_code == 400, r.text
    assert error_of(r) == {"message": message, "type": "invalid_request_error", "param": param, "code": None}


def test_a_cancel_of_an_ended_or_foreground_response_answers_as_openai(proxy_factory, mock):
    svc = start(proxy_factory)
    client = openai.OpenAI(base_url=svc.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    mock.script("mock-bg-incomplete", {"text": "cut short here", "finish_reason": "length"})
    ended = {
        "completed": background(svc, {"model": "mock-echo", "input": "quick"}),
        "failed": background(svc, {"model": "mock-error-500", "input": "fails"}),
        "incomplete": background(svc, {"model": "mock-bg-incomplete", "input": "cut"}),
    }
    for status, job in ended.items():
        final = poll(svc, job["id"])
        assert final["status"] == status, final
        article = "an" if status == "incomplete" else "a"
        message = f"Cannot cancel {article} {status} response."
        # On either worker, raw and through the SDK: the same 400, and the response is left as it was.
        with closing(client_on(svc, job["id"], other_than=worker_of(svc, job["id"]))) as other:
            refusal(other.post(f"/v1/responses/{job['id']}/cancel"), message, "response_id")
        refusal(httpx.post(f"{svc.url}/v1/responses/{job['id']}/cancel", headers=auth(), timeout=10), message,
                "response_id")
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.cancel(job["id"])
        assert caught.value.status_code == 400 and caught.value.message.endswith(message)
        assert get(svc, job["id"]) == final

    # A cancelled one: cancelling it again is idempotent, from either worker, raw and through the SDK.
    text = slow_text(30)
    running = background(svc, {"model": "mock-slow-100", "input": text})
    wait_upstream(mock, text, ended=False)
    with closing(client_on(svc, running["id"], other_than=worker_of(svc, running["id"]))) as other:
        r = other.post(f"/v1/responses/{running['id']}/cancel")
        assert r.status_code == 200, r.text
        first = check_response(r.json())
        assert first["status"] == "cancelled" and first == get(svc, running["id"])
        for _ in range(2):
            again = other.post(f"/v1/responses/{running['id']}/cancel")
            assert again.status_code == 200 and again.json() == first
        again = httpx.post(f"{svc.url}/v1/responses/{running['id']}/cancel", headers=auth(), timeout=10)
        assert again.status_code == 200 and again.json() == first
    assert client.responses.cancel(running["id"]).status == "cancelled"
    assert get(svc, running["id"]) == first

    # Not created with background: a stored one is a 400 saying so; one never stored (store: false) is unknown.
    plain = client.responses.create(model="mock-echo", input="in the foreground")
    refusal(httpx.post(f"{svc.url}/v1/responses/{plain.id}/cancel", headers=auth(), timeout=10), SYNCHRONOUS,
            "response_id")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(plain.id)
    assert caught.value.message.endswith(SYNCHRONOUS)
    unstored = client.responses.create(model="mock-echo", input="not kept", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel(unstored.id)
    assert client.responses.retrieve(plain.id).status == "completed"


# ---------------------------------------------------------------------------------------- the race


@pytest.fixture(params=["sqlite", "redis"])
def racing(request, proxy_factory) -> Iterator[Any]:
    """One instance (2 workers) on SQLite, or on a Redis of its own."""
    with ExitStack() as stack:
        env = {"BACKGROUND_MAX_PER_KEY": "100"}
        if request.param == "redis":
            server = stack.enter_context(RedisServer())
            env["RESPONSE_STORE_URL"] = f"redis://127.0.0.1:{server.port}/0"
        yield start(proxy_factory, **env)


def _live(svc, body: dict[str, Any], out: dict[str, Any]) -> None:
    """POST a streamed background request and read it to its end (in a thread): its bytes, and
    when its first event arrived."""
    with httpx.stream(
        "POST", svc.url + "/v1/responses", json={**body, "background": True, "stream": True}, headers=auth(),
        timeout=60,
    ) as r:
        raw = b""
        for chunk in r.iter_bytes():
            if not raw:
                out["t0"] = time.monotonic()
            raw += chunk
            if "id" not in out and b"\n\n" in raw:
                out["id"] = orjson.loads(raw.split(b"data: ", 1)[1].split(b"\n", 1)[0])["response"]["id"]
                out["ready"].set()
        out["raw"] = raw
        out["t_end"] = time.monotonic()


def _run_live(svc, body: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {"ready": threading.Event()}
    thread = threading.Thread(target=_live, args=(svc, body, out), daemon=True)
    thread.start()
    assert out["ready"].wait(30), "the streamed background request never started"
    return thread, out


def test_a_cancel_racing_the_jobs_end_on_the_other_worker_leaves_one_end_everywhere(racing, mock):
    """The job completes while a cancel arrives on the other worker. Whichever came first is the
    end everywhere: a cancel that won answers the Response ``cancelled``, and the GET on both
    workers, the stream replayed from the store and the creator's live stream agree (no terminal
    event, the replay exactly what the live client saw, the same events with the same sequence
    numbers); a cancel that lost answers the 400
    ``Cannot cancel a completed response.``, and the GETs, the replay and the live stream all end
    ``completed`` with the one ``response.completed``. Cancels are swept across the job's end
    (timed from a first uncancelled run), so both outcomes happen and many land close to it."""
    svc = racing
    body = {"model": "mock-slow-20", "input": "race " + slow_text(0.6, 20)}
    pids = worker_pids(svc)
    assert len(pids) == 2, pids
    clients = {}  # a keep-alive connection to each worker (its first GET names a response of its own)
    for pid, other in (pids, pids[::-1]):
        seed = post(svc.url, {"model": "mock-echo", "input": f"seed {pid}"}).json()["id"]
        clients[pid] = client_on(svc, seed, other_than=other)
    try:
        thread, calibration = _run_live(svc, body)
        thread.join(60)
        duration = calibration["t_end"] - calibration["t0"]
        assert check_stream(parse_sse(calibration["raw"]))["status"] == "completed"
        outcomes: list[str] = []
        # Two early, a dozen from 93% to 106% of the way to the end (1.2% apart: about 9 ms), one late.
        for fraction in (0.6, 0.8, *(0.93 + 0.012 * k for k in range(12)), 1.3):
            offset = duration * fraction
            thread, live = _run_live(svc, body)
            rid = live["id"]
            other = clients[next(pid for pid in pids if pid != worker_of(svc, rid))]
            time.sleep(max(0.0, live["t0"] + offset - time.monotonic()))
            answer = other.post(f"/v1/responses/{rid}/cancel")
            thread.join(60)
            assert not thread.is_alive(), "the live stream did not end"
            outcomes.append(_check_one_end(svc, clients, rid, answer, parse_sse(live["raw"])))
        print(f"job {duration * 1000:.0f} ms; outcomes by offset: {outcomes}")
        assert "cancelled" in outcomes and "completed" in outcomes, outcomes
    finally:
        for c in clients.values():
            c.close()


def test_a_cancel_mid_burst_replays_every_event_the_live_client_saw(racing, mock):
    """A backend streaming a delta every millisecond keeps the job's event log busy: most of the
    time a batch is in flight and more wait behind it, already streamed live. A cancel from the
    other worker then wins against events the creator has but the log has not yet; the replay
    must still hold the same events with the same sequence numbers (before: it missed them)."""
    svc = racing
    body = {"model": "mock-slow-1", "input": "burst " + slow_text(3, 1)}
    for _ in range(4):
        thread, live = _run_live(svc, body)
        rid = live["id"]
        with closing(client_on(svc, rid, other_than=worker_of(svc, rid))) as other:
            time.sleep(max(0.0, live["t0"] + 0.4 - time.monotonic()))
            answer = other.post(f"/v1/responses/{rid}/cancel")
            thread.join(60)
            assert not thread.is_alive(), "the live stream did not end"
            assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text[:200]
            events = parse_sse(live["raw"])
            assert not [e for e in events if e["type"] in TERMINAL_TYPES]
            replay = stream_events(svc, rid)
            assert replay == events, (len(replay), len(events))
            assert get(svc, rid)["status"] == "cancelled"


def _check_one_end(svc, clients, rid: str, answer: httpx.Response, live: list[dict[str, Any]]) -> str:
    docs = [c.get(f"/v1/responses/{rid}").json() for c in clients.values()]
    assert docs[0] == docs[1], "the two workers disagree"
    final = check_response(docs[0])
    replay = stream_events(svc, rid)
    assert [e["sequence_number"] for e in replay] == list(range(len(replay)))
    if answer.status_code == 200:
        assert answer.json() == final and final["status"] == "cancelled", (answer.text[:200], final["status"])
        assert not [e["type"] for e in replay + live if e["type"] in TERMINAL_TYPES]
        assert replay == live, (len(replay), len(live))
        print(f"cancelled: replay {len(replay)} events, live {len(live)}")
        return "cancelled"
    refusal(answer, "Cannot cancel a completed response.", "response_id")
    assert final["status"] == "completed" and final["output"], final["status"]
    assert replay == live and check_stream(replay) == final
    return "completed"


# ------------------------------------------------------------------------------ stream again, edges


def test_stream_again_edge_values(proxy_factory, mock):
    svc = start(proxy_factory)
    with httpx.stream(
        "POST", svc.url + "/v1/responses", json={"model": "mock-echo", "input": "edges", "background": True,
                                                  "stream": True}, headers=auth(), timeout=30,
    ) as r:
        full = parse_sse(r.read())
    rid = full[0]["response"]["id"]
    assert check_stream(full) == poll(svc, rid)
    last = full[-1]["sequence_number"]

    def again(response_id: str, after: str) -> httpx.Response:
        return httpx.get(f"{svc.url}/v1/responses/{response_id}", params={"stream": "true", "starting_after": after},
                         headers=auth(), timeout=30)

    # At or past the last event, however far past: nothing more, and the stream ends cleanly.
    for after in (str(last), str(last + 1), "1000000", str(2**63), "9" * 40):
        r = again(rid, after)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), (after, r.text)
        assert parse_sse(r.content) == [], after
    assert stream_events(svc, rid, starting_after=last - 1) == full[-1:]
    # Not a sequence number: a 400 naming starting_after, whatever the response.
    plain = post(svc.url, {"model": "mock-echo", "input": "foreground"}).json()
    for response_id in (rid, plain["id"]):
        for bad in ("-1", "-0", "x", "1.5", "1e3", "+1", " 1", "0x10", "\u0661"):
            r = again(response_id, bad)
            assert r.status_code == 400 and error_of(r)["param"] == "starting_after", (bad, r.text)
    # A stored response created without background: a 400 naming stream, with or without starting_after.
    for params in ({"stream": "true"}, {"stream": "true", "starting_after": "0"}, {"stream": "true",
                                                                                  "starting_after": "99"}):
        r = httpx.get(f"{svc.url}/v1/responses/{plain['id']}", params=params, headers=auth(), timeout=10)
        refusal(r, NOT_BACKGROUND_STREAM, "stream")
    client = openai.OpenAI(base_url=svc.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as caught:
        list(client.responses.retrieve(plain["id"], stream=True, starting_after=0))
    assert caught.value.body["param"] == "stream"
    assert list(client.responses.retrieve(rid, stream=True, starting_after=2**63)) == []
    # One never stored (store: false) is unknown; a background one created without stream names stream.
    unstored = post(svc.url, {"model": "mock-echo", "input": "x", "store": False}).json()
    r = again(unstored["id"], "0")
    assert r.status_code == 404 and error_of(r)["param"] == "response_id"
    quiet = background(svc, {"model": "mock-echo", "input": "not streamed"})
    poll(svc, quiet["id"])
    r = again(quiet["id"], "0")
    assert r.status_code == 400 and error_of(r)["param"] == "stream"
