"""Reading a request body (``proxy.resources.responses._read_body``) and the worker's sweep that
bounds a stalled one (``proxy.stalled.RequestWatch``), over ASGI events: what the gunicorn tests in
``tests/faults/test_limits.py`` show end to end, here case by case."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import falcon.asgi
import pytest

from proxy.errors import ProxyError
from proxy.resources.responses import _read_body
from proxy.resources.scope import RequestScope
from proxy.stalled import BODY_STALLED, RequestWatch

LIMIT = 1000


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": "/v1/responses",
        "raw_path": b"/v1/responses", "query_string": b"", "root_path": "", "headers": headers,
        "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
    }


def _read(first: dict, later: list[dict], *, length: int | None, stalled_after: int | None = None) -> bytes | None:
    """``_read_body`` of a request whose first event is ``first`` (Falcon's) and whose later
    ``receive()`` calls return ``later`` in turn; ``stalled_after``: the sweep flags it then."""
    headers = [(b"content-length", str(length).encode())] if length is not None else [(b"transfer-encoding", b"chunked")]
    scope = _scope(headers)
    events = iter(later)
    calls = 0

    async def receive() -> dict:
        nonlocal calls
        calls += 1
        if stalled_after is not None and calls > stalled_after:
            scope[BODY_STALLED] = True
        try:
            return next(events)
        except StopIteration:
            raise AssertionError("read past the body's last event") from None

    async def run() -> bytes | None:
        req = falcon.asgi.Request(scope, receive, first_event=first)
        return await _read_body(req, RequestScope(receive), LIMIT, 5.0)

    return asyncio.run(run())


def _body(data: bytes, more: bool = False) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


DISCONNECT = {"type": "http.disconnect"}


def test_falcon_keeps_the_first_event_where_the_read_takes_it():
    """The fast path takes the event Falcon read before routing from ``Request._first_event``."""
    first = _body(b"{}")
    req = falcon.asgi.Request(_scope([]), None, first_event=first)  # type: ignore[arg-type]
    assert req._first_event is first


def test_a_body_in_its_first_event_is_taken_without_awaiting_anything():
    assert _read(_body(b'{"a": 1}'), [], length=8) == b'{"a": 1}'
    assert _read(_body(b'{"a": 1}'), [], length=None) == b'{"a": 1}'


def test_a_body_in_several_events_is_joined():
    assert _read(_body(b"ab", True), [_body(b"", True), _body(b"cd", True), _body(b"e")], length=5) == b"abcde"
    assert _read(_body(b"ab", True), [_body(b"cd")], length=None) == b"abcd"


def test_a_chunked_body_cut_after_a_whole_chunk_is_none():
    """Falcon's stream ends a chunked body at a disconnect as at its end; the read tells them apart."""
    assert _read(_body(b"{}", True), [DISCONNECT], length=None) is None
    assert _read(_body(b"", True), [_body(b"{}", True), DISCONNECT], length=None) is None


def test_a_body_short_of_its_content_length_is_none():
    assert _read(_body(b"{", True), [DISCONNECT], length=2) is None


def test_a_chunked_body_over_the_limit_is_413_as_it_comes():
    with pytest.raises(ProxyError) as refused:
        _read(_body(b"a" * 600, True), [_body(b"a" * 600, True)], length=None)
    assert refused.value.status == 413
    with pytest.raises(ProxyError) as refused:
        _read(_body(b"a" * (LIMIT + 1)), [], length=None)
    assert refused.value.status == 413


def test_a_body_flagged_stalled_is_408_with_connection_close():
    with pytest.raises(ProxyError) as refused:
        _read(_body(b"{", True), [_body(b"", True)], length=20, stalled_after=0)
    assert refused.value.status == 408 and refused.value.code == "request_timeout"
    assert refused.value.headers == {"Connection": "close"}


def test_a_body_that_ends_with_the_wake_is_served():
    """The sweep flagged it, but the rest came with the event that woke it: a whole body."""
    assert _read(_body(b"{", True), [_body(b"}")], length=2, stalled_after=0) == b"{}"


# ---------------------------------------------------------------------------------------- RequestWatch


class _Cycle:
    """The part of uvicorn's ``RequestResponseCycle`` the sweep reads (hashed by identity, as it is)."""

    def __init__(self, *, more_body: bool = True, response_started: bool = False, response_complete: bool = False,
                 disconnected: bool = False) -> None:
        self.more_body = more_body
        self.response_started = response_started
        self.response_complete = response_complete
        self.disconnected = disconnected
        self.scope: dict[str, Any] = {}
        self.message_event = asyncio.Event()




def test_the_sweep_flags_a_body_incomplete_for_the_timeout_and_wakes_it():
    reading = _Cycle()
    watch = RequestWatch([SimpleNamespace(cycle=reading)], timeout_secs=10)
    watch.sweep(100.0)  # first seen
    watch.sweep(109.9)
    assert BODY_STALLED not in reading.scope and not reading.message_event.is_set()
    watch.sweep(110.0)
    assert reading.scope[BODY_STALLED] is True and reading.message_event.is_set()


def test_the_sweep_leaves_whole_bodies_answers_websockets_and_the_gone_alone():
    others = [
        _Cycle(more_body=False), _Cycle(response_started=True), _Cycle(disconnected=True),
    ]
    connections = [SimpleNamespace(cycle=c) for c in others] + [SimpleNamespace(cycle=None), SimpleNamespace()]
    watch = RequestWatch(connections, timeout_secs=1)
    for now in (0.0, 5.0, 10.0):
        watch.sweep(now)
    assert all(not c.scope and not c.message_event.is_set() for c in others)


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_connection_whose_answered_request_body_never_ends_is_closed_after_the_timeout():
    """Answered before its body came (a 415, a 404), kept alive, the body dripping: closed once it
    has been due for the timeout since the answer, never while the answer is still going out."""
    answered = _Cycle()
    streaming = _Cycle(response_started=True)
    done = SimpleNamespace(cycle=answered, transport=_Transport())
    going = SimpleNamespace(cycle=streaming, transport=_Transport())
    watch = RequestWatch([done, going], timeout_secs=10)
    watch.sweep(0.0)  # reading, unanswered
    answered.response_started = answered.response_complete = True
    watch.sweep(9.0)  # answered: its own clock starts
    watch.sweep(18.9)
    assert not done.transport.closed
    watch.sweep(19.0)
    assert done.transport.closed and BODY_STALLED not in answered.scope and not answered.message_event.is_set()
    watch.sweep(40.0)
    assert not going.transport.closed and not streaming.scope


def test_a_request_forgets_its_first_sighting_once_its_body_is_whole():
    """A keep-alive connection's next request is a new cycle; one whose body completed between
    sweeps is dropped from the sweep's memory, so it never holds a finished request."""
    cycle = _Cycle()
    watch = RequestWatch([SimpleNamespace(cycle=cycle)], timeout_secs=10)
    watch.sweep(0.0)
    cycle.more_body = False
    watch.sweep(5.0)
    cycle.more_body = True  # (as if it were reading again)
    watch.sweep(12.0)  # seen anew at 12, not since 0
    assert BODY_STALLED not in cycle.scope
    watch.sweep(22.0)
    assert cycle.scope[BODY_STALLED] is True


def test_the_sweep_interval_is_a_quarter_of_the_timeout_within_bounds():
    assert RequestWatch([], 60).interval == 1.0
    assert RequestWatch([], 2).interval == 0.5
    assert RequestWatch([], 0.1).interval == 0.1


class _Awaiting:
    """A connection as the head sweep sees it: what ``head_wait`` answers, and its time-outs."""

    def __init__(self, wait: tuple[object, bool] | None) -> None:
        self.wait = wait
        self.timed_out: list[tuple[float, float]] = []

    def head_wait(self) -> tuple[object, bool] | None:
        return self.wait

    def time_out_head(self, timeout_secs: float, waited_secs: float) -> None:
        self.timed_out.append((timeout_secs, waited_secs))


def test_the_sweep_times_out_a_head_awaited_for_the_timeout():
    fresh, partial, busy = _Awaiting((None, False)), _Awaiting((None, True)), _Awaiting(None)
    watch = RequestWatch([fresh, partial, busy], timeout_secs=10)
    watch.sweep(100.0)
    watch.sweep(109.9)
    assert not fresh.timed_out and not partial.timed_out
    watch.sweep(110.5)
    assert fresh.timed_out == [(10, 10.5)] and partial.timed_out == [(10, 10.5)] and not busy.timed_out


def test_a_head_after_another_request_is_timed_from_when_it_was_first_seen():
    """A connection that served a request between two sweeps awaits another head: its clock restarts."""
    connection = _Awaiting((None, False))
    watch = RequestWatch([connection], timeout_secs=10)
    watch.sweep(0.0)
    connection.wait = (object(), True)  # a request came and was answered; the next head has begun
    watch.sweep(8.0)
    watch.sweep(15.0)
    assert not connection.timed_out
    watch.sweep(18.0)
    assert connection.timed_out == [(10, 10.0)]
