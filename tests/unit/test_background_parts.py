"""The background package's parts on real stores: stored bodies ended from outside validate as
the SDK's Response, the SSE bytes of a replay are exactly those of the original stream, the event
log writer keeps every event in order however fast they come (and through a locked SQLite file),
stops loudly past the size bound, and the settings are checked."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest
from openai.types.responses import Response

from proxy import settings as settings_mod
from proxy.background import bodies
from proxy.background.eventlog import EventLog, JobLost, LogFull
from proxy.background.runner import encode
from proxy.store.sqlite_store import SQLiteStore
from proxy.translate.request import TranslationPolicy, translate_request
from proxy.translate.response import response_object
from proxy.translate.sse import encode_event
from proxy.translate.stream import StreamTranslator
from tests.conformance import check_response, check_stream
from tests.store_kit import run
from tests.unit.test_store_background import WORKER, event, finished, job, queued
from tests.unit.test_store_faults import _HOLD_LOCK


def a_stream() -> tuple[list[dict], dict]:
    """The events of one translated background stream (reasoning, text, a tool call)."""
    chat, ctx = translate_request(
        {"model": "m", "input": "hi", "stream": True, "background": True}, TranslationPolicy(), background_mode=True
    )
    t = StreamTranslator(ctx)
    events = t.start()
    chunks = [
        {"choices": [{"index": 0, "delta": {"reasoning_content": "let me see "}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hello "}}]},
        {"choices": [{"index": 0, "delta": {"content": "wörld \u2028 \"quoted\""}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}},
    ]
    for chunk in chunks:
        events += t.feed(chunk)
    events += t.finish()
    return events, ctx.echo


def test_replayed_sse_bytes_are_the_original_streams():
    events, echo = a_stream()
    assert echo["background"] is True
    check_stream(events)
    datas, frames = encode(events)
    assert frames == b"".join(map(encode_event, events))  # what the live client got
    assert b"".join(map(bodies.sse_frame, datas)) == frames  # what a replay sends
    assert bodies.event_type(b'{"sequence_number":1,"type":"x.y"}') == b"x.y"  # any order, parsed


@pytest.mark.parametrize("status", ["cancelled", "failed"])
def test_a_stored_body_ended_from_outside_is_a_valid_response(status):
    _, ctx = translate_request({"model": "m", "input": "hi", "background": True}, TranslationPolicy(),
                               background_mode=True)
    running = orjson.dumps(response_object(ctx, status="in_progress"))
    doc = orjson.loads(bodies.ended(running, status, bodies.SHUTDOWN_MESSAGE))
    check_response(doc)
    parsed = Response.model_validate(doc)
    assert parsed.status == status and parsed.background is True
    assert (parsed.error is not None) == (status == "failed")
    if status == "failed":
        assert parsed.error.message == bodies.SHUTDOWN_MESSAGE and parsed.error.code == "server_error"
    check_response(orjson.loads(orjson.dumps(response_object(ctx, status="queued"))))


def test_the_log_keeps_every_event_in_order_however_fast_they_come(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        failures: list[Exception] = []
        log = EventLog(store, owner, r.id, WORKER, keep_events=True, on_failure=failures.append)
        await log.start(b'{"status":"in_progress"}')
        for n in range(300):
            log.add([event(n)])
            if n % 50 == 0:
                await asyncio.sleep(0)
        await log.finish(finished(r), [event(300, "response.completed")], "completed")
        page = await store.read_events(owner, r.id, -1, limit=1000)
        assert [orjson.loads(e)["sequence_number"] for e in page.events] == list(range(301)) and page.ended
        assert failures == []
        with pytest.raises(JobLost):  # ended: the job is not this worker's any more
            await EventLog(store, owner, r.id, WORKER, keep_events=True, on_failure=failures.append).start(b"{}")

    run(store, scenario)


def test_the_log_rides_out_a_locked_store_file(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    store = SQLiteStore(path, timeout_secs=0.3)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        failures: list[Exception] = []
        log = EventLog(store, owner, r.id, WORKER, keep_events=True, on_failure=failures.append)
        holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            for n in range(20):
                log.add([event(n)])
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # appends fail, and are retried
            holder.communicate("\n", timeout=10)
        finally:
            holder.kill()
            holder.wait()
        await log.finish(finished(r), [], "completed")
        page = await store.read_events(owner, r.id, -1)
        assert [orjson.loads(e)["sequence_number"] for e in page.events] == list(range(20)) and page.ended
        assert failures == []

    run(store, scenario)


def test_a_log_past_the_bound_stops_the_job_loudly(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"), max_object_bytes=64 * 1024)
    owner = store.owner_of("sk-alice")

    async def scenario(store):
        r = queued()
        await store.create_background(owner, r, job())
        failures: list[Exception] = []
        log = EventLog(store, owner, r.id, WORKER, keep_events=True, on_failure=failures.append)
        big = orjson.dumps({"type": "response.output_text.delta", "delta": "x" * 9000})
        for _ in range(10):
            log.add([big])
            await asyncio.sleep(0)
        await log.settle()
        assert len(failures) == 1 and isinstance(failures[0], LogFull)
        with pytest.raises(LogFull):
            await log.finish(finished(r), [], "completed")

    run(store, scenario)


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"BACKGROUND_LEASE_SECS": "1"}, "BACKGROUND_LEASE_SECS must be between 2 and 30"),
        ({"BACKGROUND_LEASE_SECS": "60"}, "BACKGROUND_LEASE_SECS must be between 2 and 30"),
        ({"BACKGROUND_MAX_PER_WORKER": "0"}, "BACKGROUND_MAX_PER_WORKER must be between 1"),
        ({"BACKGROUND_MAX_PER_KEY": "many"}, "BACKGROUND_MAX_PER_KEY must be a whole number"),
    ],
)
def test_background_settings_are_checked(env, error):
    with pytest.raises(settings_mod.SettingsError, match=error):
        settings_mod.load(env)


def test_background_settings_defaults():
    s = settings_mod.load({})
    assert (s.background_lease_secs, s.background_max_per_worker, s.background_max_per_key) == (10.0, 64, 32)
