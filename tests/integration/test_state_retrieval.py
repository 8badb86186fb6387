"""``GET``/``DELETE /v1/responses/{id}`` and ``GET …/{id}/input_items`` through real gunicorn:
the stored Response is the one the client got, a DELETE is final for the response but not for
the responses built on it, and ``input_items`` pages through the request's own input only."""
from __future__ import annotations

import os
from typing import Any

import orjson
import pytest

from tests.conformance import check_stream, parse_sse
from tests.state_kit import delete, error, get, post, sdk, state_proxy, upstream

__all__ = ["state_proxy"]

OWN_INPUT: list[dict[str, Any]] = [
    {"role": "developer", "content": "be brief"},
    {"type": "message", "id": "msg_client_given_1", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {"role": "assistant", "content": "said before"},
    {"type": "function_call", "call_id": "call_p", "name": "lookup", "arguments": "{\"q\":\"p\"}"},
    {"type": "function_call_output", "call_id": "call_p", "output": "found p"},
]


def _json_post(url: str, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    r = post(url, "/v1/responses", body)
    assert r.status_code == 200, r.text
    return r.content, r.json()


def test_get_answers_the_bytes_a_json_client_got_and_the_final_event_of_a_stream(state_proxy):
    svc = state_proxy
    raw, doc = _json_post(svc.url, {"model": "mock-echo", "input": "hello there", "metadata": {"k": "v"},
                                    "temperature": 0.5, "instructions": "sys"})
    for path in (f"/v1/responses/{doc['id']}", f"/responses/{doc['id']}"):
        got = get(svc.url, path)
        assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
        assert got.content == raw
    r = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "streamed", "stream": True})
    final = check_stream(parse_sse(r.content))
    assert get(svc.url, f"/v1/responses/{final['id']}").json() == final
    with sdk(svc.url) as (client, _):
        retrieved = client.responses.retrieve(doc["id"])
        assert retrieved.output_text == "You said: hello there" and retrieved.metadata == {"k": "v"}
        assert retrieved.temperature == 0.5 and retrieved.instructions == "sys"


@pytest.mark.parametrize("script, status", [
    ({"text": "cut off here", "finish_reason": "length"}, "incomplete"),
    ({"text": "partial answer", "error_mid_stream": {"message": "backend broke", "type": "server_error",
                                                     "code": "oops", "after": 3}}, "failed"),
])
def test_failed_and_incomplete_responses_are_stored_with_their_status(state_proxy, mock, script, status):
    model = "ended-" + os.urandom(3).hex()
    mock.script(model, script)
    r = post(state_proxy.url, "/v1/responses", {"model": model, "input": "go", "stream": True})
    assert r.status_code == 200
    final = parse_sse(r.content)[-1]["response"]
    assert final["status"] == status
    stored = get(state_proxy.url, f"/v1/responses/{final['id']}")
    assert stored.status_code == 200 and stored.json() == final


