"""The kinds of request the deployment tests' load sends (``tests/deploy/load.py`` sends them).

A kind is a function ``(client, base_url, request_id) -> (status, ok, detail)``;
adding one is one function and one entry in ``KINDS``. ``Chain`` is one with
state: each client thread keeps its own chain of ``previous_response_id``
turns going, and the kind records every attempt (``ChainTurn``) so a test can
tell which instance served a turn and which one served its predecessor.

Slow answers come from the mock backend: ``mock-slow-<ms>`` streams its echo
with that delay between chunks (a non-streamed call to it is answered at once),
and ``SLOW_JSON`` is a scripted model whose JSON answer waits before its first
byte; ``script_mock`` queues that script (the session's mock is reset by other
tests, so each test that sends ``KINDS`` calls it first).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.conftest import API_KEY
from tests.faults.helpers import split_sse, terminal_problems
from tests.mock_client import MockControl

Result = tuple[int | None, bool, str]
Kind = Callable[[httpx.Client, str, str], Result]

# mock-slow-150 streams "You said: <input>" in 4-character deltas, 150 ms apart:
# this input makes streams of ~11 chunks, about 1.6 s.
STREAM_INPUT = "keep streaming through the restart"
SLOW_JSON = "deploy-slow-json"
SLOW_JSON_TEXT = "a slower JSON answer"
SLOW_JSON_SCRIPT = {"text": SLOW_JSON_TEXT, "first_byte_delay": 1.0}


def script_mock(mock: MockControl) -> None:
    """Queue the script ``SLOW_JSON`` answers with (it stays until the mock is reset)."""
    mock.script(SLOW_JSON, SLOW_JSON_SCRIPT, replace=True)


def headers(request_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "X-Request-ID": request_id}


def http_error(status: int, raw: bytes) -> str:
    """What an error answer says, or that it is not OpenAI-shaped (itself a defect)."""
    try:
        err = orjson.loads(raw)["error"]
        assert {"message", "type", "param", "code"} <= set(err)
        return f"http {status} {err['code'] or err['type']}"
    except Exception:
        return f"http {status} NOT OpenAI-shaped: {raw[:200]!r}"


def json_turn(model: str, text: str = "hello", expect: str | None = None) -> Kind:
    """A JSON answer; with ``expect``, its text must be that (a scripted model really was scripted)."""

    def run(client: httpx.Client, base: str, request_id: str) -> Result:
        r = client.post(base + "/v1/responses", json={"model": model, "input": text}, headers=headers(request_id))
        if r.status_code != 200:
            return r.status_code, False, http_error(r.status_code, r.content)
        doc = r.json()
        if doc.get("object") != "response" or doc.get("status") != "completed":
            return r.status_code, False, f"response status {doc.get('status')!r}"
        said = doc["output"][0]["content"][0]["text"]
        if expect is not None and said != expect:
            return r.status_code, False, f"answer {said!r}, expected {expect!r}"
        return r.status_code, True, ""

    return run


def _stream(client: httpx.Client, base: str, request_id: str, body: dict[str, Any]) -> tuple[int, list[dict], str]:
    """Stream a turn: (status, events, what is wrong with it: "" when it completed cleanly)."""
    with client.stream("POST", base + "/v1/responses", json={**body, "stream": True}, headers=headers(request_id)) as r:
        raw = r.read()
    if r.status_code != 200:
        return r.status_code, [], http_error(r.status_code, raw)
    events, _, done = split_sse(raw)
    problems = terminal_problems(events, done)
    if not problems and events[-1]["type"] != "response.completed":
        problems = [f"ended with {events[-1]['type']}"]
    return r.status_code, events, "; ".join(problems)


def stream_turn(model: str, text: str = STREAM_INPUT) -> Kind:
    def run(client: httpx.Client, base: str, request_id: str) -> Result:
        status, _, problem = _stream(client, base, request_id, {"model": model, "input": text})
        return status, not problem, problem

    return run


@dataclass(frozen=True)
class ChainTurn:
    """One attempt at the next turn of a thread's chain."""

    chain: str                       # the client thread's name
    turn: int                        # 0: the chain's first request (no previous_response_id)
    request_id: str
    previous_request_id: str | None  # the request that created the predecessor
    response_id: str | None          # the new response, when it succeeded
    detail: str                      # why it failed ("" when it succeeded)

    @property
    def ok(self) -> bool:
        return self.response_id is not None


