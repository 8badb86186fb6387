"""A finished request leaves no reference cycle behind: its objects are freed by their reference
counts the moment it ends, not by a later pass of the garbage collector.

Why it matters: under load a request's objects live long enough to be promoted to the collector's
older generations, where a cycle waits for a full collection; with 64 connections that held about
3 MB per worker at any time, and it stayed after the load stopped (no allocations, no collection).
Three cycles were cut: the ASGI scope's entry for the request's ``RequestScope`` (which holds
uvicorn's ``receive``, whose cycle holds the scope), the metrics wrapper of a streamed body and
the Falcon response holding it, and httpx's streamed response and its inner stream.

How it is seen: every process of a real gunicorn runs with the collector off (``sitecustomize``
on ``PYTHONPATH``), so every cycle a request makes stays; on SIGPWR a worker collects once,
keeping what it found (``gc.DEBUG_SAVEALL``), and writes the types of that garbage to a file.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from proxy.devtools import ROOT, Service, start_proxy
from tests.conftest import API_KEY

SITECUSTOMIZE = '''
import collections, gc, os, signal

gc.disable()


def _report(signum, frame):
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        kinds = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    path = os.path.join(os.environ["GARBAGE_DIR"], f"garbage-{os.getpid()}.txt")
    with open(path + ".part", "w") as f:
        f.write("\\n".join(f"{k} {n}" for k, n in kinds.items()))
    os.replace(path + ".part", path)


signal.signal(signal.SIGPWR, _report)
'''

# What each of the cut cycles held; one of them back in a request's garbage means a cycle is back.
REQUEST_OBJECTS = (
    "proxy.resources.scope.RequestScope",
    "uvicorn.protocols.http.httptools_impl.RequestResponseCycle",
    "proxy.resources.metrics._Finishing",
    "falcon.asgi.response.Response",
    "httpx.Response",
    "httpx._models.Response",
    "proxy.upstream._Slot",
    "proxy.translate.stream.call_items.ToolCall",
    "proxy.translate.stream.call_items.FunctionCallBuilder",
)
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def collector_off(mock_backend: Service, tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    (tmp_path / "garbage").mkdir()
    # The proxy's own root must be importable when sitecustomize runs (before gunicorn adds it).
    pythonpath = os.pathsep.join(p for p in (str(tmp_path / "site"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    service = start_proxy(mock_backend.url + "/v1", tmp_path / "proxy.log", PYTHONPATH=pythonpath,
                          GARBAGE_DIR=str(tmp_path / "garbage"), WEB_CONCURRENCY="1")
    try:
        yield service, tmp_path / "garbage"
    finally:
        service.stop()


def _garbage(service: Service, where: Path) -> dict[str, int]:
    workers = psutil.Process(service.pid).children()
    assert len(workers) == 1
    os.kill(workers[0].pid, signal.SIGPWR)
    report = where / f"garbage-{workers[0].pid}.txt"
    deadline = time.monotonic() + 60
    while not report.exists():
        assert time.monotonic() < deadline, "the worker wrote no garbage report"
        time.sleep(0.1)
    lines = report.read_text("utf-8").split("\n")
    return {kind: int(n) for kind, _, n in (line.rpartition(" ") for line in lines if line)}


def test_json_and_streamed_requests_leave_no_reference_cycles(collector_off: tuple[Service, Path]) -> None:
    import openai

    service, where = collector_off
    with openai.OpenAI(base_url=service.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60) as client:
        for _ in range(3):
            answer = client.responses.create(model="mock-echo", input="Say hello.", store=False)
            assert answer.status == "completed"
            with client.responses.create(model="mock-stream-5", input="Count.", stream=True, store=False) as stream:
                kinds = [event.type for event in stream]
            assert kinds[-1] == "response.completed"
            call = client.responses.create(model="mock-tool", input="Weather in Paris?", tools=[WEATHER], store=False)
            assert call.output[-1].type == "function_call"
            with client.responses.create(model="mock-tool", input="Weather in Rome?", tools=[WEATHER], stream=True,
                                         store=False) as stream:
                assert [event.type for event in stream][-1] == "response.completed"
            stored = client.responses.create(model="mock-echo", input="Keep this.")
            assert client.responses.retrieve(stored.id).id == stored.id
        # A request refused before the round trip (400) goes through the same scope.
        with pytest.raises(openai.BadRequestError):
            client.responses.create(model="mock-echo", input=[{"type": "bogus"}], store=False)  # type: ignore[list-item]  # invalid on purpose
    garbage = _garbage(service, where)
    left = {kind: n for kind, n in garbage.items() if kind in REQUEST_OBJECTS}
    assert not left, f"requests left reference cycles holding {left} (all garbage: {orjson.dumps(garbage).decode()})"