def test_delete_is_final_for_the_response_and_not_for_what_was_built_on_it(state_proxy, mock):
    svc = state_proxy
    model = "del-" + os.urandom(3).hex()
    mock.script(model, {"text": "first answer"}, {"text": "second answer"}, {"text": "third answer"})
    _, first = _json_post(svc.url, {"model": model, "input": "first question"})
    raw2, second = _json_post(svc.url, {"model": model, "input": "second question",
                                        "previous_response_id": first["id"]})
    items_before = get(svc.url, f"/v1/responses/{second['id']}/input_items").json()

    r = delete(svc.url, f"/v1/responses/{first['id']}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.content == orjson.dumps({"id": first["id"], "object": "response", "deleted": True})

    gone = {"message": f"No response found with id '{first['id']}'.", "type": "invalid_request_error",
            "param": "response_id", "code": "not_found"}
    assert error(get(svc.url, f"/v1/responses/{first['id']}"), 404) == gone
    assert error(delete(svc.url, f"/v1/responses/{first['id']}"), 404) == gone
    assert error(get(svc.url, f"/v1/responses/{first['id']}/input_items"), 404) == gone
    err = error(post(svc.url, "/v1/responses", {"model": model, "input": "x", "previous_response_id": first["id"]}),
                404)
    assert (err["param"], err["code"]) == ("previous_response_id", "previous_response_not_found")
    ref = {"type": "item_reference", "id": first["output"][0]["id"]}
    err = error(post(svc.url, "/v1/responses", {"model": model, "input": [ref, {"role": "user", "content": "x"}]}),
                400)
    assert err["param"] == "input[0]"
    assert len(upstream(mock, model)) == 2, "refused requests never reach the backend"

    # What was built on it is untouched, and still stands on the deleted response's items.
    assert get(svc.url, f"/v1/responses/{second['id']}").content == raw2
    assert get(svc.url, f"/v1/responses/{second['id']}/input_items").json() == items_before
    _, third = _json_post(svc.url, {"model": model, "input": "third question", "previous_response_id": second["id"]})
    assert third["output"][0]["content"][0]["text"] == "third answer"
    assert upstream(mock, model)[-1] == [
        {"role": "user", "content": "first question"}, {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"}, {"role": "assistant", "content": "second answer"},
        {"role": "user", "content": "third question"},
    ]
    with sdk(svc.url) as (client, _):
        assert client.responses.delete(second["id"]) is None  # the SDK parses the deleted object
        assert client.responses.retrieve(third["id"]).previous_response_id == second["id"]
    assert get(svc.url, f"/v1/responses/{second['id']}").status_code == 404
    _, fourth = _json_post(svc.url, {"model": model, "input": "fourth", "previous_response_id": third["id"]})
    assert [m["content"] for m in upstream(mock, model)[-1]][:3] == ["first question", "first answer",
                                                                     "second question"]


def _page(url: str, rid: str, **params: Any) -> dict[str, Any]:
    r = get(url, f"/v1/responses/{rid}/input_items", **params)
    assert r.status_code == 200, r.text
    return r.json()


def test_input_items_pages_through_the_requests_own_input(state_proxy, mock):
    svc = state_proxy
    _, first = _json_post(svc.url, {"model": "mock-echo", "input": "not listed: a predecessor's input"})
    _, doc = _json_post(svc.url, {"model": "mock-echo", "input": OWN_INPUT, "previous_response_id": first["id"]})
    rid = doc["id"]

    everything = _page(svc.url, rid, order="asc")
    items = everything["data"]
    assert everything["object"] == "list" and everything["has_more"] is False
    assert [i["type"] for i in items] == ["message", "message", "message", "function_call", "function_call_output"]
    assert [i.get("role") for i in items] == ["developer", "user", "assistant", None, None]
    ids = [i["id"] for i in items]
    assert len(set(ids)) == 5 and ids[1] == "msg_client_given_1"
    assert ids[0].startswith("msg_") and ids[3].startswith("fc_") and ids[4].startswith("fco_")
    assert items[0]["content"] == [{"type": "input_text", "text": "be brief"}]
    assert items[2]["content"] == [{"type": "output_text", "text": "said before", "annotations": []}]
    assert items[3]["call_id"] == "call_p" and items[4]["output"] == "found p"
    assert (everything["first_id"], everything["last_id"]) == (ids[0], ids[4])
    assert all("not listed" not in orjson.dumps(i).decode() for i in items)

    default = _page(svc.url, rid)  # desc, limit 20
    assert [i["id"] for i in default["data"]] == ids[::-1]
    assert (default["first_id"], default["last_id"], default["has_more"]) == (ids[4], ids[0], False)

    for order, expected in (("desc", ids[::-1]), ("asc", ids)):
        seen, after, pages = [], None, []
        while True:
            page = _page(svc.url, rid, limit=2, order=order, **({"after": after} if after else {}))
            pages.append(page)
            seen += [i["id"] for i in page["data"]]
            assert (page["first_id"], page["last_id"]) == (page["data"][0]["id"], page["data"][-1]["id"])
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == expected and [len(p["data"]) for p in pages] == [2, 2, 1]
        assert [p["has_more"] for p in pages] == [True, True, False]
    assert _page(svc.url, rid, limit=100)["data"] == default["data"]
    assert _page(svc.url, rid, limit=1, order="asc", after=ids[3])["data"] == [items[4]]
    empty = _page(svc.url, rid, after=ids[0])  # nothing after the oldest, newest first
    assert (empty["data"], empty["first_id"], empty["last_id"], empty["has_more"]) == ([], None, None, False)

    for bad in ("0", "101", "x", "-1", "1.5"):
        err = error(get(svc.url, f"/v1/responses/{rid}/input_items", limit=bad), 400)
        assert (err["param"], err["type"]) == ("limit", "invalid_request_error"), err
        assert bad in err["message"]
    err = error(get(svc.url, f"/v1/responses/{rid}/input_items", order="up"), 400)
    assert err["param"] == "order"

    with sdk(svc.url) as (client, _):  # the SDK's cursor pagination (after = the last id) walks it
        assert [i.id for i in client.responses.input_items.list(rid, limit=2, order="asc")] == ids
        assert [i.id for i in client.responses.input_items.list(first["id"])] == [
            _page(svc.url, first["id"])["data"][0]["id"]]


def test_an_input_naming_one_item_id_twice_is_refused_as_openai_does(state_proxy, mock):
    """OpenAI refuses an input whose items repeat an id ("Duplicate item found with id …"). Kept,
    such an input would also stall the SDK's pager: ``after`` (the last id of a page) names two
    positions, and ``input_items.list`` would serve the same pages again and again. So a repeated
    id — given twice, or two references to one item — is a 400 naming the second, before the
    backend is called; the same within one batch of conversation items."""
    svc = state_proxy
    _, stored = _json_post(svc.url, {"model": "mock-echo", "input": "stored"})
    out = stored["output"][0]["id"]
    mock.reset()
    given = {"type": "message", "id": "msg_twice", "role": "user", "content": "x"}
    cases = [
        ([given, {"role": "user", "content": "between"}, given], "input[2]", "msg_twice"),
        ([{"type": "item_reference", "id": out}, {"id": out}], "input[1]", out),
    ]
    for items, param, dup in cases:
        for stream in (False, True):
            err = error(post(svc.url, "/v1/responses", {"model": "mock-echo", "input": items, "stream": stream}), 400)
            assert (err["param"], err["type"]) == (param, "invalid_request_error") and dup in err["message"], err
            assert "Duplicate item" in err["message"], err
    assert mock.requests() == []
    conv = post(svc.url, "/v1/conversations", {}).json()["id"]
    for path in (f"/v1/conversations/{conv}/items", "/v1/conversations"):
        assert error(post(svc.url, path, {"items": [given, given]}), 400)["param"] == "items[1]"
    assert get(svc.url, f"/v1/conversations/{conv}/items").json()["data"] == []
    # distinct ids are fine, and the SDK's pager walks them once
    _, doc = _json_post(svc.url, {"model": "mock-echo", "input": [given, {**given, "id": "msg_once"}, given | {"id": "m3"}]})
    with sdk(svc.url) as (client, _):
        assert [i.id for i in client.responses.input_items.list(doc["id"], limit=1)] == ["m3", "msg_once", "msg_twice"]


MALFORMED_REASONING = [
    {"type": "reasoning"},
    {"type": "reasoning", "summary": "oops", "content": 5, "encrypted_content": 9},
    {"type": "reasoning", "summary": [{"type": 0, "text": "t"}, "x", None], "content": [{"text": "c"}]},
]


def test_replayed_reasoning_stored_malformed_is_listed_as_the_sdk_takes_it(state_proxy, mock):
    """Replayed reasoning is never refused (Codex replays it every turn), so an item of it can be
    stored malformed; input_items, conversation item lists and a conversation item by id list it
    in the shape the openai SDK's ResponseReasoningItem takes (found by the live fuzz): parts
    with a text, a summary that is a list, no encrypted_content that is not a string."""
    from openai.types.conversations import ConversationItem, ConversationItemList
    from openai.types.responses import ResponseItemList
    from pydantic import TypeAdapter

    svc = state_proxy
    items = [{"role": "user", "content": "x"}, *MALFORMED_REASONING, {"role": "assistant", "content": "a"},
             {"role": "user", "content": "y"}]
    doc = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": items}).json()
    listed = get(svc.url, f"/v1/responses/{doc['id']}/input_items", order="asc").json()
    ResponseItemList.model_validate(listed)
    reasoning = [item for item in listed["data"] if item["type"] == "reasoning"]
    assert [r["summary"] for r in reasoning] == [[], [], [{"type": "summary_text", "text": "t"}]]
    assert [r.get("content") for r in reasoning] == [None, [], [{"type": "reasoning_text", "text": "c"}]]
    assert reasoning[1].get("encrypted_content") is None
    conv = post(svc.url, "/v1/conversations", {"items": MALFORMED_REASONING}).json()["id"]
    page = get(svc.url, f"/v1/conversations/{conv}/items", order="asc").json()
    ConversationItemList.model_validate(page)
    for item in page["data"]:
        one = get(svc.url, f"/v1/conversations/{conv}/items/{item['id']}").json()
        assert one == item
        TypeAdapter(ConversationItem).validate_python(one)
