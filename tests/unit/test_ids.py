"""Ids: OpenAI-shaped, unique, and growing with time (the store's indexes append: ``ids``'s doc)."""
from __future__ import annotations

import re
import time

from proxy.translate.ids import new_id


def test_shape_is_prefix_and_32_lowercase_hex_digits() -> None:
    for prefix in ("resp", "msg", "fc", "rs", "conv"):
        assert re.fullmatch(prefix + r"_[0-9a-f]{32}", new_id(prefix))


def test_begins_with_the_unix_time_in_hex_as_openai_ids_do() -> None:
    before = int(time.time())
    minted = new_id("resp")
    after = int(time.time())
    assert before <= int(minted[5:13], 16) <= after
    assert int(minted[13:18], 16) < 1_000_000  # the microseconds of that second


def test_ids_minted_later_sort_after_earlier_ones() -> None:
    earlier = [new_id("resp") for _ in range(50)]
    time.sleep(0.002)  # more than a microsecond: the time digits differ
    later = new_id("resp")
    assert all(e < later for e in earlier)


def test_unique_in_a_tight_loop() -> None:
    minted = [new_id("msg") for _ in range(200_000)]  # many share a microsecond: the random part decides
    assert len(set(minted)) == len(minted)
