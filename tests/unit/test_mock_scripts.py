"""Pure parts of the mock: plan building and the script queue, without a socket."""
from __future__ import annotations

from proxy.mock.scripts import build_plan, builtin_script, last_user_text
from proxy.mock.state import MockState

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hey"}]}


def test_only_waiting_plans_need_a_disconnect_watcher() -> None:
    assert not build_plan({"text": "abc"}, BODY, "m").needs_watcher
    assert build_plan({"text": "abc", "delay": 0.1}, BODY, "m").needs_watcher
    assert build_plan({"hang": True}, BODY, "m").needs_watcher
    assert build_plan({"first_byte_delay": 0.1}, BODY, "m").needs_watcher


def test_streams_are_chunked_and_json_is_sized() -> None:
    stream = build_plan({"text": "abc"}, BODY, "m")
    assert stream.coalesce and not stream.sized and stream.pieces[-1] == b"data: [DONE]\n\n"
    assert build_plan({"text": "abc"}, {**BODY, "stream": False}, "m").sized
    raw = build_plan({"raw": ["a", "b"]}, BODY, "m")
    assert raw.pieces == [b"a", b"b"] and not raw.coalesce


def test_drop_after_on_a_json_body_splits_it() -> None:
    plan = build_plan({"text": "abcdef", "drop_after": 5}, {**BODY, "stream": False}, "m")
    assert plan.drop_after == 1 and len(plan.pieces) == 2


def test_queue_semantics() -> None:
    s = MockState(max_records=10)
    assert s.next_script("a") is None
    s.add_scripts("a", [{"text": "1"}, {"text": "2"}])
    assert [s.next_script("a")["text"] for _ in range(3)] == ["1", "2", "2"]
    s.add_scripts("a", [{"text": "3"}])
    assert s.next_script("a")["text"] == "3"
    s.add_scripts("*", [{"text": "w"}])
    assert s.next_script("zzz")["text"] == "w"
    s.add_scripts("a", [{"text": "4"}], replace=True)
    assert s.next_script("a")["text"] == "4"


def test_builtin_names() -> None:
    assert builtin_script("mock-stream-3", BODY) == {"chunks": ["tok0 ", "tok1 ", "tok2 "]}
    assert builtin_script("mock-slow-250", BODY)["delay"] == 0.25
    assert builtin_script("anything", BODY) == {"text": "You said: hey"}
    assert last_user_text({"messages": "bad"}) == ""


def test_recorded_backend_fixtures_are_planned_byte_for_byte() -> None:
    """tests/fixtures/backends replays through raw_b64: the plan sends the recorded pieces
    unchanged, one write each, under the recorded content type, and drop_after cuts them."""
    from tests.fixtures.backends import load_all

    for fx in load_all():
        plan = build_plan(fx.mock_script(), {**BODY, "stream": True}, fx.model)
        assert plan.pieces == fx.pieces() and not plan.coalesce, fx.id
        assert plan.headers[0] == (b"content-type", fx.content_type.encode()), fx.id
        cut = build_plan(fx.mock_script(drop_after=1), {**BODY, "stream": True}, fx.model)
        assert cut.drop_after == 1 and cut.pieces == fx.pieces(), fx.id
