"""``item_reference`` input items through real gunicorn and the openai SDK: an explicit
``{"type": "item_reference", "id"}`` or the SDK's typeless ``{"id"}`` stands for a stored item —
of a response's input or output, or of a conversation — in place, for the backend and in what
the new response keeps; a reference that is unknown or another key's is a 400 naming it."""
from __future__ import annotations

import os

import openai
import pytest

from tests.state_kit import KEY_B, error, get, post, redis_db, sdk, state_proxy, upstream
from tests.wsclient import open_ws, read_response, send

__all__ = ["redis_db", "state_proxy"]


def test_references_to_a_responses_input_and_output_and_a_conversations_items(state_proxy, mock):
    svc = state_proxy
    model = "ref-" + os.urandom(3).hex()
    mock.script(model, {"text": "stored answer"}, {"text": "answer with references"})
    with sdk(svc.url) as (client, _):
        stored = client.responses.create(model=model, input=[
            {"role": "user", "content": "stored question one"},
            {"role": "user", "content": "stored question two"},
        ])
        own = [i.id for i in client.responses.input_items.list(stored.id, order="asc")]
        conv = client.conversations.create(items=[{"type": "message", "role": "user", "content": "from a conversation"}])
        conv_item = client.conversations.items.list(conv.id).data[0].id
        answer = client.responses.create(model=model, input=[
            {"type": "item_reference", "id": own[1]},
            {"id": stored.output[0].id},  # the SDK's typeless reference
            {"type": "item_reference", "id": conv_item},
            {"role": "user", "content": "and now?"},
        ])
        listed = client.responses.input_items.list(answer.id, order="asc").data
    assert answer.output_text == "answer with references"
    assert upstream(mock, model)[1] == [
        {"role": "user", "content": "stored question two"},
        {"role": "assistant", "content": "stored answer"},
        {"role": "user", "content": "from a conversation"},
        {"role": "user", "content": "and now?"},
    ]
    # The new response keeps the items themselves, not the references.
    assert [i.id for i in listed[:3]] == [own[1], stored.output[0].id, conv_item]
    assert listed[1].type == "message" and listed[1].role == "assistant"
    assert listed[1].content[0].text == "stored answer"
    assert listed[3].type == "message" and listed[3].id not in (own[0], own[1])


def test_a_reference_in_a_chained_request_is_resolved_too(state_proxy, mock):
    svc = state_proxy
    model = "refchain-" + os.urandom(3).hex()
    mock.script(model, {"text": "a1"}, {"text": "a2"})
    first = post(svc.url, "/v1/responses", {"model": model, "input": "q1"}).json()
    second = post(svc.url, "/v1/responses", {"model": model, "previous_response_id": first["id"], "input": [
        {"type": "item_reference", "id": first["output"][0]["id"]}, {"role": "user", "content": "q2"}]})
    assert second.status_code == 200, second.text
    assert upstream(mock, model)[1] == [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
    ]


@pytest.mark.parametrize("reference", ["unknown", "foreign", "empty"])
def test_an_unknown_or_foreign_reference_is_a_400_naming_it(state_proxy, mock, reference):
    svc = state_proxy
    foreign = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "B's secret"}, key=KEY_B).json()
    ref_id = {"unknown": "msg_" + "0" * 32, "foreign": foreign["output"][0]["id"], "empty": ""}[reference]
    mock.reset()
    body = {"model": "mock-echo", "input": [{"role": "user", "content": "x"}, {"type": "item_reference", "id": ref_id}]}
    err = error(post(svc.url, "/v1/responses", body), 400)
    message = (f"Invalid 'input[1]': no stored item with id '{ref_id}' found." if ref_id else
               "Invalid 'input[1].id': an item reference needs a non-empty id string.")
    param = "input[1]" if ref_id else "input[1].id"  # (the param names what the message names)
    assert err == {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    with sdk(svc.url) as (client, _):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="mock-echo", input=[{"id": ref_id}], stream=True)
    assert caught.value.body["param"] == ("input[0]" if ref_id else "input[0].id")
    assert mock.requests() == []
    assert get(svc.url, f"/v1/responses/{foreign['id']}", key=KEY_B).json() == foreign


def test_references_over_a_websocket_resolve_and_refuse_as_over_http(state_proxy, mock):
    """WebSocket mode reads the store through the same code: a reference resolves; an unknown one
    is an ``error`` frame with the 400 a POST gets, and the connection stays usable."""
    svc = state_proxy
    stored = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "kept for the socket"}).json()
    mock.reset()
    with open_ws(svc.url) as ws:
        send(ws, {"type": "response.create", "model": "mock-echo",
                  "input": [{"type": "item_reference", "id": "msg_" + "0" * 32}]})
        [frame] = read_response(ws)
        assert (frame["type"], frame["status"], frame["error"]["param"]) == ("error", 400, "input[0]"), frame
        send(ws, {"type": "response.create", "model": "mock-echo",
                  "input": [{"id": stored["output"][0]["id"]}, {"role": "user", "content": "and?"}]})
        assert read_response(ws)[-1]["type"] == "response.completed"
    assert upstream(mock, "mock-echo") == [[{"role": "assistant", "content": "You said: kept for the socket"},
                                            {"role": "user", "content": "and?"}]]


