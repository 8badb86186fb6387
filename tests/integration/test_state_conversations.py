"""The Conversations API through ``client.conversations.*`` and ``conversation`` on
``responses.create``, through real gunicorn: objects as the SDK's types, lists paged with
``limit``/``order``/``after``; a response in a conversation stands on its items, appends its input
and output when it ends (before its terminal event) and carries ``conversation: {"id"}``; concurrent
responses on one conversation lose nothing, each batch contiguous — on SQLite and on Redis."""
from __future__ import annotations

import os
import threading
from typing import Any

import openai
import orjson
import pytest

from tests.state_kit import delete, error, get, post, redis_db, sdk, state_proxy, upstream

__all__ = ["redis_db", "state_proxy"]


def _texts(items: list[Any]) -> list[str]:
    return [i["content"][0]["text"] if isinstance(i, dict) else i.content[0].text for i in items]


def test_the_conversations_api_through_the_sdk(state_proxy):
    svc = state_proxy
    with sdk(svc.url) as (client, _):
        conv = client.conversations.create(
            items=[{"type": "message", "role": "user", "content": f"item {i}"} for i in range(5)],
            metadata={"topic": "tests"},
        )
        assert conv.id.startswith("conv_") and conv.object == "conversation" and conv.metadata == {"topic": "tests"}
        assert client.conversations.retrieve(conv.id) == conv
        updated = client.conversations.update(conv.id, metadata={"topic": "changed", "n": "2"})
        assert updated.metadata == {"topic": "changed", "n": "2"} and updated.created_at == conv.created_at
        assert client.conversations.retrieve(conv.id).metadata == {"topic": "changed", "n": "2"}

        newest_first = client.conversations.items.list(conv.id)  # desc, limit 20
        assert [i.content[0].text for i in newest_first.data] == [f"item {i}" for i in range(4, -1, -1)]
        ids = [i.id for i in reversed(newest_first.data)]
        assert newest_first.has_more is False and newest_first.first_id == ids[-1] and newest_first.last_id == ids[0]
        assert [i.id for i in client.conversations.items.list(conv.id, limit=2, order="asc")] == ids  # pages
        page = client.conversations.items.list(conv.id, limit=2, order="asc", after=ids[1])
        assert [i.id for i in page.data] == ids[2:4] and page.has_more is True
        page = client.conversations.items.list(conv.id, limit=2, order="desc", after=ids[1])
        assert [i.id for i in page.data] == [ids[0]] and page.has_more is False

        added = client.conversations.items.create(conv.id, items=[
            {"type": "message", "role": "assistant", "content": "an answer"},
            {"type": "function_call", "call_id": "call_c", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_c", "output": "looked up"},
        ])
        assert [i.type for i in added.data] == ["message", "function_call", "function_call_output"]
        assert added.first_id == added.data[0].id and added.last_id == added.data[-1].id
        assert [i.id for i in client.conversations.items.list(conv.id, order="asc", limit=100).data] == [
            *ids, *(i.id for i in added.data)]
        one = client.conversations.items.retrieve(added.data[1].id, conversation_id=conv.id)
        assert one.type == "function_call" and one.call_id == "call_c"

        after_delete = client.conversations.items.delete(ids[2], conversation_id=conv.id)
        assert after_delete.id == conv.id and after_delete.object == "conversation"
        left = [i.id for i in client.conversations.items.list(conv.id, order="asc").data]
        assert left == [ids[0], ids[1], ids[3], ids[4], *(i.id for i in added.data)]
        with pytest.raises(openai.NotFoundError) as caught:
            client.conversations.items.retrieve(ids[2], conversation_id=conv.id)
        assert caught.value.body["param"] == "item_id"

        deleted = client.conversations.delete(conv.id)
        assert (deleted.id, deleted.object, deleted.deleted) == (conv.id, "conversation.deleted", True)
        for call in (lambda: client.conversations.retrieve(conv.id),
                     lambda: client.conversations.items.list(conv.id),
                     lambda: client.conversations.items.retrieve(ids[0], conversation_id=conv.id),
                     lambda: client.conversations.delete(conv.id)):
            with pytest.raises(openai.NotFoundError) as caught:
                call()
            assert caught.value.body["param"] == "conversation_id"


def test_bad_conversation_requests_are_400s_naming_the_parameter(state_proxy):
    svc = state_proxy
    conv = post(svc.url, "/v1/conversations", {}).json()
    assert conv["metadata"] == {} and conv["id"].startswith("conv_")
    cases = [
        ("/v1/conversations", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ("/v1/conversations", {"metadata": {"k": 5}}, "metadata.k"),
        ("/v1/conversations", {"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ("/v1/conversations", {"items": "not a list"}, "items"),
        ("/v1/conversations", {"items": [5]}, "items[0]"),
        (f"/v1/conversations/{conv['id']}", {}, "metadata"),
        (f"/v1/conversations/{conv['id']}/items", {}, "items"),
        (f"/v1/conversations/{conv['id']}/items", {"items": [{"role": "user", "content": 7}]}, "items[0].content"),  # (as input names it)
    ]
    for path, body, param in cases:
        assert error(post(svc.url, path, body), 400)["param"] == param, (path, body)
    assert error(get(svc.url, f"/v1/conversations/{conv['id']}/items", limit="0"), 400)["param"] == "limit"
    assert error(get(svc.url, f"/v1/conversations/{conv['id']}/items", order="sideways"), 400)["param"] == "order"
    assert error(get(svc.url, "/v1/conversations/conv_" + "0" * 32), 404)["param"] == "conversation_id"
    assert get(svc.url, f"/v1/conversations/{conv['id']}/items").json()["data"] == []


def test_an_item_a_response_could_not_take_as_input_is_refused_by_the_conversation(state_proxy, mock):
    """Found by the live fuzz: conversation items were stored unchecked, so an item ``input``
    refuses (an unknown type, a call named by a number, a bad role, status or tool output) was
    listed back in a shape the SDK's types refuse, and every response in that conversation was
    a 400 naming an input item its client never sent. Now the same 400, named ``items[i]``, on
    create and on add, and nothing is stored."""
    svc = state_proxy
    model = "conv-check-" + os.urandom(3).hex()
    mock.script(model, {"text": "ok"})
    conv = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "kept"}]}).json()
    ok = {"role": "user", "content": "fine"}
    cases = [
        ({"type": "bogus", "x": 1}, "items[1]"),
        ({"type": "function_call", "call_id": "c", "name": 5, "arguments": "{}"}, "items[1].name"),
        ({"role": "wizard", "content": "x"}, "items[1].role"),
        ({"role": "user", "content": "x", "status": "bogus"}, "items[1].status"),
        ({"type": "function_call_output", "call_id": "c", "output": {"a": 1}}, "items[1].output"),
        ({"type": "message", "role": "assistant", "content": [{"type": "input_image"}]}, "items[1].content[0].type"),
        # Fields the SDK declares that translation does not read (tests/unit/test_input_item_types.py).
        ({"type": "function_call_output", "call_id": "c", "output": "o", "name": 0}, "items[1].name"),
        ({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "caller": {"type": 5}},
         "items[1].caller.type"),
        ({"role": "user", "content": [{"type": "input_text", "text": "x", "prompt_cache_breakpoint": 5}]},
         "items[1].content[0].prompt_cache_breakpoint"),
    ]
    for item, param in cases:
        for path in ("/v1/conversations", f"/v1/conversations/{conv['id']}/items"):
            err = error(post(svc.url, path, {"items": [ok, item]}), 400)
            assert err["param"] == param and err["type"] == "invalid_request_error", (path, item, err)
            assert "items[1]" in err["message"], err
    with sdk(svc.url) as (client, _):  # every answer validated as the SDK's types
        assert _texts(client.conversations.items.list(conv["id"]).data) == ["kept"]
        assert client.responses.create(model=model, input="next", conversation=conv["id"]).output_text == "ok"


