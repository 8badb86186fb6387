"""The compaction core (``proxy.translate.compaction``) and its settings on their own."""
from __future__ import annotations

import pytest

from proxy import settings
from proxy.translate import compaction as cmp
from proxy.translate.errors import InvalidRequest
from proxy.translate.reasoning_codec import PREFIX as REASONING_PREFIX
from proxy.translate.reasoning_codec import encode_reasoning
from proxy.translate.request import TranslationPolicy, translate_request
from tests.conformance_ws import check_compacted, check_trigger_stream

CONVERSATION = [
    {"role": "user", "content": "first ask"},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "result"},
    {"role": "assistant", "content": "answer"},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second ask"}]},
]


def test_the_trigger_is_found_only_last():
    body = {"model": "m", "input": [*CONVERSATION, {"type": "compaction_trigger"}]}
    assert cmp.has_trigger(body) and cmp.split_trigger(body)["input"] == CONVERSATION
    assert not cmp.has_trigger({"input": "text"}) and cmp.split_trigger({"input": CONVERSATION}) is None


def test_the_summary_request_offers_no_tools_and_asks_last():
    body = {"model": "m", "instructions": "sys", "tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
            "text": {"format": {"type": "json_object"}}, "input": CONVERSATION, "stream": True, "reasoning": {"effort": "low"}}
    request = cmp.summary_request(body, "Summarize.")
    assert set(request) == {"model", "instructions", "reasoning", "input", "stream", "store"}
    assert request["input"][-1] == {"type": "message", "role": "user", "content": "Summarize."}
    chat, ctx = translate_request(request, TranslationPolicy())
    assert "tools" not in chat and chat["messages"][-1] == {"role": "user", "content": "Summarize."}
    assert not ctx.stream


def test_a_compaction_item_round_trips_as_the_summary_and_foreign_ones_are_refused():
    item = cmp.compaction_item("the summary")
    chat, _ = translate_request({"model": "m", "input": [item, {"role": "user", "content": "go"}]}, TranslationPolicy())
    assert chat["messages"] == [{"role": "user", "content": cmp.SUMMARY_HEADING + "the summary"},
                                {"role": "user", "content": "go"}]
    for blob in ("gAAAA-sealed", encode_reasoning("a reasoning blob is not a summary"), cmp.PREFIX + "!!"):
        with pytest.raises(InvalidRequest) as refused:
            translate_request({"model": "m", "input": [{"type": "compaction", "encrypted_content": blob}]}, TranslationPolicy())
        assert refused.value.param == "input[0].encrypted_content"
    assert encode_reasoning("x").startswith(REASONING_PREFIX) and not REASONING_PREFIX.startswith(cmp.PREFIX)


def test_compacted_response_and_trigger_stream_shapes():
    compacted = check_compacted(cmp.compacted_response(items=CONVERSATION, summary="s", usage=None, created_at=1))
    assert [m["content"] for m in compacted["output"][:-1]] == [
        [{"type": "input_text", "text": "first ask"}], [{"type": "input_text", "text": "second ask"}],
    ]
    _, ctx = translate_request({"model": "m", "input": CONVERSATION, "stream": True}, TranslationPolicy())
    final = cmp.trigger_response(cmp.in_progress(ctx), cmp.compaction_item("s"), None, 2)
    assert check_trigger_stream(cmp.trigger_stream(ctx, final)) == final


def test_compaction_prompt_settings(tmp_path):
    assert settings.load({}).compaction_prompt is None
    assert settings.load({"COMPACTION_PROMPT": " Be short. "}).compaction_prompt == "Be short."
    path = tmp_path / "prompt.txt"
    path.write_text("From a file.\n")
    assert settings.load({"COMPACTION_PROMPT_FILE": str(path)}).compaction_prompt == "From a file."
    for env in ({"COMPACTION_PROMPT_FILE": str(tmp_path / "missing")}, {"COMPACTION_PROMPT_FILE": str(path), "COMPACTION_PROMPT": "x"}):
        with pytest.raises(settings.SettingsError, match="COMPACTION_PROMPT"):
            settings.load(env)
    s = settings.load({"WEBSOCKET_MAX_SECS": "120", "WEBSOCKET_PING_SECS": "5"})
    assert (s.websocket_max_secs, s.websocket_ping_secs) == (120.0, 5.0)
    with pytest.raises(settings.SettingsError, match="WEBSOCKET_MAX_SECS"):
        settings.load({"WEBSOCKET_MAX_SECS": "0"})
    lanes = settings.load({})
    assert (lanes.websocket_max_lanes, lanes.websocket_max_active, lanes.websocket_max_queued) == (32, 16, 64)
    lanes = settings.load({"WEBSOCKET_MAX_LANES": "0", "WEBSOCKET_MAX_ACTIVE": "1", "WEBSOCKET_MAX_QUEUED": "0"})
    assert (lanes.websocket_max_lanes, lanes.websocket_max_active, lanes.websocket_max_queued) == (0, 1, 0)
    with pytest.raises(settings.SettingsError, match="WEBSOCKET_MAX_ACTIVE"):
        settings.load({"WEBSOCKET_MAX_ACTIVE": "0"})
