"""Every field the openai SDK declares on an input item, given a value of the wrong type.

Input items are stored as sent and listed back (``GET /v1/responses/{id}/input_items``, the
Conversations API) as the SDK's ``ResponseItem`` / ``ConversationItem``. A wrong-typed field the
proxy kept made every later listing fail the SDK's own types (found for ``call_id: 5``, a part's
``text: 5``, ``name: 0``). OpenAI refuses such input with a 400 naming the field. So, for each item
type the proxy serves, this puts a wrong-typed value into each field the SDK declares on it
(read from the SDK's own models, nested parts, annotations and logprobs included, the optional
fields the item left out too) and asserts either a 400 naming that path (or a field inside it),
or that the item, as it would be stored, lists under both of the SDK's types.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.types.conversations import ConversationItem
from openai.types.responses import ResponseItem
from pydantic import BaseModel, TypeAdapter

from proxy.store import InvalidItem, prepare_items
from proxy.store.items import listed
from proxy.translate.compaction import compaction_item
from proxy.translate.errors import InvalidRequest
from proxy.translate.messages import check_items
from proxy.translate.request import TranslationPolicy, translate_request

RESPONSE_ITEM: TypeAdapter = TypeAdapter(ResponseItem)
CONVERSATION_ITEM: TypeAdapter = TypeAdapter(ConversationItem)

# One of each JSON type (and a bool, which Python counts as an int), and shapes that look right
# one level down: whichever a field does not take must be refused or listed as the SDK takes it.
WRONG: tuple[Any, ...] = (
    5, 1.5, True, "s", None, [], {}, [5], ["s"], {"k": 5}, {"type": "s"}, {"url": "https://example.com/b.png"},
)

TEXT = {"type": "input_text", "text": "hi"}
IMAGE = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}
FILE = {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}
LOGPROB = {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]}]}
OUTPUT_TEXT = {
    "type": "output_text", "text": "answer",
    "annotations": [{"type": "url_citation", "start_index": 0, "end_index": 6, "url": "https://example.com",
                     "title": "Example"}],
    "logprobs": [LOGPROB],
}
CALLER = {"type": "direct"}

# (items before, the item, items after): the neighbours a call or an output needs.
CALL = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
CUSTOM = {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "x"}
FOR_CALL = [{"type": "function_call_output", "call_id": "c1", "output": "ok"}]
FOR_CUSTOM = [{"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"}]
CASES: dict[str, tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]] = {
    "user message": ([], {"type": "message", "id": "msg_1", "role": "user", "status": "completed",
                          "content": [TEXT, IMAGE, FILE]}, []),
    "developer message": ([], {"type": "message", "id": "msg_1", "role": "developer", "content": [TEXT]},
                          [{"role": "user", "content": "q"}]),
    "assistant message": ([], {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                               "phase": "final_answer", "content": [OUTPUT_TEXT, {"type": "refusal", "refusal": "no"}]},
                          []),
    "function_call": ([], {**CALL, "id": "fc_1", "status": "completed", "namespace": "ns", "caller": CALLER,
                           "created_by": "u"}, FOR_CALL),
    "function_call_output": ([CALL], {**FOR_CALL[0], "id": "fco_1", "status": "completed"}, []),
    "function_call_output parts": ([CALL], {**FOR_CALL[0], "id": "fco_1", "status": "completed",
                                            "output": [TEXT, IMAGE, FILE]}, []),
    "custom_tool_call": ([], {**CUSTOM, "id": "ctc_1", "status": "completed", "caller": CALLER}, FOR_CUSTOM),
    "custom_tool_call_output": ([CUSTOM], {**FOR_CUSTOM[0], "id": "ctco_1", "status": "completed"}, []),
    "custom_tool_call_output parts": ([CUSTOM], {**FOR_CUSTOM[0], "id": "ctco_1", "output": [TEXT, IMAGE, FILE]}, []),
    "reasoning": ([{"role": "user", "content": "q"}], {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "s"}],
                       "content": [{"type": "reasoning_text", "text": "t"}], "encrypted_content": "e"}, []),
    "compaction": ([], {**compaction_item("the summary"), "created_by": "u"}, []),
}


def _sdk_paths(model: BaseModel, path: tuple[Any, ...] = ()) -> set[tuple[Any, ...]]:
    """The path of every field ``model``'s type declares (by its JSON name), and those of the
    fields of each model nested in it."""
    paths: set[tuple[Any, ...]] = set()
    for name, field in type(model).model_fields.items():
        key = (*path, field.alias or name)
        paths.add(key)
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            paths |= _sdk_paths(value, key)
        elif isinstance(value, list):
            for i, element in enumerate(value):
                if isinstance(element, BaseModel):
                    paths |= _sdk_paths(element, (*key, i))
    return paths


def _param(at: str, path: tuple[Any, ...]) -> str:
    return at + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _put(item: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(item)
    holder: Any = out
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return out


def _stored(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` as the store keeps it and lists it."""
    return listed(prepare_items([item])[0])