def test_an_item_id_that_is_no_id_string_is_the_400_input_answers_naming_the_id(state_proxy):
    """An item's ``id`` of another type (or empty, or over the bound) was refused by the store's
    preparation, which ran before the checks every input item gets, naming the item
    (``items[1]``) where input names ``input[1].id``. Now, on create and on add, the same 400 as
    input, named ``items[1].id``, and nothing is stored."""
    svc = state_proxy
    conv = post(svc.url, "/v1/conversations", {}).json()["id"]
    ok = {"role": "user", "content": "fine"}
    for value in (7, 1.5, True, [], {}, ["x"], "", "x" * 257):
        item = {"type": "message", "role": "user", "content": "x", "id": value}
        given = error(post(svc.url, "/v1/responses", {"model": "mock-echo", "input": [ok, item]}), 400)
        assert given["param"] == "input[1].id", (value, given)
        for path in ("/v1/conversations", f"/v1/conversations/{conv}/items"):
            err = error(post(svc.url, path, {"items": [ok, item]}), 400)
            assert err == {**given, "message": given["message"].replace("'input[1]", "'items[1]"),
                           "param": "items[1].id"}, (path, value)
    assert get(svc.url, f"/v1/conversations/{conv}/items").json()["data"] == []


def test_responses_in_a_conversation(state_proxy, mock):
    svc = state_proxy
    model = "conv-" + os.urandom(3).hex()
    mock.script(model, {"text": "first answer"}, {"reasoning": "hmm", "reasoning_field": "reasoning_content",
                                                  "text": "second answer"}, {"text": "chained answer"})
    with sdk(svc.url) as (client, _):
        conv = client.conversations.create(items=[{"type": "message", "role": "user", "content": "context item"}])
        first = client.responses.create(model=model, input="first question", conversation=conv.id,
                                        instructions="not an item")
        assert first.conversation is not None and first.conversation.id == conv.id
        with client.responses.stream(model=model, input=[{"role": "user", "content": "second question"}],
                                     conversation={"id": conv.id}) as stream:
            for event in stream:
                if event.type == "response.completed":  # appended before the terminal event
                    assert _texts(client.conversations.items.list(conv.id, limit=1).data) == ["second answer"]
            second = stream.get_final_response()
        assert second.conversation.id == conv.id
        items = client.conversations.items.list(conv.id, order="asc").data
        own = [i.id for i in client.responses.input_items.list(first.id)]
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=model, input="x", conversation=conv.id, previous_response_id=first.id)
        assert caught.value.body["param"] == "conversation"
        with pytest.raises(openai.NotFoundError) as caught:
            client.responses.create(model=model, input="x", conversation="conv_" + "0" * 32)
        assert (caught.value.body["param"], caught.value.body["code"]) == ("conversation", "conversation_not_found")
        # Chaining from a response built on the conversation sees the conversation as it was then.
        client.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "later"}])
        chained = client.responses.create(model=model, input="chained question", previous_response_id=first.id)
        assert chained.conversation is None
    assert [i.type for i in items] == ["message", "message", "message", "message", "reasoning", "message"]
    assert [getattr(i, "role", None) for i in items] == ["user", "user", "assistant", "user", None, "assistant"]
    assert items[1].id == own[0]  # the response's input and the conversation hold the same ids
    assert [i.id for i in items[2:3]] == [o.id for o in first.output]
    assert [i.id for i in items[4:]] == [o.id for o in second.output]
    sent = upstream(mock, model)
    assert sent[0] == [{"role": "system", "content": "not an item"}, {"role": "user", "content": "context item"},
                       {"role": "user", "content": "first question"}]
    assert sent[1] == [{"role": "user", "content": "context item"}, {"role": "user", "content": "first question"},
                       {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "second question"}]
    assert sent[2] == [{"role": "user", "content": "context item"}, {"role": "user", "content": "first question"},
                       {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "chained question"}]
    assert len(sent) == 3, "refused requests never reach the backend"


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_concurrent_responses_append_to_one_conversation_losing_nothing(proxy_factory, request, backend):
    url = request.getfixturevalue("redis_db") if backend == "redis" else None
    svc = proxy_factory(**({"RESPONSE_STORE_URL": url} if url else {}))
    conv = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "start"}]}).json()
    n = 8
    answers: dict[int, dict[str, Any]] = {}
    barrier = threading.Barrier(n)

    def respond(k: int) -> None:
        barrier.wait()
        body = {"model": "mock-slow-20", "input": f"racer {k}", "conversation": conv["id"], "stream": k % 2 == 1}
        r = post(svc.url, "/v1/responses", body)
        assert r.status_code == 200
        answers[k] = r.json() if k % 2 == 0 else {}

    threads = [threading.Thread(target=respond, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == n
    items = get(svc.url, f"/v1/conversations/{conv['id']}/items", order="asc", limit="100").json()["data"]
    texts = _texts(items)
    assert texts[0] == "start" and len(items) == 1 + 2 * n
    assert len({i["id"] for i in items}) == len(items)
    batches = [texts[i:i + 2] for i in range(1, len(texts), 2)]
    assert sorted(batches) == sorted([f"racer {k}", f"You said: racer {k}"] for k in range(n)), texts
    for doc in answers.values():
        if doc:
            assert doc["output"][0]["id"] in {i["id"] for i in items}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_chaining_from_a_response_whose_conversation_was_deleted(proxy_factory, mock, request, backend):
    """The conversation a response stood on is gone once deleted: chaining from that response (or
    one built on it) is the client's 400 naming ``previous_response_id`` — not a server error an
    SDK would retry — and no shortened context reaches the backend; the responses stay readable."""
    url = request.getfixturevalue("redis_db") if backend == "redis" else None
    svc = proxy_factory(**({"RESPONSE_STORE_URL": url} if url else {}))
    conv = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "ctx"}]}).json()
    first = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "in it", "conversation": conv["id"]}).json()
    second = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "on it",
                                             "previous_response_id": first["id"]}).json()
    assert post(svc.url, f"/v1/conversations/{conv['id']}", {}).status_code == 400  # (metadata is required)
    assert get(svc.url, f"/v1/conversations/{conv['id']}").status_code == 200
    assert delete(svc.url, f"/v1/conversations/{conv['id']}").status_code == 200
    calls = len(upstream(mock, "mock-echo"))
    for rid in (first["id"], second["id"]):
        err = error(post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "x", "previous_response_id": rid}),
                    400)
        assert (err["param"], err["code"], err["type"]) == ("previous_response_id", "conversation_deleted",
                                                             "invalid_request_error")
        assert rid in err["message"] and conv["id"] in err["message"]
        assert get(svc.url, f"/v1/responses/{rid}").status_code == 200
    assert len(upstream(mock, "mock-echo")) == calls
    assert "store error" not in svc.log_text()  # not logged as a fault of the store


PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_an_image_sent_without_detail_is_listed_with_the_default_the_sdk_requires(state_proxy, mock):
    """``detail`` may be left out of an ``input_image`` part (OpenAI defaults it to ``auto``), but
    the SDK's listed type (``ResponseInputImage``) requires it: every route that lists or returns
    such an item shows ``auto`` (``sdk`` validates each answer as the SDK's types), while the
    backend still gets the image exactly as the client sent it."""
    svc = state_proxy
    model = "img-" + os.urandom(3).hex()
    mock.script(model, {"text": "a pixel"}, {"text": "still a pixel"})
    image = {"type": "input_image", "image_url": PIXEL}
    message = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}, image]}
    tool_output = {"type": "function_call_output", "call_id": "call_i", "output": [image]}
    with sdk(svc.url) as (client, _):
        conv = client.conversations.create(items=[message])
        added = client.conversations.items.create(conv.id, items=[
            {"type": "function_call", "call_id": "call_i", "name": "snap", "arguments": "{}"}, tool_output])
        listed = client.conversations.items.list(conv.id, order="asc").data
        one = client.conversations.items.retrieve(listed[0].id, conversation_id=conv.id)
        answer = client.responses.create(model=model, input=[message])
        own = client.responses.input_items.list(answer.id).data
        client.responses.create(model=model, input="again?", previous_response_id=answer.id)
    assert [p.detail for p in (listed[0].content[1], one.content[1], own[0].content[1])] == ["auto"] * 3
    assert added.data[1].output[0].detail == "auto" and listed[2].output[0].detail == "auto"
    first, chained = upstream(mock, model)
    assert first[0]["content"][1] == chained[0]["content"][1] == {"type": "image_url", "image_url": {"url": PIXEL}}


