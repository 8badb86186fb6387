"""ThinkSplitter: a leading <think> block becomes reasoning, split anywhere."""
from __future__ import annotations

import pytest

from proxy.translate.think import ThinkSplitter


def split(pieces: list[str]) -> tuple[str, str]:
    s = ThinkSplitter()
    reasoning, content = [], []
    for p in pieces:
        r, c = s.feed(p)
        reasoning.append(r)
        content.append(c)
    r, c = s.flush()
    reasoning.append(r)
    content.append(c)
    return "".join(reasoning), "".join(content)


def test_whole_block_in_one_piece():
    assert split(["<think>plan it</think>\n\nThe answer."]) == ("plan it", "The answer.")


def test_leading_whitespace_before_think_is_ignored():
    assert split(["  \n<think>r</think>a"]) == ("r", "a")


def test_content_without_think_passes_unchanged_including_whitespace():
    assert split(["  hello ", "world"]) == ("", "  hello world")


def test_think_in_the_middle_is_content():
    text = "Use <think>tags</think> like this"
    assert split([text]) == ("", text)


def test_unterminated_block_is_all_reasoning():
    assert split(["<think>still thinking", " </thi"]) == ("still thinking </thi", "")


def test_partial_open_tag_at_end_is_content():
    assert split(["<thi"]) == ("", "<thi")


def test_only_whitespace_is_content():
    assert split([" \n"]) == ("", " \n")


def test_near_miss_open_tag_is_content():
    assert split(["<thinking>x</thinking>"]) == ("", "<thinking>x</thinking>")


def test_close_tag_inside_reasoning_lookalike():
    # "</th" followed by something else is reasoning text, not a tag.
    assert split(["<think>a </th", "e end</think>ok"]) == ("a </the end", "ok")


def test_empty_think_block():
    assert split(["<think></think>answer"]) == ("", "answer")


def test_passthrough_flag():
    s = ThinkSplitter()
    assert not s.passthrough
    s.feed("hi")
    assert s.passthrough
    assert s.feed("<think>x</think>") == ("", "<think>x</think>")


FULL = " <think>Ünïcode ✓ reasoning</think>\n\nAnswer ✓ <think>not</think>"
WANT = ("Ünïcode ✓ reasoning", "Answer ✓ <think>not</think>")


@pytest.mark.parametrize("i", range(len(FULL) + 1))
def test_split_at_every_position(i):
    assert split([FULL[:i], FULL[i:]]) == WANT


def test_split_at_every_pair_of_positions():
    n = len(FULL)
    for i in range(n + 1):
        for j in range(i, n + 1):
            assert split([FULL[:i], FULL[i:j], FULL[j:]]) == WANT, (i, j)


def test_one_character_at_a_time():
    assert split(list(FULL)) == WANT


def test_whitespace_in_many_pieces_before_a_think_block_or_text():
    from proxy.translate.think import ThinkSplitter

    s = ThinkSplitter()
    for _ in range(1000):
        assert s.feed("\n") == ("", "")
    assert s.feed("<thi") == ("", "")
    assert s.feed("nk>r</think>  a") == ("r", "a")
    s = ThinkSplitter()
    for _ in range(1000):
        s.feed(" ")
    assert s.feed("<b") == ("", " " * 1000 + "<b")
    s = ThinkSplitter()
    s.feed("\n")
    s.feed(" ")
    assert s.flush() == ("", "\n ")
    s = ThinkSplitter()
    s.feed("\n")
    s.feed("<th")
    assert s.flush() == ("", "\n<th")
