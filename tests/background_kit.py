"""Helpers of the background-mode integration tests: which worker runs a job, a connection to the
other worker, polling, SSE reading and slow backend answers. Everything real: the proxy's own
log lines (each carries its worker's pid), keep-alive connections (one connection, one worker)."""
from __future__ import annotations

import re
import time
from typing import Any

import httpx
import orjson

from proxy.devtools import Service
from tests.conformance import check_stream, parse_sse
from tests.conftest import API_KEY
from tests.faults.helpers import only_worker, worker_pids
from tests.http import auth, wait_for

FINAL = ("completed", "incomplete", "failed", "cancelled")
_STARTED = re.compile(r"\[(\d+)\] proxy\.background: background_started: response_id=(\S+)")
_SERVED = re.compile(r"\[(\d+)\] proxy\.metrics: request_completed: .*request_id=(\S+)")


def start(proxy_factory, **env: str) -> Service:
    """A proxy for these tests: a short graceful timeout, so that stopping it never waits for a
    job a test left running (it ends failed at shutdown, as documented)."""
    return proxy_factory(**{"GRACEFUL_TIMEOUT_SECS": "2", **env})


def slow_text(seconds: float, delay_ms: int = 100) -> str:
    """An input the ``mock-slow-<delay_ms>`` model echoes in 4-character deltas for ``seconds``."""
    return "x" * int(seconds * 1000 / delay_ms * 4)


def background(proxy: Service, body: dict[str, Any], *, key: str = API_KEY) -> dict[str, Any]:
    """POST a background request; the queued (or in_progress) Response it is answered with."""
    r = httpx.post(proxy.url + "/v1/responses", json={**body, "background": True}, headers=auth(key), timeout=30)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["background"] is True and doc["status"] in ("queued", "in_progress"), doc["status"]
    return doc


def get(proxy: Service, response_id: str, *, key: str = API_KEY) -> dict[str, Any]:
    r = httpx.get(f"{proxy.url}/v1/responses/{response_id}", headers=auth(key), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def poll(proxy: Service, response_id: str, *, timeout: float = 60, key: str = API_KEY) -> dict[str, Any]:
    """GET until the response is final; the final Response."""
    return wait_for(
        lambda: (doc := get(proxy, response_id, key=key))["status"] in FINAL and doc,
        timeout=timeout, interval=0.2, what=f"{response_id} to finish",
    )


def worker_of(proxy: Service, response_id: str, timeout: float = 15) -> int:
    """The pid of the worker running ``response_id`` (its ``background_started`` log line)."""

    def find() -> int | None:
        for pid, rid in _STARTED.findall(proxy.log_text()):
            if rid == response_id:
                return int(pid)
        return None

    return wait_for(find, timeout=timeout, what=f"the worker of {response_id}")


def served_by(proxy: Service, request_id: str, timeout: float = 15) -> int:
    def find() -> int | None:
        for pid, rid in _SERVED.findall(proxy.log_text()):
            if rid == request_id:
                return int(pid)
        return None

    return wait_for(find, timeout=timeout, what=f"the log line of {request_id}")


def client_on(proxy: Service, response_id: str, *, other_than: int) -> httpx.Client:
    """A keep-alive client whose connection is served by a worker other than ``other_than``.

    ``other_than`` is stopped (SIGSTOP) while the connection is opened and its first request (a
    GET of the response, named by its request id in the log) is served, so another worker accepts
    it; probing new connections until one lands elsewhere failed on a loaded machine, where one
    worker can win 40 accepts in a row."""
    others = [pid for pid in worker_pids(proxy) if pid != other_than]
    assert others, f"no worker other than {other_than}"
    client = httpx.Client(base_url=proxy.url, headers=auth(API_KEY), timeout=30)
    request_id = f"req_probe_{response_id[-8:]}"
    with only_worker(proxy, others[0]):
        r = client.get(f"/v1/responses/{response_id}", headers={"X-Request-ID": request_id})
    assert r.status_code == 200, r.text
    assert served_by(proxy, request_id) != other_than
    return client


def stream_events(proxy: Service, response_id: str, starting_after: int | None = None) -> list[dict[str, Any]]:
    """``GET …?stream=true[&starting_after=N]`` read to its end: the events (``[DONE]`` checked)."""
    params: dict[str, Any] = {"stream": "true"}
    if starting_after is not None:
        params["starting_after"] = starting_after
    with httpx.stream(
        "GET", f"{proxy.url}/v1/responses/{response_id}", params=params, headers=auth(API_KEY), timeout=60
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.read()
        return parse_sse(r.read())


def read_logged(proxy: Service, response_id: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events of a running job's replay (``GET …?stream=true``, then leave):
    returns once the store's log holds them. The creating client's live view runs up to one
    store write ahead of the log (``proxy/background/feed.py``), so a test that kills the worker
    and then compares the replay with what that client saw must first wait for this."""
    with httpx.stream(
        "GET", f"{proxy.url}/v1/responses/{response_id}", params={"stream": "true"}, headers=auth(API_KEY), timeout=60
    ) as r:
        return _first_events(r, count)


def read_some(proxy: Service, body: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """POST a streamed background request, read ``count`` events, then leave (close the connection)."""
    with httpx.stream(
        "POST", proxy.url + "/v1/responses", json={**body, "background": True, "stream": True},
        headers=auth(API_KEY), timeout=60,
    ) as r:
        return _first_events(r, count)


def _first_events(r: httpx.Response, count: int) -> list[dict[str, Any]]:
    """An SSE answer's first ``count`` events (the caller then leaves: closes the connection)."""
    assert r.status_code == 200, r.read()
    events: list[dict[str, Any]] = []
    for line in r.iter_lines():
        if line.startswith("data: {"):
            events.append(orjson.loads(line[6:]))
            if len(events) == count:
                break
    return events


QUEUED_START = ("response.created", "response.queued", "response.in_progress", "response.output_item.added")


def check_queued_start(events: list[dict[str, Any]]) -> None:
    """A streamed background response starts as OpenAI's does: created and queued with the Response
    ``queued``, then in_progress (the same Response, ``in_progress``), then its first item."""
    assert tuple(e["type"] for e in events[:4]) == QUEUED_START, [e["type"] for e in events[:5]]
    assert [e["sequence_number"] for e in events[:4]] == [0, 1, 2, 3]
    created, queued, in_progress = (e["response"] for e in events[:3])
    assert created == queued == dict(in_progress, status="queued") and in_progress["status"] == "in_progress"


def check_resumed(full: list[dict[str, Any]], after: int, resumed: list[dict[str, Any]]) -> None:
    """A resumed stream is exactly the original's events after ``after``, and the two together
    are one valid stream."""
    assert resumed == full[after + 1 :], f"resumed after {after}: {[e['sequence_number'] for e in resumed][:5]}…"
    check_stream(full[: after + 1] + resumed)


def upstream_record(mock_requests: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The mock's record of the chat request whose last user message is ``text``."""
    for record in mock_requests:
        body = record.get("body") or {}
        messages = body.get("messages") or []
        if messages and messages[-1].get("content") == text:
            return record
    raise AssertionError("the backend never got that request")


def wait_upstream(mock, text: str, *, ended: bool, timeout: float = 30) -> dict[str, Any]:
    """Wait until the backend got the request (and, with ``ended``, until it ended)."""

    def find() -> dict[str, Any] | None:
        try:
            record = upstream_record(mock.requests(), text)
        except AssertionError:
            return None
        return record if not ended or record["ended_at"] is not None else None

    return wait_for(find, timeout=timeout, interval=0.1, what="the backend's record")


def since(start: float) -> float:
    return time.time() - start