def test_a_chat_style_image_url_object_is_listed_as_the_url_string_the_sdk_declares(state_proxy, mock):
    """``image_url: {"url": …}`` (the Chat Completions form) is tolerated in input, and was stored and
    listed so: the SDK's ``ResponseInputImage`` declares a string, and every listing of the item
    failed its types. Listed as the string now (``sdk`` validates each answer); the backend gets it."""
    svc = state_proxy
    model = "img-obj-" + os.urandom(3).hex()
    mock.script(model, {"text": "a pixel"})
    image = {"type": "input_image", "image_url": {"url": PIXEL}, "detail": "low"}
    message = {"type": "message", "role": "user", "content": [image]}
    with sdk(svc.url) as (client, _):
        conv = client.conversations.create(items=[message])
        listed = client.conversations.items.list(conv.id).data
        answer = client.responses.create(model=model, input=[message])
        own = client.responses.input_items.list(answer.id).data
    assert listed[0].content[0].image_url == own[0].content[0].image_url == PIXEL
    assert upstream(mock, model)[0][0]["content"] == [{"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}}]


def _backend_proxy(request: pytest.FixtureRequest, backend: str):
    if backend == "sqlite":
        return request.getfixturevalue("state_proxy")
    return request.getfixturevalue("proxy_factory")(RESPONSE_STORE_URL=request.getfixturevalue("redis_db"))


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_an_after_that_names_no_item_of_the_list_is_a_400_naming_after(request, backend):
    """``after`` is a cursor into one list: an id that is none of its items (unknown, another
    list's, deleted from it) is a 400 ``invalid_request_error`` naming ``after`` on both list
    routes, as the SDK raises it — not an empty page, which the SDK's pager takes for the end of
    the list; an ``after`` of the list still pages as before."""
    svc = _backend_proxy(request, backend)
    with sdk(svc.url) as (client, _):
        conv = client.conversations.create(items=[{"type": "message", "role": "user", "content": f"c{i}"}
                                                  for i in range(3)])
        other = client.conversations.create(items=[{"type": "message", "role": "user", "content": "other"}])
        response = client.responses.create(model="mock-echo", input=[{"role": "user", "content": f"r{i}"}
                                                                    for i in range(3)])
        conv_ids = [i.id for i in client.conversations.items.list(conv.id, order="asc")]
        own_ids = [i.id for i in client.responses.input_items.list(response.id, order="asc")]
        foreign = client.conversations.items.list(other.id).data[0].id
        client.conversations.items.delete(conv_ids[1], conversation_id=conv.id)
        lists = [
            (lambda **kw: client.conversations.items.list(conv.id, **kw), [foreign, conv_ids[1], own_ids[0]]),
            (lambda **kw: client.responses.input_items.list(response.id, **kw), [foreign, conv_ids[0]]),
        ]
        for listing, strangers in lists:
            for after in ["msg_" + "0" * 32, *strangers]:
                for order in ("asc", "desc"):
                    with pytest.raises(openai.BadRequestError) as caught:
                        listing(after=after, order=order, limit=1)
                    body = caught.value.body
                    assert (body["type"], body["param"], body["code"]) == ("invalid_request_error", "after", None)
                    assert f"No item with id '{after}' in this list" in body["message"], body
        assert [i.id for i in client.conversations.items.list(conv.id, order="asc", after=conv_ids[0])] == [
            conv_ids[2]]
        assert [i.id for i in client.responses.input_items.list(response.id, after=own_ids[2])] == own_ids[1::-1]
    err = error(get(svc.url, f"/v1/conversations/{conv.id}/items", after="nope"), 400)
    assert err["param"] == "after" and "nope" in err["message"]
    err = error(get(svc.url, f"/v1/responses/{response.id}/input_items", after="nope"), 400)
    assert err["param"] == "after" and "nope" in err["message"]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_an_item_id_the_conversation_holds_is_a_400_never_added_twice_nor_answered_as_added(request, mock, backend):
    """An id is in a conversation once (its items are paged by id). Items added later under an id
    it holds — given again, or a reference to its own item — are OpenAI's 400 "Duplicate item
    found with id …" naming the item: on ``POST …/items`` (nothing of the batch kept), and on a
    response in the conversation, refused before the backend is called (nothing appended, nothing
    generated); a batch or an input of new ids goes in as before."""
    svc = _backend_proxy(request, backend)
    model = "convdup-" + os.urandom(3).hex()
    mock.script(model, {"text": "answered"})
    given = {"type": "message", "id": "msg_given_" + os.urandom(4).hex(), "role": "user", "content": "given"}
    with sdk(svc.url) as (client, _):
        conv = client.conversations.create(items=[given])
        before = [i.id for i in client.conversations.items.list(conv.id, order="asc")]
        assert before == [given["id"]]
        attempts = [
            [{"type": "message", "role": "user", "content": "new"}, given],
            [{"type": "message", "role": "user", "content": "new"}, {"type": "item_reference", "id": given["id"]}],
            [{"type": "message", "role": "user", "content": "new"}, {"id": given["id"]}],
        ]
        for items in attempts:
            with pytest.raises(openai.BadRequestError) as caught:
                client.conversations.items.create(conv.id, items=items)
            body = caught.value.body
            assert (body["type"], body["param"]) == ("invalid_request_error", "items[1]"), body
            assert f"Duplicate item found with id '{given['id']}'" in body["message"], body
            for mode in ({"stream": False}, {"stream": True}, {"background": True}):
                with pytest.raises(openai.BadRequestError) as caught:
                    client.responses.create(model=model, input=items, conversation=conv.id, **mode)
                body = caught.value.body
                assert (body["param"], body["type"]) == ("input[1]", "invalid_request_error"), body
                assert f"Duplicate item found with id '{given['id']}'" in body["message"], body
        assert [i.id for i in client.conversations.items.list(conv.id, order="asc")] == before
        assert upstream(mock, model) == [], "a refused request reached the backend"
        # New ids are added, as before; the same item in another conversation is no duplicate.
        added = client.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "n"}])
        answer = client.responses.create(model=model, input="q", conversation=conv.id)
        other = client.conversations.create(items=[{"type": "item_reference", "id": given["id"]}])
        assert [i.id for i in client.conversations.items.list(other.id)] == [given["id"]]
        listed = [i.id for i in client.conversations.items.list(conv.id, order="asc", limit=100)]
    own = [i["id"] for i in get(svc.url, f"/v1/responses/{answer.id}/input_items").json()["data"]]
    assert listed == [given["id"], added.data[0].id, *own, answer.output[0].id]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_racing_appends_of_one_new_id_keep_it_once_and_lose_no_answer(proxy_factory, request, mock, backend):
    """Requests racing to add one id the conversation does not hold yet: of explicit ``POST
    …/items``, exactly one adds it, the others get the 400 (one atomic step on each store); of
    responses that both sent it (each read the conversation before the other appended), each is
    answered and appended whole but for that id, which the conversation keeps once — the copy
    appended first — and the proxy logs which ids it did not append again."""
    url = request.getfixturevalue("redis_db") if backend == "redis" else None
    svc = proxy_factory(**({"RESPONSE_STORE_URL": url} if url else {}))
    conv = post(svc.url, "/v1/conversations", {"items": [{"role": "user", "content": "start"}]}).json()["id"]
    n = 6
    statuses: dict[int, int] = {}
    answers: dict[int, dict[str, Any]] = {}

    def race(work) -> None:
        barrier = threading.Barrier(n)

        def one(k: int) -> None:
            barrier.wait()
            work(k)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    contested = {"type": "message", "id": "msg_contested", "role": "user", "content": "contested"}

    def add(k: int) -> None:
        statuses[k] = post(svc.url, f"/v1/conversations/{conv}/items",
                           {"items": [{"role": "user", "content": f"adder {k}"}, contested]}).status_code

    race(add)
    assert sorted(statuses.values()) == [200] + [400] * (n - 1), statuses
    items = get(svc.url, f"/v1/conversations/{conv}/items", order="asc", limit="100").json()["data"]
    assert [i["id"] for i in items].count("msg_contested") == 1 and len(items) == 3
    winner = next(k for k, s in statuses.items() if s == 200)
    assert _texts(items) == ["start", f"adder {winner}", "contested"]

    racer = {"type": "message", "id": "msg_racer", "role": "user", "content": "sent by all"}

    def respond(k: int) -> None:
        # Streamed, each: the backend then takes 300 ms a chunk, so every racer has read the
        # conversation before the first appends (a JSON request's backend call is one body, at once).
        body = {"model": "mock-slow-300", "conversation": conv, "stream": True,
                "input": [racer, {"role": "user", "content": f"racer {k}"}]}
        r = post(svc.url, "/v1/responses", body)
        assert r.status_code == 200, r.text
        events = [orjson.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        answers[k] = events[-1]["response"]

    race(respond)
    assert len(answers) == n
    items = get(svc.url, f"/v1/conversations/{conv}/items", order="asc", limit="100").json()["data"]
    ids, texts = [i["id"] for i in items], _texts(items)
    assert ids.count("msg_racer") == 1 and len(set(ids)) == len(ids)
    assert len(items) == 3 + 1 + 2 * n, texts  # every racer's own message and answer, the shared item once
    shared = ids.index("msg_racer")  # at the head of the batch appended first, the others whole after it
    batches = [texts[shared + 1 + i:shared + 3 + i] for i in range(0, 2 * n, 2)]
    assert sorted(batches) == sorted([f"racer {k}", f"You said: racer {k}"] for k in range(n)), texts
    assert shared == 3 and texts[:3] == ["start", f"adder {winner}", "contested"]
    for doc in answers.values():
        assert doc["status"] == "completed" and doc["output"][0]["id"] in ids
    assert svc.log_text().count("got items ['msg_racer'] from another request meanwhile") == n - 1
