"""Every event byte the stream translator sends is the recorded one.

``tests/fixtures/stream_golden.jsonl.gz`` holds ~700 traces (every translator
the scenario tests build, plus seeded random and chaos chunk sequences; see
``tests/fixtures/stream_golden.py``), each replayed in four variants (events
on/off × reasoning as content/summary) with deterministic ids and clock. For
each call the exact SSE bytes, and at the end the final Response's bytes,
``done``, ``dropped_calls`` and the warnings must equal what was recorded.

The corpus was recorded from the translator before it was split into parts;
a change that moves any byte fails here. To change bytes on purpose, regenerate
with ``.venv/bin/python -m tests.fixtures.stream_golden`` and say why in the
commit message.
"""
from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.fixtures.stream_golden import VARIANTS, load, replay

TRACES = load()


def _first_difference(got: str, want: str) -> str:
    """The first event that differs, as parsed JSON, for a readable failure."""
    got_blocks, want_blocks = got.split("\n\n"), want.split("\n\n")
    for i, (g, w) in enumerate(zip(got_blocks, want_blocks)):
        if g != w:
            return f"event {i}:\n got  {g}\n want {w}"
    return f"{len(got_blocks)} events, want {len(want_blocks)}"


def test_corpus_is_broad() -> None:
    """The corpus reaches every event type and every terminal status (a guard against a thin regeneration)."""
    kinds: set[str] = set()
    statuses: set[str] = set()
    for trace in TRACES:
        for variant in trace["variants"].values():
            statuses.add(orjson.loads(variant["response"])["status"])
            for block in variant["events"]:
                kinds.update(line[7:] for line in block.split("\n") if line.startswith("event: "))
    assert statuses == {"in_progress", "completed", "incomplete", "failed"}
    assert len(kinds) == 24, sorted(kinds)
    assert len(TRACES) > 600


@pytest.mark.parametrize("trace", TRACES, ids=[t["name"] for t in TRACES])
def test_replay_matches_recording(trace: dict[str, Any]) -> None:
    for name, emit, summary in VARIANTS:
        want = trace["variants"][name]
        got = replay(trace, emit=emit, summary=summary)
        assert len(got["events"]) == len(want["events"])
        for call, g, w in zip(trace["calls"], got["events"], want["events"]):
            assert g == w, f"{name}: call {call[0]} differs: {_first_difference(g, w)}"
        assert got["response"] == want["response"], name
        assert (got["done"], got["dropped"], got["warnings"]) == (want["done"], want["dropped"], want["warnings"]), name