@dataclass
class _Link:
    """Where one thread's chain stands: its last response, and what that turn cost in input."""

    turn: int = 0
    response_id: str | None = None
    request_id: str | None = None
    input_tokens: int = 0


@dataclass
class Chain:
    """Chained streamed turns: each thread sends its next turn with the last response it got as
    ``previous_response_id`` (stored responses: the instances must share a store).

    A turn that failed is sent again, from the same predecessor, the next time the thread
    comes to this kind: the client's retry. A turn is right only if the proxy read its
    predecessor's chain: ``previous_response_id`` echoed, and more input tokens than the
    predecessor had (the mock counts the characters of the messages it was sent).
    """

    # ~0.6 s per turn ("You said: turn N" in 4-character deltas, 120 ms apart); its own model,
    # so a test can find chain turns among the mock's records.
    model: str = "mock-slow-120"
    turns: list[ChainTurn] = field(default_factory=list)
    _links: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, client: httpx.Client, base: str, request_id: str) -> Result:
        link: _Link = getattr(self._links, "link", None) or _Link()
        self._links.link = link
        body: dict[str, Any] = {"model": self.model, "input": f"turn {link.turn}"}
        if link.response_id:
            body["previous_response_id"] = link.response_id
        try:
            status, events, problem = _stream(client, base, request_id, body)
        except httpx.HTTPError as exc:
            self._record(link, request_id, None, f"{type(exc).__name__}: {exc}")
            raise  # the Load records it as any other transport failure
        response = events[-1]["response"] if not problem else {}
        problem = problem or self._misread(response, link)
        self._record(link, request_id, None if problem else response["id"], problem)
        if not problem:
            link.turn += 1
            link.response_id, link.request_id = response["id"], request_id
            link.input_tokens = response["usage"]["input_tokens"]
        return status, not problem, problem

    @staticmethod
    def _misread(response: dict[str, Any], link: _Link) -> str:
        """What says the proxy did not read this turn's predecessor ("" when it did)."""
        if response.get("previous_response_id") != link.response_id:
            return f"previous_response_id {response.get('previous_response_id')!r}, sent {link.response_id!r}"
        if link.response_id and response["usage"]["input_tokens"] <= link.input_tokens:
            return f"input_tokens {response['usage']['input_tokens']} <= the predecessor's {link.input_tokens}"
        return ""

    def _record(self, link: _Link, request_id: str, response_id: str | None, detail: str) -> None:
        turn = ChainTurn(threading.current_thread().name, link.turn, request_id, link.request_id, response_id, detail)
        with self._lock:
            self.turns.append(turn)

    def turns_of(self, prefix: str) -> list[ChainTurn]:
        """The turns of one load (``KINDS`` is shared: each load's request ids have their own prefix)."""
        with self._lock:
            return [t for t in self.turns if t.request_id.startswith(prefix + "-")]


CHAIN = Chain()
# JSON answered at once; JSON that takes ~1 s and streams of ~1.6 s (so some are in flight at any
# moment); chained streamed turns of ~0.6 s (the fleet's instances share one Redis store).
KINDS: dict[str, Kind] = {
    "json": json_turn("mock-echo"),
    "slow_json": json_turn(SLOW_JSON, "a slow one", expect=SLOW_JSON_TEXT),
    "stream": stream_turn("mock-slow-150"),
    "chain": CHAIN,
}
