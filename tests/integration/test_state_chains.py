"""``previous_response_id`` chains through real gunicorn (2 workers) and the openai SDK: every turn
lands on the other worker than the turn before (the other one is stopped while it is sent), and
the backend sees the whole chain — every earlier input and output, in order, reasoning replayed,
tool calls answered — then the new input, under the new request's ``instructions`` only.

A streamed answer is stored before its terminal event: a ``GET`` sent the instant the client has
read ``response.completed``, to the *other* worker while the first one is frozen, finds it.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Any

import httpx
import orjson

from tests.conformance import check_response
from tests.faults.helpers import only_worker, wait_workers
from tests.state_kit import KEY_A, auth, error, get, post, request_id, sdk, served_by, state_proxy, upstream
from tests.tap import check_exchanges

__all__ = ["state_proxy"]  # the module's proxy (a fixture)

TOOLS = [{
    "type": "function", "name": "lookup", "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}]


def _call(call_id: str, q: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": q},
                                                                                                     separators=(",", ":"))}}


# One row per turn: the backend's script, the turn's own input, and the chat messages the turn's
# input and output become in every later turn's history (the rules of proxy/translate/messages.py).
TURNS: list[tuple[dict[str, Any], Any, list[dict[str, Any]], list[dict[str, Any]]]] = []


def _turn(script: dict[str, Any], own: Any, as_input: list[dict[str, Any]], as_output: list[dict[str, Any]]) -> None:
    TURNS.append((script, own, as_input, as_output))


_turn({"text": "answer 0"}, "question 0",
      [{"role": "user", "content": "question 0"}], [{"role": "assistant", "content": "answer 0"}])
_turn({"text": "answer 1"}, [{"role": "user", "content": "question 1"}],
      [{"role": "user", "content": "question 1"}], [{"role": "assistant", "content": "answer 1"}])
_turn({"reasoning": "thought 2", "reasoning_field": "reasoning_content", "text": "answer 2"}, "question 2",
      [{"role": "user", "content": "question 2"}],
      [{"role": "assistant", "content": "answer 2", "reasoning_content": "thought 2"}])
_turn({"tool_calls": [{"id": "call_3", "name": "lookup", "arguments": {"q": "three"}}]}, "look up three",
      [{"role": "user", "content": "look up three"}],
      [{"role": "assistant", "content": None, "tool_calls": [_call("call_3", "three")]}])
_turn({"text": "answer 4"}, [{"type": "function_call_output", "call_id": "call_3", "output": "result 3"}],
      [{"role": "tool", "tool_call_id": "call_3", "content": "result 3"}],
      [{"role": "assistant", "content": "answer 4"}])
_turn({"reasoning": "thought 5", "reasoning_field": "reasoning_content",
       "tool_calls": [{"id": "call_5a", "name": "lookup", "arguments": {"q": "five"}},
                      {"id": "call_5b", "name": "lookup", "arguments": {"q": "cinq"}}]}, "look up five twice",
      [{"role": "user", "content": "look up five twice"}],
      [{"role": "assistant", "content": None, "tool_calls": [_call("call_5a", "five"), _call("call_5b", "cinq")],
        "reasoning_content": "thought 5"}])
_turn({"text": "answer 6"}, [{"type": "function_call_output", "call_id": "call_5a", "output": "result 5a"},
                             {"type": "function_call_output", "call_id": "call_5b", "output": "result 5b"}],
      [{"role": "tool", "tool_call_id": "call_5a", "content": "result 5a"},
       {"role": "tool", "tool_call_id": "call_5b", "content": "result 5b"}],
      [{"role": "assistant", "content": "answer 6"}])
for _i in range(7, 12):
    _turn({"text": f"answer {_i}"}, f"question {_i}",
          [{"role": "user", "content": f"question {_i}"}], [{"role": "assistant", "content": f"answer {_i}"}])


def _send(client, model: str, i: int, previous: str | None, rid: str) -> dict[str, Any]:
    """Turn ``i`` through the SDK: JSON on even turns, a stream on odd ones; the final Response."""
    kwargs: dict[str, Any] = dict(
        model=model, input=TURNS[i][1], instructions=f"instructions {i}", tools=TOOLS,
        extra_headers={"X-Request-ID": rid},
    )
    if previous is not None:
        kwargs["previous_response_id"] = previous
    if i % 2 == 0:
        return client.responses.create(**kwargs).model_dump(mode="json")
    with client.responses.stream(**kwargs) as stream:
        return stream.get_final_response().model_dump(mode="json")


def test_a_twelve_turn_chain_alternating_workers_sees_the_whole_history(state_proxy, mock):
    svc = state_proxy
    model = "chain-" + os.urandom(3).hex()
    mock.script(model, *(t[0] for t in TURNS))
    a, b = wait_workers(svc)
    previous: str | None = None
    responses, pids = [], []
    with sdk(svc.url) as (client, tap):
        for i in range(len(TURNS)):
            worker = (a, b)[i % 2]
            rid = request_id(f"chain{i}")
            with only_worker(svc, worker):
                response = _send(client, model, i, previous, rid)
                pids.append(served_by(svc, rid))
            assert response["status"] == "completed", response
            assert response["previous_response_id"] == previous
            assert response["instructions"] == f"instructions {i}"
            responses.append(response)
            previous = response["id"]
        finals = check_exchanges(tap)
        bodies = [ex.response_body for ex in tap.exchanges]
    assert pids == [(a, b)[i % 2] for i in range(len(TURNS))], "consecutive turns must run on different workers"
    assert all(p != q for p, q in zip(pids, pids[1:]))

    sent = upstream(mock, model)
    assert len(sent) == len(TURNS)
    for i, messages in enumerate(sent):
        history = [m for _, _, own, out in TURNS[:i] for m in (*own, *out)]
        expected = [{"role": "system", "content": f"instructions {i}"}, *history, *TURNS[i][2]]
        assert messages == expected, f"turn {i}: the backend saw\n{json.dumps(messages, indent=1)}"
        text = json.dumps(messages)
        assert not any(f"\"instructions {k}\"" in text for k in range(i)), f"turn {i}: earlier instructions carried over"

    assert [i["type"] for i in responses[5]["output"]] == ["reasoning", "function_call", "function_call"]
    assert responses[5]["output"][0]["content"] == [{"type": "reasoning_text", "text": "thought 5"}]
    # Every turn is stored as the client got it: the same bytes for a JSON answer, the terminal
    # event's Response for a stream.
    assert [f["id"] for f in finals] == [r["id"] for r in responses]
    for i, final in enumerate(finals):
        got = get(svc.url, f"/v1/responses/{final['id']}")
        assert got.status_code == 200
        if i % 2 == 0:
            assert got.content == bodies[i]
        assert got.json() == final


def test_a_stream_is_stored_before_its_terminal_event_on_the_other_worker(state_proxy, mock):
    """The client reads ``response.completed`` from worker A; A is frozen at that instant; a GET
    and a chained turn sent then reach worker B and find the response."""
    svc = state_proxy
    model = "early-" + os.urandom(3).hex()
    mock.script(model, {"chunks": ["one ", "two ", "three"], "delay": 0.05}, {"text": "next"})
    a, b = wait_workers(svc)
    completed: dict[str, Any] | None = None
    with contextlib.ExitStack() as cleanup:
        with only_worker(svc, a):
            stream = cleanup.enter_context(httpx.stream(
                "POST", svc.url + "/v1/responses", headers=auth(),
                json={"model": model, "input": "count", "stream": True}, timeout=30,
            ))
        assert stream.status_code == 200
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("data: ") and '"response.completed"' in line:
                completed = orjson.loads(line[6:])["response"]
                os.kill(a, signal.SIGSTOP)  # nothing more from A until the checks are done
                cleanup.callback(os.kill, a, signal.SIGCONT)
                break
        assert completed is not None, "no response.completed event"
        check_response(completed)
        rid_get, rid_next = request_id("early-get"), request_id("early-next")
        got = httpx.get(svc.url + f"/v1/responses/{completed['id']}",
                        headers={**auth(), "X-Request-ID": rid_get}, timeout=30)
        assert got.status_code == 200, got.text
        assert got.json() == completed
        chained = post(svc.url, "/v1/responses", {"model": model, "input": "and then?",
                                                  "previous_response_id": completed["id"]},
                       **{"X-Request-ID": rid_next})
        assert chained.status_code == 200, chained.text
        assert served_by(svc, rid_get) == b and served_by(svc, rid_next) == b
        os.kill(a, signal.SIGCONT)
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    assert upstream(mock, model)[1][-3:] == [
        {"role": "user", "content": "count"}, {"role": "assistant", "content": "one two three"},
        {"role": "user", "content": "and then?"},
    ]


def test_chaining_from_an_unknown_or_malformed_id(state_proxy, mock):
    svc = state_proxy
    for bad in ("resp_" + "0" * 32, "not-an-id", "x" * 5000):
        err = error(post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "x", "previous_response_id": bad}),
                    404)
        assert err == {"message": f"Previous response with id '{bad[:256]}' not found.",
                       "type": "invalid_request_error", "param": "previous_response_id",
                       "code": "previous_response_not_found"}
    err = error(post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "x", "previous_response_id": 7}), 400)
    assert err["param"] == "previous_response_id"
    assert mock.requests() == [], "nothing reaches the backend for a chain that is not there"
    assert KEY_A not in svc.log_text()
