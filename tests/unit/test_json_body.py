"""Client documents are parsed with the cyclic collector paused (``proxy.translate.json_body``):
a legal body made of many arrays must not run a collection every 700 of them while the worker's
event loop waits on the parse. Counted through ``gc.callbacks``, not timed."""
from __future__ import annotations

import gc
from collections.abc import Iterator

import orjson
import pytest

from proxy.errors import ProxyError
from proxy.resources.responses import _parse_body
from proxy.translate import json_body
from proxy.translate.ws_frames import FrameError, parse_frame

_ARRAYS = 50_000  # ~70 collections' worth of new lists at CPython's default threshold (700)


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations of the collections that start while the test runs."""
    seen: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.collect()
    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


def _many_arrays(prefix: bytes, suffix: bytes) -> bytes:
    return prefix + b",".join([b"[]"] * _ARRAYS) + suffix


def test_a_body_of_many_arrays_parses_without_collections(collections: list[int]) -> None:
    raw = _many_arrays(b'{"model":"m","input":[', b"]}")
    body = _parse_body(raw)
    assert len(body["input"]) == _ARRAYS
    # At most the one collection the parse's new objects owe once the collector is back on.
    assert len(collections) <= 1, collections
    assert gc.isenabled()


def test_a_websocket_message_of_many_arrays_parses_without_collections(collections: list[int]) -> None:
    text = _many_arrays(b'{"type":"response.create","model":"m","input":[', b"]}").decode()
    try:
        parse_frame(text)
    except FrameError:
        pass  # whether the frame is taken is not this test's matter; its parse is
    assert len(collections) <= 1, collections
    assert gc.isenabled()


def test_a_bad_body_leaves_the_collector_on() -> None:
    with pytest.raises(ProxyError) as caught:
        _parse_body(b'{"model": ')
    assert caught.value.code == "invalid_json"
    assert gc.isenabled()


def test_a_paused_collector_stays_paused() -> None:
    gc.disable()
    try:
        assert json_body.loads(b"[[1], {}]") == [[1], {}]
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("raw", [b"", b"[", b'{"a": 1,}', b"\xff"])
def test_errors_are_orjsons(raw: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        json_body.loads(raw)
    assert gc.isenabled()
