"""Responses `input` / `instructions` → chat `messages`."""
from __future__ import annotations

from typing import Any

import pytest

from proxy.translate.errors import InvalidRequest
from proxy.translate.request import TranslationPolicy, translate_request


def tr(body: dict[str, Any], **policy: Any) -> tuple[dict[str, Any], Any]:
    return translate_request({"model": "m", **body}, TranslationPolicy(**policy), now=1)


def msgs(input_: Any, **body: Any) -> list[dict[str, Any]]:
    return tr({"input": input_, **body})[0]["messages"]


def err(body: dict[str, Any], **policy: Any) -> InvalidRequest:
    """The core's refusal (the edge answers it as a 400 invalid_request_error: tests/integration/test_core_edge.py)."""
    with pytest.raises(InvalidRequest) as info:
        translate_request(body, TranslationPolicy(**policy), now=1)
    return info.value


def test_string_input_is_one_user_message() -> None:
    chat, _ = tr({"input": "Hello"})
    assert chat["messages"] == [{"role": "user", "content": "Hello"}]
    assert chat["model"] == "m"
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}


def test_instructions_become_leading_system_message() -> None:
    assert msgs("Hi", instructions="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_easy_messages_without_type_and_string_content() -> None:
    assert msgs(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "q2"},
        ]
    ) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q2"},
    ]


def test_all_system_and_developer_messages_merge_into_one_leading_system() -> None:
    out = msgs(
        [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "D1"}]},
            {"role": "user", "content": "U1"},
            {"role": "system", "content": "S1"},
            {"role": "assistant", "content": "A1"},
            {"role": "developer", "content": [{"type": "input_text", "text": "D2a"}, {"type": "input_text", "text": "D2b"}]},
            {"role": "user", "content": "U2"},
        ],
        instructions="I",
    )
    assert out == [
        {"role": "system", "content": "I\n\nD1\n\nS1\n\nD2a\nD2b"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
    ]
    assert sum(m["role"] == "system" for m in out) == 1
    assert not any(m["role"] == "developer" for m in out)


def test_text_parts_become_plain_string() -> None:
    out = msgs(
        [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "phase": "final_answer",
                "content": [
                    {"type": "output_text", "text": "Hel", "annotations": [], "logprobs": []},
                    {"type": "output_text", "text": "lo", "annotations": []},
                ],
            },
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
        ]
    )
    assert out == [
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": "I can't."},
    ]


def test_input_image_string_url_and_data_url_with_detail() -> None:
    out = msgs(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                    {"type": "input_image", "image_url": "https://example.com/b.png"},
                ],
            }
        ]
    )
    assert out == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
            ],
        }
    ]


def test_text_after_image_keeps_part_order() -> None:
    out = msgs([{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://x/i.png"},
        {"type": "input_text", "text": "caption"},
    ]}])
    assert out[0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x/i.png"}},
        {"type": "text", "text": "caption"},
    ]


def test_input_image_file_id_is_rejected() -> None:
    e = err({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1", "detail": "auto"}]}]})
    assert e.param == "input[0].content[0].file_id"
    assert "file_id" in e.message


def test_input_file_data_and_url() -> None:
    out = msgs([{"role": "user", "content": [
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
        {"type": "input_file", "file_url": "https://example.com/b.pdf"},
    ]}])
    assert out[0]["content"] == [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_url": "https://example.com/b.pdf"}},
    ]


def test_input_file_without_data_is_rejected() -> None:
    e = err({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_9"}]}]})
    assert e.param == "input[0].content[0].file_id"
    e = err({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "filename": "x"}]}]})
    assert e.param == "input[0].content[0].file_data"


def test_images_not_allowed_in_assistant_or_system_content() -> None:
    for role in ("assistant", "system", "developer"):
        e = err({"model": "m", "input": [{"role": role, "content": [{"type": "input_image", "image_url": "https://x"}]}]})
        assert e.param == "input[0].content[0].type"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "input[1]"),
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[1]"),
        ({"type": "compaction", "encrypted_content": "x"}, "input[1].encrypted_content"),  # not one of ours
        ({"type": "something_new"}, "input[1]"),
        ({"content": "no role, no type"}, "input[1].type"),
        ({"role": "tool", "content": "x"}, "input[1].role"),
        ({"role": "user"}, "input[1].content"),
        ({"role": "user", "content": 5}, "input[1].content"),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input[1].content[0].type"),
        ({"role": "user", "content": [{"type": "input_text"}]}, "input[1].content[0].text"),
        ({"role": "user", "content": ["bare string"]}, "input[1].content[0]"),
        ("not an item", "input[1]"),
    ],
)
def test_unservable_items_are_400_naming_the_index(item: Any, param: str) -> None:
    e = err({"model": "m", "input": [{"role": "user", "content": "ok"}, item]})
    assert e.param == param
    assert param.split(".")[0] in e.message or "input[1]" in e.message