def test_conversation_items_may_be_item_references(state_proxy, mock):
    """``items`` of ``conversations.create`` and ``conversations.items.create`` are input items, so
    the SDK lets them be references (``{"type": "item_reference", "id"}`` or the typeless
    ``{"id"}``): the conversation gets the stored item itself, under its id, as a response's input
    would; an unknown or another key's reference is a 400 naming it, and nothing is added."""
    svc = state_proxy
    model = "convref-" + os.urandom(3).hex()
    mock.script(model, {"text": "stored answer"}, {"text": "answer in the conversation"})
    foreign = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "B's secret"}, key=KEY_B).json()
    with sdk(svc.url) as (client, _):
        stored = client.responses.create(model=model, input="stored question")
        [question] = client.responses.input_items.list(stored.id).data
        conv = client.conversations.create(items=[{"type": "item_reference", "id": question.id}])
        added = client.conversations.items.create(conv.id, items=[
            {"id": stored.output[0].id}, {"type": "message", "role": "user", "content": "and now?"}])
        listed = client.conversations.items.list(conv.id, order="asc").data
        for bad in ("msg_" + "0" * 32, foreign["output"][0]["id"]):
            with pytest.raises(openai.BadRequestError) as caught:
                client.conversations.items.create(conv.id, items=[
                    {"role": "user", "content": "x"}, {"type": "item_reference", "id": bad}])
            assert caught.value.body["param"] == "items[1]" and bad in caught.value.body["message"]
        assert len(client.conversations.items.list(conv.id).data) == 3
        client.responses.create(model=model, input="so?", conversation=conv.id)
    assert [i.id for i in listed] == [question.id, stored.output[0].id, added.data[1].id]
    assert [i.id for i in added.data[:1]] == [stored.output[0].id] and added.data[0].role == "assistant"
    assert listed[1].content[0].text == "stored answer"
    assert upstream(mock, model)[1] == [
        {"role": "user", "content": "stored question"}, {"role": "assistant", "content": "stored answer"},
        {"role": "user", "content": "and now?"}, {"role": "user", "content": "so?"},
    ]



def _proxy(request: pytest.FixtureRequest, backend: str):
    if backend == "sqlite":
        return request.getfixturevalue("state_proxy")
    return request.getfixturevalue("proxy_factory")(RESPONSE_STORE_URL=request.getfixturevalue("redis_db"))


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_reference_resolves_in_the_older_holder_once_the_response_that_stored_it_again_is_deleted(
    request, mock, backend
):
    """B stores A's input item again (a resolved reference); DELETE B leaves it in A, which still
    lists it: a reference to it resolves there, not a 400."""
    svc = _proxy(request, backend)
    model = "holders-" + os.urandom(3).hex()
    mock.script(model, {"text": "a"}, {"text": "b"}, {"text": "after b"})
    with sdk(svc.url) as (client, _):
        a = client.responses.create(model=model, input="question A")
        [question] = client.responses.input_items.list(a.id).data
        b = client.responses.create(model=model, input=[{"type": "item_reference", "id": question.id}])
        assert [i.id for i in client.responses.input_items.list(b.id).data] == [question.id]
        client.responses.delete(b.id)
        assert [i.id for i in client.responses.input_items.list(a.id).data] == [question.id]
        after = client.responses.create(model=model, input=[{"type": "item_reference", "id": question.id}])
    assert after.output_text == "after b"
    assert upstream(mock, model)[2] == [{"role": "user", "content": "question A"}]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_reference_to_a_responses_output_resolves_after_its_conversation_is_deleted(request, mock, backend):
    """R in conversation C appended its items to C; DELETE C leaves R (200) and its output item,
    which a reference then finds in R."""
    svc = _proxy(request, backend)
    model = "holders-" + os.urandom(3).hex()
    mock.script(model, {"text": "in conv"}, {"text": "after conv"})
    with sdk(svc.url) as (client, _):
        conv = client.conversations.create()
        r = client.responses.create(model=model, input="question R", conversation=conv.id)
        assert client.conversations.delete(conv.id).deleted
        assert client.responses.retrieve(r.id).output_text == "in conv"
        after = client.responses.create(model=model, input=[{"id": r.output[0].id}, {"role": "user", "content": "?"}])
    assert after.output_text == "after conv"
    assert upstream(mock, model)[1] == [{"role": "assistant", "content": "in conv"}, {"role": "user", "content": "?"}]
