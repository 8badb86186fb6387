"""The pure parts of the store: the API objects the routes send (validated with the openai SDK's
own types), items completed for storage, the checks of list parameters and metadata, owners."""
from __future__ import annotations

import pytest
from openai.pagination import SyncConversationCursorPage, SyncCursorPage
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)
from openai.types.responses import ResponseItem, ResponseItemList
from pydantic import TypeAdapter

from proxy.store import InvalidItem, ItemPage, owner_of, prepare_items
from proxy.store import shapes as sh

SHORT_FORMS = [
    "just a string",
    [{"role": "user", "content": "no type, no id"}],
    [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "parts"}]}],
    [{"role": "system", "content": "system"}],
    [{"type": "function_call_output", "call_id": "call_1", "output": "42"}],
    [{"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}],
    [{"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"}],
    [{"type": "custom_tool_call_output", "call_id": "call_2", "output": "done"}],
    [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"}],
]


@pytest.mark.parametrize("raw", SHORT_FORMS)
def test_prepared_items_have_the_full_shapes_the_sdk_lists(raw):
    items = prepare_items(raw)
    for item in items:
        assert item["id"]
        TypeAdapter(ConversationItem).validate_python(item)
        if item.get("role") != "assistant":
            TypeAdapter(ResponseItem).validate_python(item)
    ResponseItemList.model_validate(sh.item_list(ItemPage(items)))
    ConversationItemList.model_validate(sh.item_list(ItemPage(items)))


def test_image_parts_are_listed_with_their_default_detail_and_stored_as_sent():
    image = {"type": "input_image", "image_url": "https://example.com/a.png"}
    raw = [{"role": "user", "content": [image]},
           {"type": "function_call_output", "call_id": "c", "output": [image, {**image, "detail": "low"}]}]
    items = prepare_items(raw)
    assert items[0]["content"] == [image]  # the stored form is what the client sent
    page = sh.item_list(ItemPage(items))
    ConversationItemList.model_validate(page)
    ResponseItemList.model_validate(page)
    assert page["data"][0]["content"] == [{**image, "detail": "auto"}]
    assert [p["detail"] for p in page["data"][1]["output"]] == ["auto", "low"]
    assert items[0]["content"] == [image]  # listing changes nothing stored
    plain = prepare_items("no image")
    assert sh.item_list(ItemPage(plain))["data"][0] is plain[0]  # nothing missing: no copy


def test_assistant_messages_in_input_become_output_messages():
    [item] = prepare_items([{"role": "assistant", "content": "said before"}])
    assert item["content"] == [{"type": "output_text", "text": "said before", "annotations": []}]
    TypeAdapter(ResponseItem).validate_python(item)
    [parts] = prepare_items([{"role": "assistant", "content": [{"type": "output_text", "text": "x"}]}])
    assert parts["content"][0]["annotations"] == []


def test_prepared_items_keep_given_ids_and_get_typed_fresh_ones():
    given = {"id": "msg_given", "type": "message", "role": "user", "content": "x", "status": "incomplete"}
    raw = [given, {"role": "user", "content": "y"}, {"type": "function_call_output", "call_id": "c", "output": "z"}]
    items = prepare_items(raw)
    assert items[0]["id"] == "msg_given" and items[0]["status"] == "incomplete"
    assert items[1]["id"].startswith("msg_") and items[2]["id"].startswith("fco_")
    assert len(items[1]["id"]) == len("msg_") + 32
    assert raw[1] == {"role": "user", "content": "y"}  # the caller's items are left as they were
    assert prepare_items(items) == items  # preparing twice changes nothing


@pytest.mark.parametrize(
    "raw, param",
    [
        ([42], "input[0]"),
        ([{"content": "no type, no role"}], "input[0]"),
        ([{"ok": 1}, {"type": "item_reference", "id": "msg_1"}], "input[0]"),
        ([{"role": "user", "content": "x"}, {"type": "item_reference", "id": "msg_1"}], "input[1]"),
        ([{"role": "user", "content": 5}], "input[0]"),
        ([{"role": "user", "content": "x", "id": "x" * 300}], "input[0].id"),  # (the field its message names)
        ([{"role": "user", "content": "x", "id": 7}], "input[0].id"),
    ],
)
def test_bad_items_are_refused_naming_the_item(raw, param):
    with pytest.raises(InvalidItem) as caught:
        prepare_items(raw)
    assert caught.value.param == param


def test_objects_match_the_sdk_types():
    conv = sh.conversation("conv_1", 1_770_000_000, {"k": "v"})
    assert Conversation.model_validate(conv).model_dump() == conv
    deleted = sh.conversation_deleted("conv_1")
    assert ConversationDeletedResource.model_validate(deleted).model_dump() == deleted
    assert sh.response_deleted("resp_1") == {"id": "resp_1", "object": "response", "deleted": True}


def test_a_list_page_names_its_ends_and_the_sdks_pages_follow_it():
    items = prepare_items("a") + prepare_items("b")
    page = sh.item_list(ItemPage(items, has_more=True))
    assert (page["first_id"], page["last_id"], page["has_more"]) == (items[0]["id"], items[1]["id"], True)
    assert ConversationItemList.model_validate(page).last_id == items[1]["id"]
    empty = sh.item_list(ItemPage([]))
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    # what the SDK's list() calls parse: no next page after an empty or a last page
    conv_page = SyncConversationCursorPage[ConversationItem].model_validate(empty)
    assert conv_page.next_page_info() is None and not conv_page.has_next_page()
    assert not SyncCursorPage[ResponseItem].model_validate(empty).has_next_page()


def test_list_parameters_default_and_are_checked():
    assert sh.list_params(None, None, None) == sh.ListParams(20, "desc", None)
    assert sh.list_params("100", "asc", "msg_1") == sh.ListParams(100, "asc", "msg_1")
    assert sh.list_params("1", "", "") == sh.ListParams(1, "desc", None)
    # ASCII digits only: int() alone reads " 5", "+5", "1_0" and "٥" (an Arabic-Indic five).
    for limit in ("0", "101", "ten", "1.5", "-1", " 5", "+5", "1_0", "\u0665"):
        with pytest.raises(sh.InvalidParam) as caught:
            sh.list_params(limit, None, None)
        assert caught.value.param == "limit"
    with pytest.raises(sh.InvalidParam) as caught:
        sh.list_params(None, "newest", None)
    assert caught.value.param == "order"


def test_metadata_follows_openais_rules():
    assert sh.check_metadata(None) == {}
    ok = {f"k{i}": "v" * 512 for i in range(16)}
    assert sh.check_metadata(ok) == ok
    for bad, param in [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"k": "v" * 513}, "metadata.k"),
        ({"k": 1}, "metadata.k"),
        (["k"], "metadata"),
    ]:
        with pytest.raises(sh.InvalidParam) as caught:
            sh.check_metadata(bad)
        assert caught.value.param == param