@pytest.mark.parametrize(
    "item",
    [
        {"role": "user", "content": "x", "status": "bogus"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}], "status": 7},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "status": "done"},
        {"type": "function_call_output", "call_id": "c", "output": "o", "status": ""},
        {"type": "custom_tool_call", "call_id": "c", "name": "f", "input": "x", "status": ["completed"]},
        {"type": "reasoning", "summary": [], "status": "thinking"},
    ],
)
def test_an_item_status_outside_the_three_is_a_400(item: dict[str, Any]) -> None:
    """Items are stored as sent: a status the openai SDK's item types do not have came back from
    input_items (and conversation items) in a shape the SDK cannot parse (found by the live fuzz)."""
    lead: list[dict[str, Any]] = [{"role": "user", "content": "ok"}]
    tail: list[dict[str, Any]] = []  # (calls and outputs answer each other)
    if item.get("type") == "function_call_output":
        lead.append({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"})
    elif item.get("type") in ("function_call", "custom_tool_call"):
        tail.append({"type": item["type"] + "_output", "call_id": "c", "output": "o"})
    at = f"input[{len(lead)}].status"
    e = err({"model": "m", "input": [*lead, item, *tail]})
    assert e.param == at
    assert e.message.startswith(f"Invalid '{at}': expected 'in_progress', 'completed' or 'incomplete'")
    for status in ("in_progress", "completed", "incomplete", None):
        msgs([*lead, {**item, "status": status}, *tail])


def test_a_message_phase_outside_the_spec_enum_is_a_400() -> None:
    """Stored and listed as sent, like status: any other value came back from input_items in a
    shape the openai SDK's types refuse (found by the live fuzz)."""
    item = {"type": "message", "role": "assistant", "content": "a"}
    for bad in ("final", {"x": 1}, 3):
        e = err({"model": "m", "input": [{"role": "user", "content": "ok"}, {**item, "phase": bad}]})
        assert e.param == "input[1].phase" and "'commentary' or 'final_answer'" in e.message
    for phase in ("commentary", "final_answer", None):
        assert msgs([{"role": "user", "content": "ok"}, {**item, "phase": phase}])[1] == {"role": "assistant", "content": "a"}


_CITE = {"type": "url_citation", "start_index": 0, "end_index": 1, "url": "https://x", "title": "t"}
_LOGPROB = {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [{"token": "b", "logprob": -1, "bytes": [98]}]}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"annotations": None}, "annotations"),
        ({"annotations": "x"}, "annotations"),
        ({"annotations": [5]}, "annotations[0]"),
        ({"annotations": [{"type": "bogus"}]}, "annotations[0].type"),
        ({"annotations": [{**_CITE, "start_index": [31]}]}, "annotations[0].start_index"),
        ({"annotations": [{**_CITE, "end_index": True}]}, "annotations[0].end_index"),
        ({"annotations": [{k: v for k, v in _CITE.items() if k != "url"}]}, "annotations[0].url"),
        ({"annotations": [{"type": "file_citation", "file_id": "f", "filename": "n"}]}, "annotations[0].index"),
        ({"logprobs": {}}, "logprobs"),
        ({"logprobs": [{**_LOGPROB, "token": 1}]}, "logprobs[0].token"),
        ({"logprobs": [{**_LOGPROB, "bytes": ["a"]}]}, "logprobs[0].bytes"),
        ({"logprobs": [{**_LOGPROB, "top_logprobs": [{"token": "b", "logprob": "x", "bytes": []}]}]},
         "logprobs[0].top_logprobs[0].logprob"),
    ],
)
def test_a_replayed_output_text_part_is_shaped_as_the_sdk_lists_it(extra: dict[str, Any], param: str) -> None:
    """``annotations`` and ``logprobs`` never go upstream but are stored and listed as sent: any
    other shape came back from input_items in one the openai SDK refuses (found by the live fuzz)."""
    said = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a", **extra}]}
    e = err({"model": "m", "input": [{"role": "user", "content": "ok"}, said]})
    assert e.param == "input[1].content[0]." + param, e.message


def test_output_text_parts_as_the_sdk_lists_them_are_replayed() -> None:
    kinds = [_CITE, {"type": "file_citation", "file_id": "f", "filename": "n", "index": 0},
             {"type": "container_file_citation", "container_id": "c", "file_id": "f", "filename": "n",
              "start_index": 0, "end_index": 1}, {"type": "file_path", "file_id": "f", "index": 0}]
    part = {"type": "output_text", "text": "a", "annotations": kinds, "logprobs": [_LOGPROB]}
    for extra in (part, {"type": "output_text", "text": "a", "logprobs": None}):
        said = {"type": "message", "role": "assistant", "content": [extra]}
        assert msgs([{"role": "user", "content": "ok"}, said])[1] == {"role": "assistant", "content": "a"}


def test_item_reference_message_is_clear() -> None:
    e = err({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]})
    assert "item_reference" in e.message and "input[0]" in e.message


@pytest.mark.parametrize("bad", [None, 5, {"role": "user"}, True])
def test_input_missing_or_wrong_type(bad: Any) -> None:
    body = {"model": "m"} if bad is None else {"model": "m", "input": bad}
    assert err(body).param == "input"


def test_empty_input_list_is_rejected_but_instructions_alone_are_kept() -> None:
    assert err({"model": "m", "input": []}).param == "input"
    assert msgs([], instructions="sys") == [{"role": "system", "content": "sys"}]


def test_empty_string_input_is_a_user_message() -> None:
    assert msgs("") == [{"role": "user", "content": ""}]


@pytest.mark.parametrize("ptype", ["input_audio", "input_video"])
def test_audio_and_video_parts_are_a_clear_400_naming_the_index(ptype: str) -> None:
    part = {"type": ptype, "input_audio": {"data": "AAAA", "format": "wav"}}
    e = err({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}, part]}]})
    assert e.param == "input[0].content[1].type"
    assert e.code == "unsupported_content_type"
    assert ptype in e.message and "not supported" in e.message


def test_item_reference_without_type_is_recognised() -> None:
    # The openai SDK's ItemReference has an optional `type`: {"id": ...} alone.
    e = err({"model": "m", "input": [{"role": "user", "content": "x"}, {"id": "msg_1"}]})
    assert e.param == "input[1]" and e.code == "unsupported_input_item"
    assert "item_reference" in e.message