def _problem(lead: list[dict[str, Any]], item: dict[str, Any], tail: list[dict[str, Any]],
             path: tuple[Any, ...]) -> str | None:
    """What is wrong with how ``item`` (its ``path`` made wrong) is served: None when it is
    refused naming the path, or accepted and listed under the SDK's types, on both routes."""
    at = f"input[{len(lead)}]"
    want = _param(at, path)
    # The item's kind (its "type") wrong: refused as the item it then is, named by the item.
    names = {want, _param(at, path[:-1])} if path[-1] == "type" else {want}
    try:
        translate_request({"model": "m", "input": [*lead, item, *tail]}, TranslationPolicy(), now=1)
    except InvalidRequest as exc:
        if path == ("call_id",) and exc.param == "input" and exc.message.startswith("No tool"):
            return None  # another string: the call or output it answered is missing
        if exc.param in names or any(str(exc.param).startswith(n + c) for n in names for c in ".["):
            try:  # the conversation routes refuse it as well, named items[i]
                check_items([*lead, item], "items")
            except InvalidRequest as conv:
                if conv.param != "items" + str(exc.param)[len("input"):]:
                    return f"the conversation route names {conv.param!r}, input named {exc.param!r}"
                return None
            return f"input refused it ({exc.param!r}) but the conversation route takes it"
        return f"refused naming {exc.param!r}, not {want!r}: {exc.message}"
    try:
        stored = _stored(item)
    except InvalidItem as exc:
        return f"accepted by input, refused by the store naming {exc.param!r}: {exc}"
    for name, adapter in (("ResponseItem", RESPONSE_ITEM), ("ConversationItem", CONVERSATION_ITEM)):
        try:
            adapter.validate_python(stored)
        except ValueError as exc:
            return f"accepted, then listed as no {name}: {str(exc).splitlines()[0:3]}"
    return None


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_typed_sdk_field_is_a_400_naming_it_or_lists_as_the_sdk_types(case: str) -> None:
    lead, item, tail = CASES[case]
    translate_request({"model": "m", "input": [*lead, item, *tail]}, TranslationPolicy(), now=1)
    stored = _stored(item)
    paths = _sdk_paths(RESPONSE_ITEM.validate_python(stored)) | _sdk_paths(CONVERSATION_ITEM.validate_python(stored))
    assert len(paths) >= 4, paths
    problems = []
    for path in sorted(paths, key=str):
        for value in WRONG:
            problem = _problem(lead, _put(item, path, value), tail, path)
            if problem is not None:
                problems.append(f"{_param('', path)} = {value!r}: {problem}")
    assert not problems, "\n".join(problems)


def _refusal(input_: list[Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        translate_request({"model": "m", "input": input_}, TranslationPolicy(), now=1)
    return info.value


@pytest.mark.parametrize(
    ("item", "param", "expected"),
    [
        ({**FOR_CALL[0], "name": 0}, "input[1].name", "a string, got 0"),
        ({**FOR_CALL[0], "created_by": ["u"]}, "input[1].created_by", "a string, got a value of type array"),
        ({**FOR_CALL[0], "caller": "direct"}, "input[1].caller", "an object, got 'direct'"),
        ({**FOR_CALL[0], "caller": {"type": "program"}}, "input[1].caller.caller_id", None),
        ({**FOR_CALL[0], "id": 7}, "input[1].id", "a string, got 7"),
        ({**FOR_CALL[0], "output": [{**IMAGE, "detail": "ultra"}]}, "input[1].output[0].detail",
         "'auto', 'low', 'high' or 'original', got 'ultra'"),
        ({**FOR_CALL[0], "output": [{**FILE, "file_url": 5}]}, "input[1].output[0].file_url", "a string, got 5"),
        ({"role": "user", "content": [{**TEXT, "prompt_cache_breakpoint": {"mode": "implicit"}}]},
         "input[1].content[0].prompt_cache_breakpoint.mode", "'explicit', got 'implicit'"),
    ],
)
def test_the_400_follows_the_convention_of_the_other_type_checks(item: dict[str, Any], param: str,
                                                                  expected: str | None) -> None:
    e = _refusal([CALL, item])
    assert e.param == param
    if expected is not None:
        assert (e.message, e.code) == (f"Invalid '{param}': expected {expected}.", None)


def test_fields_the_sdk_does_not_declare_are_kept_as_sent_and_detail_original_is_served() -> None:
    """Unknown fields are neither refused nor dropped (clients send their own); ``original`` is one
    of the SDK's image details (the chat backend gets its default); a Chat-style ``image_url``
    object, tolerated, is listed as the URL string the SDK declares."""
    item = {**CALL, "x-client": 5, "metadata": {"k": [1]}}
    image = {"type": "input_image", "image_url": {"url": "https://example.com/a.png"}, "detail": "original"}
    message = {"role": "user", "content": [image], "extra": None}
    chat, _ = translate_request({"model": "m", "input": [message, item, *FOR_CALL]}, TranslationPolicy(), now=1)
    assert chat["messages"][0]["content"] == [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    assert {k: _stored(item)[k] for k in ("x-client", "metadata")} == {"x-client": 5, "metadata": {"k": [1]}}
    listed_message = _stored(message)
    assert listed_message["content"][0] == {**image, "image_url": "https://example.com/a.png"}
    RESPONSE_ITEM.validate_python(listed_message)