def test_owners_are_keyed_hashes_that_never_contain_the_key():
    key = "sk-proj-0123456789abcdef-SECRET"
    plain, keyed = owner_of(key), owner_of(key, b"deployment-secret")
    assert plain == owner_of(key) and len(plain) == 32 and int(plain, 16) >= 0
    assert keyed != plain and keyed != owner_of(key, b"another-secret")
    assert owner_of(key + "x") != plain
    assert "SECRET" not in plain and key[:10] not in keyed
    assert owner_of("\udcff broken surrogate")  # any str, never a crash


CHAT_INPUTS = [
    [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": [{"type": "input_text", "text": "and?"}]}],
    [{"role": "user", "content": "run it"},
     {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}]},
     {"type": "function_call", "call_id": "c1", "name": "exec", "arguments": "{}"},
     {"type": "function_call_output", "call_id": "c1", "output": "ok"},
     {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
     {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"}],
]


@pytest.mark.parametrize("raw", CHAT_INPUTS)
def test_stored_items_reach_the_backend_exactly_as_the_input_they_came_from(raw):
    """History is replayed from stored (prepared) items: the translator must see no difference."""
    from proxy.translate.messages import translate_input

    assert translate_input(prepare_items(raw), "sys", keep_reasoning=True) == translate_input(
        raw, "sys", keep_reasoning=True
    )


def test_item_references_resolve_in_place_and_unknown_ones_are_named():
    from proxy.store import referenced_ids, resolve_references

    stored = prepare_items([{"role": "user", "content": "stored before"}])[0]
    raw = [{"role": "user", "content": "new"}, {"type": "item_reference", "id": stored["id"]}, {"id": stored["id"]}]
    assert referenced_ids(raw) == [stored["id"], stored["id"]]
    assert resolve_references(raw, {stored["id"]: stored}) == [raw[0], stored, stored]
    assert referenced_ids("plain string") == [] and resolve_references("plain string", {}) == "plain string"
    with pytest.raises(InvalidItem) as caught:
        resolve_references([raw[0], {"type": "item_reference", "id": "msg_gone"}], {})
    assert caught.value.param == "input[1]" and "msg_gone" in str(caught.value)
    for malformed in ({"type": "item_reference", "id": 5}, {"type": "item_reference", "id": ""},
                      {"type": "item_reference"}):
        assert referenced_ids([raw[0], malformed]) == [""]  # still resolved, so refused by position
        with pytest.raises(InvalidItem) as caught:
            resolve_references([raw[0], malformed], {})
        assert caught.value.param == "input[1].id" and "non-empty id" in str(caught.value)


def test_the_conversation_parameter_is_an_id_or_an_object_with_one():
    assert sh.conversation_param("conv_1") == "conv_1" == sh.conversation_param({"id": "conv_1"})
    for bad, param in [("", "conversation"), (7, "conversation"), ({"id": None}, "conversation.id"), ({}, "conversation.id")]:
        with pytest.raises(sh.InvalidParam) as caught:
            sh.conversation_param(bad)
        assert caught.value.param == param


def test_input_encoded_beforehand_is_stored_as_if_encoded_with_the_output():
    from proxy.store import NewResponse
    from proxy.store.items import encode_items, response_parts

    given = prepare_items([{"role": "user", "content": "one"}, {"role": "user", "content": "two"}])
    output = [{"id": "msg_out", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "three", "annotations": []}]}]
    for own, out in ((given, output), ([], output), (given, []), ([], [])):
        plain = response_parts(NewResponse("resp_1", b"{}", own, out))
        reused = response_parts(NewResponse("resp_1", b"{}", own, out, input_json=encode_items(own)))
        assert reused == plain
