"""URL citations (chat ``annotations``) become the Responses ``url_citation`` annotations of the
message's text: OpenRouter's web search streams them in deltas before the text, OpenAI's search
models put them on the message. Every event and Response is checked by ``tests/conformance.py``
(the openai SDK's types and Open Responses' models, and the stream's state machine: each
``response.output_text.annotation.added`` on an open text part, in ``annotation_index`` order,
and the part's final ``annotations`` equal to them)."""
from __future__ import annotations

import orjson

from proxy.relay import Outcome, _feed_completion
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_stream
from tests.fixtures.backends import load_all
from tests.unit.test_real_backends_unit import replay
from tests.unit.test_stream_backends import both, texts
from tests.unit.test_stream_corpus import ch, make_ctx

OPENROUTER = next(fx for fx in load_all() if fx.id == "openrouter/annotations-in-delta.sse")


def _recorded_citations() -> list[dict]:
    """The url_citation bodies of the recording, in order, as the backend sent them."""
    out = []
    for line in OPENROUTER.body.decode().splitlines():
        if line.startswith("data: {"):
            for choice in orjson.loads(line[6:]).get("choices") or ():
                for note in (choice.get("delta") or {}).get("annotations") or ():
                    out.append(note["url_citation"])
    return out


def test_openrouter_citations_streamed_before_the_text_annotate_it() -> None:
    recorded = _recorded_citations()
    assert len(recorded) >= 3
    events, response, _ = replay(OPENROUTER, stream=True)
    final = check_stream(events)
    (message,) = [item for item in final["output"] if item["type"] == "message"]
    (part,) = message["content"]
    assert part["text"] == OPENROUTER.expect["text"]
    assert part["annotations"] == [
        {"type": "url_citation", "url": c["url"], "title": c["title"], "start_index": c["start_index"],
         "end_index": c["end_index"]}
        for c in recorded
    ]
    at = [i for i, e in enumerate(events) if e["type"] == "response.output_text.annotation.added"]
    added = [events[i] for i in at]
    assert [e["annotation_index"] for e in added] == list(range(len(recorded)))
    assert {(e["item_id"], e["output_index"], e["content_index"]) for e in added} == {(message["id"], 0, 0)}
    # They came first: every one before the first text delta, as the backend sent them.
    first_delta = next(i for i, e in enumerate(events) if e["type"] == "response.output_text.delta")
    assert max(at) < first_delta
    # A JSON client of the same stream gets the same annotations.
    _, json_response, _ = replay(OPENROUTER, stream=False)
    assert json_response["output"][0]["content"][0]["annotations"] == part["annotations"]


def test_a_whole_message_with_annotations_keeps_them_on_its_text() -> None:
    """OpenAI's search models: ``message.annotations`` of a non-streamed answer, after the text."""
    citation = {"url": "https://example.com/a", "title": "A", "start_index": 4, "end_index": 9}
    doc = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
           "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "See [A] for it.",
                                    "annotations": [{"type": "url_citation", "url_citation": citation}]}}]}
    translator = StreamTranslator(make_ctx())
    final = check_stream(translator.start() + _feed_completion(translator, orjson.dumps(doc), Outcome()))
    (part,) = final["output"][0]["content"]
    assert part == {"type": "output_text", "text": "See [A] for it.", "logprobs": [],
                    "annotations": [{"type": "url_citation", **citation}]}
    assert translator.unmapped == set()


def test_other_annotations_are_named_and_a_citation_without_a_title_gets_an_empty_one() -> None:
    chunks = [
        ch({"content": "Hello"}),
        ch({"content": "", "annotations": [
            {"type": "file_citation", "file_citation": {"file_id": "f"}},
            "not an object",
            {"type": "url_citation", "url_citation": {"url": "https://example.com/b"}},
            {"type": "url_citation", "url_citation": {"url": 5}},
        ]}, "stop"),
    ]
    final, t = both(chunks)
    assert texts(final) == ("", "Hello")
    assert final["output"][0]["content"][0]["annotations"] == [
        {"type": "url_citation", "url": "https://example.com/b", "title": "", "start_index": 0, "end_index": 0}
    ]
    assert t.unmapped == {
        "choices[].delta.annotations[type=file_citation]", "choices[].delta.annotations[type=None]",
        "choices[].delta.annotations[type=url_citation]",
    }


def test_annotations_that_are_not_a_list_fail_the_response_as_malformed() -> None:
    final, t = both([ch({"content": "Hi"}), ch({"content": "", "annotations": {"type": "url_citation"}})], end="eof")
    assert final["status"] == "failed" and t.failure is not None and t.failure.kind == "malformed"
    assert "choices[].delta.annotations" in t.failure.message


def test_citations_alone_open_a_message_after_reasoning() -> None:
    """No text yet (reasoning open): the citations close the reasoning and open the message's
    text part; the text that follows lands in that part."""
    citation = {"url": "https://example.com/c", "title": "C", "start_index": 0, "end_index": 4}
    chunks = [
        ch({"reasoning_content": "thinking"}),
        ch({"content": "", "annotations": [{"type": "url_citation", "url_citation": citation}]}),
        ch({"content": "Text"}, "stop"),
    ]
    final, _ = both(chunks)
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][1]["content"] == [
        {"type": "output_text", "text": "Text", "logprobs": [], "annotations": [{"type": "url_citation", **citation}]}
    ]
