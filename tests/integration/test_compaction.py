"""Compaction through the real process tree: ``client.responses.compact()``, the compacted item
fed back, and Codex's ``compaction_trigger`` over HTTP (JSON and SSE) and over a WebSocket.

The mock answers the proxy's compaction prompt with ``Summary of N earlier messages. The
user asked: …`` (``proxy/mock/__init__.py``); every answer is validated
(``tests/conformance_ws.py``: ``CompactedResponse``, and a trigger's stream and Response).
"""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from proxy.translate.compaction import DEFAULT_PROMPT, SUMMARY_HEADING
from tests.clients.helpers import check_chat_request
from tests.conformance import check_response, parse_sse
from tests.conformance_ws import check_compacted, check_final_trigger_response, check_trigger_stream, check_ws_stream
from tests.conftest import API_KEY
from tests.http import error_of, post
from tests.state_kit import redis_db, sdk
from tests.wsclient import open_ws, read_response, send

__all__ = ["redis_db"]

TOOL = {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}
CONVERSATION = [
    {"type": "message", "role": "user", "content": "Fix the failing test in calc.py."},
    {"type": "function_call", "call_id": "call_1", "name": "read_file", "arguments": '{"path": "calc.py"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "OLD-TOOL-OUTPUT def add(a, b): return a - b"},
    {"type": "message", "role": "assistant", "content": "OLD-ANSWER add() subtracts; I will fix it."},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Also add a docstring."}]},
]
SUMMARY = "Summary of 5 earlier messages. The user asked: Fix the failing test in calc.py. / Also add a docstring."


def _summary_request(body: dict) -> None:
    """What the summarizing call must look like upstream: the conversation, the prompt last, no tools."""
    check_chat_request(body)
    assert "tools" not in body and "tool_choice" not in body, body.keys()
    assert body["stream"] is False
    assert body["messages"][-1] == {"role": "user", "content": DEFAULT_PROMPT}
    text = json.dumps(body["messages"])
    assert "OLD-TOOL-OUTPUT" in text and "OLD-ANSWER" in text  # the whole history is summarized


def _sees_summary_not_history(body: dict) -> None:
    text = json.dumps(body["messages"])
    assert SUMMARY_HEADING + SUMMARY in [m.get("content") for m in body["messages"]], body["messages"]
    assert "OLD-TOOL-OUTPUT" not in text and "OLD-ANSWER" not in text, "the replaced history reached the backend"


def test_sdk_compact_and_the_compacted_item_fed_back(proxy, mock):
    model = "cmp-sdk"
    mock.script(model, {"text": "Done: add() fixed, docstring added."})
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=0)
    raw = client.responses.with_raw_response.compact(model=model, input=CONVERSATION, instructions="You are a coder.")
    compacted = check_compacted(json.loads(raw.text))
    parsed = raw.parse()
    assert parsed.object == "response.compaction" and parsed.output[-1].type == "compaction"
    assert [m["content"][0]["text"] for m in compacted["output"][:-1]] == [
        "Fix the failing test in calc.py.", "Also add a docstring.",
    ]
    (summarizing,) = [r["body"] for r in mock.requests(model)]
    _summary_request(summarizing)
    assert summarizing["messages"][0] == {"role": "system", "content": "You are a coder."}
    assert compacted["usage"]["input_tokens"] > 0 and compacted["usage"]["output_tokens"] > 0

    # The compacted conversation goes on: the backend gets the summary in place of the history.
    follow = client.responses.with_raw_response.create(
        model=model, input=[*compacted["output"], {"role": "user", "content": "Anything left?"}]
    )
    assert check_response(json.loads(follow.text))["status"] == "completed"
    body = mock.requests(model)[-1]["body"]
    check_chat_request(body)
    _sees_summary_not_history(body)
    assert [m["role"] for m in body["messages"]] == ["user", "user", "user", "user"]
    assert body["messages"][-1]["content"] == "Anything left?"


PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_compact_keeps_an_image_message_as_a_valid_listed_item(proxy, mock):
    """A user message whose image part left out ``detail`` (OpenAI's default ``auto``) comes back
    in ``output`` as the SDK's ``ResponseInputMessageItem``, which requires it; the reasoning item
    and the tool calls around it are summarized, not kept."""
    conversation = [
        {"role": "user", "content": [{"type": "input_text", "text": "What is in this picture?"},
                                     {"type": "input_image", "image_url": PIXEL}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "OLD-REASONING"}]},
        *CONVERSATION[1:3],
        {"role": "user", "content": [{"type": "input_image", "image_url": PIXEL, "detail": "low"}]},
    ]
    r = post(proxy.url, {"model": "cmp-image", "input": conversation}, path="/v1/responses/compact")
    assert r.status_code == 200, r.text
    *messages, _ = check_compacted(r.json())["output"]
    assert [[p.get("detail") for p in m["content"] if p["type"] == "input_image"] for m in messages] == [
        ["auto"], ["low"]
    ]
    (summarizing,) = [r["body"] for r in mock.requests("cmp-image")]
    assert "OLD-TOOL-OUTPUT" in json.dumps(summarizing["messages"])
    # Fed back, the listed messages are input like any other.
    r = post(proxy.url, {"model": "cmp-image", "input": [*r.json()["output"], {"role": "user", "content": "Go on."}]})
    assert r.status_code == 200, r.text


