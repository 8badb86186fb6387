"""The openai SDK as the client of background mode: ``create(background=True)`` polled with
``retrieve``, ``cancel``, a streamed one left early and resumed with ``retrieve(stream=True,
starting_after=N)`` (the server sends the events after N) and with the ``responses.stream(
response_id=…, starting_after=…)`` helper (it asks for them all and skips the first ones itself).
Every byte it received goes through a recording tap and is validated: each Response with
``check_response``, each stream with ``check_stream`` (a resumed one joined to the original's
events before it, which it must continue exactly)."""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import openai
import pytest
from openai.types.responses import (
    ResponseCreatedEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseQueuedEvent,
)

from tests.background_kit import check_resumed, slow_text, start
from tests.conformance import check_response, check_stream, parse_sse
from tests.conftest import API_KEY
from tests.tap import RecordingTap


@pytest.fixture
def sdk(proxy_factory):
    svc = start(proxy_factory)
    with RecordingTap(svc.url) as tap:
        with openai.OpenAI(base_url=tap.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60) as client:
            yield client, tap


def validate(tap: RecordingTap) -> dict[str, int]:
    """Every exchange the SDK had, validated; how many of each kind there were."""
    full: dict[str, list[dict]] = {}
    resumed: list[tuple[str, int, list[dict]]] = []
    kinds = {"json": 0, "stream": 0, "resumed": 0}
    for ex in tap.exchanges:
        assert ex.done.wait(60), ex.path
        assert ex.status == 200, (ex.path, ex.status, ex.response_body[:300])
        if not ex.response_headers["content-type"].startswith("text/event-stream"):
            check_response(json.loads(ex.response_body))
            kinds["json"] += 1
            continue
        events = parse_sse(ex.response_body)
        query = parse_qs(urlsplit(ex.path).query)
        if ex.method == "POST" or "starting_after" not in query:
            check_stream(events)
            full[events[0]["response"]["id"]] = events
            kinds["stream"] += 1
        else:
            rid = urlsplit(ex.path).path.rsplit("/", 1)[-1]
            resumed.append((rid, int(query["starting_after"][0]), events))
    for rid, after, events in resumed:
        check_resumed(full[rid], after, events)
        kinds["resumed"] += 1
    return kinds


def test_background_polled_with_retrieve_and_cancelled(sdk, mock):
    client, tap = sdk
    text = "sdk " + slow_text(1.5)
    r = client.responses.create(model="mock-slow-100", input=text, background=True)
    assert r.status == "queued" and r.background is True
    while r.status in ("queued", "in_progress"):
        time.sleep(0.2)
        r = client.responses.retrieve(r.id)
    assert r.status == "completed" and r.output_text == "You said: " + text and r.usage.output_tokens > 0

    long = client.responses.create(model="mock-slow-100", input=slow_text(30), background=True)
    cancelled = client.responses.cancel(long.id)
    assert cancelled.status == "cancelled" and cancelled.id == long.id
    assert client.responses.retrieve(long.id).status == "cancelled"
    assert client.responses.cancel(long.id).status == "cancelled"  # unchanged
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mock-echo", input="x", background=True, store=False)
    assert caught.value.body["param"] == "background"
    plain = client.responses.create(model="mock-echo", input="not in background")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)
    tap.exchanges = [ex for ex in tap.exchanges if ex.status == 200]  # (the refusals were checked above)
    assert validate(tap)["json"] >= 6


def test_a_streamed_background_response_left_and_resumed(sdk, mock):
    client, tap = sdk
    text = "stream " + slow_text(3.0)
    stream = client.responses.create(model="mock-slow-100", input=text, background=True, stream=True)
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 6:
            break
    stream.close()  # the client leaves; the generation goes on
    rid = seen[0].response.id
    assert seen[0].response.background is True
    # Started as OpenAI starts a background response, parsed into the SDK's own event types.
    assert [type(e) for e in seen[:4]] == [
        ResponseCreatedEvent, ResponseQueuedEvent, ResponseInProgressEvent, ResponseOutputItemAddedEvent
    ]
    assert [e.response.status for e in seen[:3]] == ["queued", "queued", "in_progress"]

    resumed = list(client.responses.retrieve(rid, stream=True, starting_after=seen[-1].sequence_number))
    assert [e.sequence_number for e in resumed] == list(range(6, 6 + len(resumed)))
    assert resumed[-1].type == "response.completed"
    assert resumed[-1].response.output_text == "You said: " + text

    with client.responses.stream(response_id=rid, starting_after=2) as helper:
        numbers = [event.sequence_number for event in helper]
        final = helper.get_final_response()
    assert numbers == list(range(3, 6 + len(resumed)))
    assert final.output_text == "You said: " + text

    everything = list(client.responses.retrieve(rid, stream=True))
    assert [e.sequence_number for e in everything] == list(range(6 + len(resumed)))
    types = [e.type for e in everything]
    assert types[:4] == ["response.created", "response.queued", "response.in_progress", "response.output_item.added"]
    for after in (0, 1, 2):  # resumed either side of the queued/in_progress boundary
        again = list(client.responses.retrieve(rid, stream=True, starting_after=after))
        assert [e.type for e in again] == types[after + 1 :]
        assert [e.sequence_number for e in again] == list(range(after + 1, len(types)))
    # The helper asks for the whole stream (it needs every event to build the final Response) and
    # drops the ones up to starting_after itself; retrieve(stream=True, starting_after=N) asks the server.
    paths = [ex.path for ex in tap.exchanges if ex.method == "GET"]
    assert paths[0].endswith("starting_after=5&stream=true") and paths[1].endswith("?stream=true"), paths
    kinds = validate(tap)
    assert kinds["stream"] == 3 and kinds["resumed"] == 4  # the POST and two whole replays; four resumes
