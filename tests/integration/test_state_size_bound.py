"""``RESPONSE_STORE_MAX_OBJECT_BYTES`` bounds every stored object, and what the store could not keep
is refused before the backend is called — never answered and then silently not stored: an input
over the bound by itself, or one its conversation could not take, is a 413 ``object_too_large``
naming ``input`` / ``conversation`` (over HTTP, JSON or SSE, and over a WebSocket); ``store: false``
has no bound; the Conversations API refuses an append over it the same way."""
from __future__ import annotations

import os

import pytest

from tests.state_kit import error, get, post, upstream
from tests.wsclient import open_ws, read_response, send

LIMIT = 64 * 1024  # the smallest the setting takes


@pytest.fixture
def bounded(proxy_factory):
    return proxy_factory(RESPONSE_STORE_MAX_OBJECT_BYTES=str(LIMIT))


@pytest.mark.parametrize("stream", [False, True])
def test_an_input_over_the_bound_is_refused_before_the_backend(bounded, mock, stream):
    model = "big-" + os.urandom(3).hex()
    body = {"model": model, "input": "x" * (LIMIT + 100), "stream": stream}
    err = error(post(bounded.url, "/v1/responses", body), 413)
    assert (err["param"], err["code"], err["type"]) == ("input", "object_too_large", "invalid_request_error")
    assert f"limit of {LIMIT} bytes" in err["message"] and "'store': false" in err["message"]
    assert upstream(mock, model) == []
    r = post(bounded.url, "/v1/responses", {**body, "store": False})  # nothing kept: no bound
    assert r.status_code == 200
    assert len(upstream(mock, model)) == 1


def test_a_conversation_that_could_not_take_the_input_is_refused_before_the_backend(bounded, mock):
    model = "bigconv-" + os.urandom(3).hex()
    conv = post(bounded.url, "/v1/conversations", {"items": [{"role": "user", "content": "y" * (LIMIT - 8000)}]})
    assert conv.status_code == 200
    cid = conv.json()["id"]
    before = get(bounded.url, f"/v1/conversations/{cid}/items").content
    err = error(post(bounded.url, "/v1/responses", {"model": model, "input": "z" * 9000, "conversation": cid}), 413)
    assert (err["param"], err["code"]) == ("conversation", "object_too_large") and cid in err["message"]
    assert upstream(mock, model) == [] and get(bounded.url, f"/v1/conversations/{cid}/items").content == before

    ok = post(bounded.url, "/v1/responses", {"model": model, "input": "short", "conversation": cid})
    assert ok.status_code == 200
    items = get(bounded.url, f"/v1/conversations/{cid}/items", order="asc").json()["data"]
    assert [i["content"][0]["text"] for i in items[1:]] == ["short", "You said: short"]
    err = error(post(bounded.url, f"/v1/conversations/{cid}/items",
                     {"items": [{"role": "user", "content": "w" * 9000}]}), 413)
    assert err["code"] == "object_too_large"
    assert len(get(bounded.url, f"/v1/conversations/{cid}/items").json()["data"]) == 3


def test_over_a_websocket_the_refusal_is_an_error_frame(bounded, mock):
    with open_ws(bounded.url) as ws:
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "x" * (LIMIT + 100)})
        [frame] = read_response(ws)
        assert (frame["status"], frame["error"]["code"], frame["error"]["param"]) == (413, "object_too_large", "input")
        send(ws, {"type": "response.create", "model": "mock-echo", "input": "small"})
        assert read_response(ws)[-1]["type"] == "response.completed"
    assert len(upstream(mock, "mock-echo")) == 1