def test_compaction_trigger_over_http_json_and_sse(proxy, mock):
    model = "cmp-trigger"
    body = {"model": model, "input": [*CONVERSATION, {"type": "compaction_trigger"}], "tools": [TOOL],
            "store": False, "include": ["reasoning.encrypted_content"]}
    r = post(proxy.url, body)
    assert r.status_code == 200, r.text
    final = r.json()
    check_final_trigger_response(final)
    assert final["tools"][0]["name"] == "read_file"  # the request's tools are echoed, not offered upstream

    with httpx.stream("POST", proxy.url + "/v1/responses", json={**body, "stream": True},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
        streamed = check_trigger_stream(parse_sse(s.read()))
    for upstream in (r["body"] for r in mock.requests(model)):
        _summary_request(upstream)
    # The item it returned replaces the history on the next turn.
    r = post(proxy.url, {"model": model, "input": [{"role": "user", "content": "Fix the failing test in calc.py."},
                                                   streamed["output"][0], {"role": "user", "content": "Go on."}]})
    assert r.status_code == 200, r.text
    _sees_summary_not_history(mock.requests(model)[-1]["body"])


def test_compaction_trigger_over_http_stands_on_the_store(proxy, mock):
    """A trigger request naming stored state (``previous_response_id``, an ``item_reference``) is
    answered from it, as any request is: not with the stateless refusal of a proxy without a store."""
    model = "cmp-chained"
    mock.script(model, {"text": "OLD-ANSWER add() subtracts."})
    first = post(proxy.url, {"model": model, "input": CONVERSATION[:3], "tools": [TOOL]})
    assert first.status_code == 200, first.text
    first = first.json()
    trigger = {"type": "compaction_trigger"}
    r = post(proxy.url, {"model": model, "previous_response_id": first["id"], "tools": [TOOL],
                         "input": [CONVERSATION[4], trigger]})
    assert r.status_code == 200, r.text
    check_final_trigger_response(r.json())
    assert r.json()["previous_response_id"] == first["id"]
    r = post(proxy.url, {"model": model, "input": [{"type": "item_reference", "id": first["output"][0]["id"]},
                                                   CONVERSATION[4], trigger]})
    assert r.status_code == 200, r.text
    check_final_trigger_response(r.json())
    chained, referenced = (r["body"] for r in mock.requests(model)[1:])
    _summary_request(chained)  # the stored history is what is summarized
    assert "OLD-ANSWER" in json.dumps(referenced["messages"])
    r = post(proxy.url, {"model": model, "previous_response_id": "resp_unknown", "input": [trigger]})
    assert r.status_code == 404 and error_of(r)["code"] == "previous_response_not_found", r.text


def test_compaction_trigger_over_a_websocket_chains(proxy, mock):
    model = "cmp-ws"
    mock.script(model, {"text": "OLD-ANSWER add() subtracts."}, {"text": "fixed"})
    with open_ws(proxy.url) as ws:
        send(ws, {"type": "response.create", "model": model, "input": CONVERSATION[:3], "tools": [TOOL], "store": False})
        first = check_ws_stream(read_response(ws))
        send(ws, {"type": "response.create", "model": model, "previous_response_id": first["id"], "tools": [TOOL],
                  "store": False, "input": [CONVERSATION[4], {"type": "compaction_trigger"}]})
        compacted = check_trigger_stream(read_response(ws))
        assert compacted["previous_response_id"] == first["id"]
        send(ws, {"type": "response.create", "model": model, "previous_response_id": compacted["id"], "store": False,
                  "input": [{"role": "user", "content": "Go on."}]})
        assert check_ws_stream(read_response(ws))["status"] == "completed"
    summarizing, after = (r["body"] for r in mock.requests(model)[1:])
    assert "tools" not in summarizing and summarizing["messages"][-1]["content"] == DEFAULT_PROMPT
    assert "OLD-TOOL-OUTPUT" in json.dumps(summarizing["messages"])
    _sees_summary_not_history(after)
    assert [m["content"] for m in after["messages"][:2]] == ["Fix the failing test in calc.py.", "Also add a docstring."]


def test_compaction_refusals(proxy, mock):
    foreign = {"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAAAAB-openai-sealed"}
    r = post(proxy.url, {"model": "cmp-bad", "input": [foreign, {"role": "user", "content": "x"}]})
    assert r.status_code == 400 and error_of(r)["param"] == "input[0].encrypted_content", r.text
    assert error_of(r)["code"] == "invalid_encrypted_content"
    r = post(proxy.url, {"model": "cmp-bad", "input": [{"type": "compaction_trigger"}, {"role": "user", "content": "x"}]})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_compaction_trigger", r.text
    r = post(proxy.url, {"model": "cmp-bad", "previous_response_id": "resp_unknown"}, path="/v1/responses/compact")
    assert r.status_code == 404 and error_of(r)["code"] == "previous_response_not_found", r.text
    r = post(proxy.url, {"model": "cmp-bad"}, path="/v1/responses/compact")
    assert r.status_code == 400 and error_of(r)["param"] == "input", r.text
    r = post(proxy.url, {"model": "cmp-bad", "input": "x"}, path="/v1/responses/compact", key=None)
    assert r.status_code == 401, r.text
    assert mock.requests("cmp-bad") == []
    # The backend failing the summary is answered like any request failing before its first byte.
    mock.script("compaction:cmp-down", {"status": 503})
    r = post(proxy.url, {"model": "cmp-down", "input": "x"}, path="/v1/responses/compact")
    assert r.status_code == 502 and error_of(r)["type"] == "server_error", r.text
    mock.script("compaction:cmp-empty", {"text": ""})
    r = post(proxy.url, {"model": "cmp-empty", "input": [*CONVERSATION[:1], {"type": "compaction_trigger"}], "stream": True})
    assert r.status_code == 502 and error_of(r)["code"] == "empty_summary", r.text


def test_the_compaction_prompt_is_a_setting(proxy_factory, mock):
    service = proxy_factory(COMPACTION_PROMPT="Summarize in one line.")
    mock.script("cmp-prompt", {"text": "one line"})
    r = post(service.url, {"model": "cmp-prompt", "input": "hello"}, path="/responses/compact")
    assert r.status_code == 200, r.text
    check_compacted(r.json())
    (body,) = [r["body"] for r in mock.requests("cmp-prompt")]
    assert body["messages"][-1] == {"role": "user", "content": "Summarize in one line."}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_stored_trigger_response_is_kept_and_chains_on_the_compacted_conversation(proxy_factory, mock, request, backend):
    """A trigger request with ``store`` at its default is stored like any response, over HTTP (JSON
    and SSE) and over a WebSocket: ``GET`` answers what the client got, ``input_items`` lists its
    own input (the trigger is no item), and chaining from it — or from a response built on it —
    stands on the conversation compacted: the backend gets exactly what sending the user messages
    and the compaction item explicitly gives it, the summary, never the replaced history. With
    ``store: false`` nothing is kept (404s)."""
    url = request.getfixturevalue("redis_db") if backend == "redis" else None
    svc = proxy_factory(**({"RESPONSE_STORE_URL": url} if url else {}))
    model = "cmp-stored-" + backend
    mock.script(model, {"text": "OLD-ANSWER add() subtracts."}, *[{"text": f"go {i}"} for i in range(6)])
    trigger = {"type": "compaction_trigger"}
    first = post(svc.url, {"model": model, "input": CONVERSATION[:3], "tools": [TOOL]}).json()
    r = post(svc.url, {"model": model, "previous_response_id": first["id"], "tools": [TOOL],
                       "input": [CONVERSATION[4], trigger]})
    assert r.status_code == 200, r.text
    compacted = r.json()
    check_final_trigger_response(compacted)
    got = httpx.get(f"{svc.url}/v1/responses/{compacted['id']}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert got.status_code == 200 and got.content == r.content
    with sdk(svc.url) as (client, _):
        own = client.responses.input_items.list(compacted["id"]).data
        assert [(i.type, i.role, i.content[0].text) for i in own] == [("message", "user", "Also add a docstring.")]
        assert client.responses.retrieve(compacted["id"]).output[0].type == "compaction"

    def sent() -> dict:
        return mock.requests(model)[-1]["body"]

    chained = post(svc.url, {"model": model, "previous_response_id": compacted["id"], "input": "Go on."})
    assert chained.status_code == 200, chained.text
    via_chain = sent()["messages"]
    window = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
              for text in ("Fix the failing test in calc.py.", "Also add a docstring.")]
    explicit = post(svc.url, {"model": model, "store": False,
                              "input": [*window, compacted["output"][0], {"role": "user", "content": "Go on."}]})
    assert explicit.status_code == 200, explicit.text
    assert via_chain == sent()["messages"], "chaining differs from sending the compacted conversation"
    _sees_summary_not_history(sent())
    assert [m["role"] for m in via_chain] == ["user"] * 4 and via_chain[2]["content"].startswith(SUMMARY_HEADING)
    # A response built on it stands on the compacted conversation too, then on its own turn.
    later = post(svc.url, {"model": model, "previous_response_id": chained.json()["id"], "input": "And then?"})
    assert later.status_code == 200, later.text
    assert sent()["messages"] == [*via_chain, {"role": "assistant", "content": "go 0"},
                                  {"role": "user", "content": "And then?"}]

    # SSE: the terminal event's response is the one stored, and chained from.
    with httpx.stream("POST", svc.url + "/v1/responses", json={"model": model, "stream": True, "input": [
            *CONVERSATION, trigger]}, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as s:
        streamed = check_trigger_stream(parse_sse(s.read()))
    got = httpx.get(f"{svc.url}/v1/responses/{streamed['id']}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert got.status_code == 200 and got.json() == streamed
    r = post(svc.url, {"model": model, "previous_response_id": streamed["id"], "input": "Go on."})
    assert r.status_code == 200, r.text
    assert sent()["messages"] == via_chain[:2] + [{"role": "user", "content": SUMMARY_HEADING + SUMMARY}] + via_chain[3:]

    # WebSocket: stored too, so another connection (or HTTP) chains from it.
    with open_ws(svc.url) as ws:
        send(ws, {"type": "response.create", "model": model, "input": [*CONVERSATION, trigger]})
        over_ws = check_trigger_stream(read_response(ws))
    r = post(svc.url, {"model": model, "previous_response_id": over_ws["id"], "input": "Go on."})
    assert r.status_code == 200, r.text
    assert sent()["messages"][2] == {"role": "user", "content": SUMMARY_HEADING + SUMMARY}

    # store: false keeps nothing: not retrievable, nothing to chain from.
    r = post(svc.url, {"model": model, "store": False, "input": [*CONVERSATION, trigger]})
    assert r.status_code == 200, r.text
    unstored = r.json()["id"]
    got = httpx.get(f"{svc.url}/v1/responses/{unstored}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert got.status_code == 404, got.text
    r = post(svc.url, {"model": model, "previous_response_id": unstored, "input": "Go on."})
    assert r.status_code == 404 and error_of(r)["code"] == "previous_response_not_found", r.text
