"""Codex CLI 0.171 (the real binary) over the proxy's WebSocket mode, and compacting remotely.

The same exec/apply_patch loop as ``test_codex_cli.py`` (reasoning + two parallel
``exec_command`` calls, then the patch, then the answer), with the provider set to
``supports_websockets = true``: Codex opens one WebSocket to ``{base_url}/responses``
with ``openai-beta: responses_websockets=2026-02-06``, warms it up with a
``generate: false`` frame, then sends each turn as only its new items chained with
``previous_response_id`` and ``store: false``. Codex talks through a ``SocketTap``
(``tests/wstap.py``), so the test sees that no POST was made and reads every frame,
each validated (``tests/conformance_ws.py``).

With ``[model_providers.<id>.capabilities] remote_compaction = "v2"`` and a tiny
``model_auto_compact_token_limit`` Codex compacts in the middle of the loop: a
``response.create`` ending with a ``compaction_trigger`` item (its tools still sent),
answered with exactly one ``compaction`` item, which the next turns carry instead of
the history; the loop still finishes.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from proxy.translate.compaction import DEFAULT_PROMPT, SUMMARY_HEADING
from tests.clients.codex_harness import codex_binary, codex_config_toml, make_workspace, run_codex
from tests.clients.helpers import NetTrap, assistant_turns, check_chat_request
from tests.clients.test_codex_cli import FINAL, METADATA_NOTICE, PATCH, R1, R2, UNKNOWN_MODEL
from tests.conformance_ws import check_trigger_stream, check_ws_stream, split_responses
from tests.conftest import API_KEY
from tests.faults.helpers import reload_worker
from tests.http import wait_for
from tests.wstap import SocketTap

pytestmark = pytest.mark.codex

EXEC_OUTPUT = "Process exited with code 0"  # in every exec_command result Codex sends back


def websocket_config(base_url: str, *, compact_at: int | None = None) -> str:
    """The README's config with the two WebSocket/compaction lines (and a tiny compaction limit)."""
    config = codex_config_toml(base_url).replace(
        "stream_max_retries = 0\n", "stream_max_retries = 0\nsupports_websockets = true\n"
    )
    if compact_at is not None:
        config = f"model_auto_compact_token_limit = {compact_at}\n" + config
        config += '\n[model_providers.responses-proxy.capabilities]\nremote_compaction = "v2"\n'
    return config


@pytest.fixture
def trap():
    t = NetTrap()
    yield t
    t.close()


def _script(mock, model: str) -> None:
    patch = ({"id": "call_patch", "name": "apply_patch", "arguments": {"input": PATCH}} if model == "gpt-5.5" else
             {"id": "call_patch", "name": "exec_command", "arguments": {"cmd": f"apply_patch <<'EOF'\n{PATCH}EOF\n"}})
    mock.script(
        model,
        {"reasoning": R1, "tool_call_style": "interleaved", "tool_calls": [
            {"id": "call_cat", "name": "exec_command", "arguments": {"cmd": "cat hello.txt"}},
            {"id": "call_ls", "name": "exec_command", "arguments": {"cmd": "ls"}},
        ]},
        {"reasoning": R2, "tool_calls": [patch]},
        {"text": FINAL, "chunk_size": 7},
    )


def _run(tmp_path, tap, trap, model: str, compact_at: int | None = None):
    ws = make_workspace(tmp_path / "ws", {"hello.txt": "hello\n"})
    base = tap.url + "/v1"
    run = run_codex(codex_binary(), tmp_path / "home", ws, base, model, "Fix hello.txt.", API_KEY, trap.env(),
                    config_toml=websocket_config(base, compact_at=compact_at))
    assert run.returncode == 0, run.describe()
    assert (ws / "hello.txt").read_text() == "hello, patched\n", run.describe()
    assert [e for e in run.errors() if METADATA_NOTICE not in e] == [], run.describe()
    assert run.items("agent_message")[-1]["text"] == FINAL
    assert trap.attempts == [], f"Codex tried to reach the internet: {trap.attempts}"
    assert tap.http_requests() == [], f"Codex fell back to HTTP: {tap.http_requests()}"
    (conn,) = tap.websockets()
    assert conn.request_line == "GET /v1/responses HTTP/1.1"
    assert conn.headers["openai-beta"] == "responses_websockets=2026-02-06"
    assert conn.closed.wait(15)
    sent, received = conn.messages()
    return [json.loads(m) for m in sent], [json.loads(m) for m in received]


@pytest.mark.parametrize("model", ["gpt-5.5", UNKNOWN_MODEL])
def test_codex_runs_its_tool_loop_over_a_websocket(model, proxy, mock, tmp_path, trap):
    _script(mock, model)
    with SocketTap(proxy.port) as tap:
        sent, received = _run(tmp_path, tap, trap, model)
    creates = [f for f in sent if f["type"] == "response.create"]
    responses = [check_ws_stream(frames) for frames in split_responses(received)]
    assert len(creates) == len(responses) == 4, [f["type"] for f in sent]
    warm, *turns = zip(creates, responses)
    # The warm-up: generate false, the whole prompt, answered without the backend.
    assert warm[0]["generate"] is False and warm[0]["store"] is False and warm[1]["output"] == []
    # Each turn: only new items, chained on the previous response, nothing stored.
    previous = warm[1]["id"]
    for create, response in turns:
        assert create["previous_response_id"] == previous and create["store"] is False
        assert response["previous_response_id"] == previous and response["status"] == "completed"
        previous = response["id"]
    assert {i["type"] for i in turns[1][0]["input"]} == {"function_call_output"}
    patch_output = "custom_tool_call_output" if model == "gpt-5.5" else "function_call_output"
    assert [i["type"] for i in turns[2][0]["input"]] == [patch_output]

    # What the backend received: valid chat requests with the whole conversation, reasoning replayed.
    upstream = [r["body"] for r in mock.requests(model)]
    assert len(upstream) == 3
    for body in upstream:
        check_chat_request(body)
    a2 = assistant_turns(upstream[1])
    assert [c["id"] for c in a2[0]["tool_calls"]] == ["call_cat", "call_ls"] and a2[0]["reasoning_content"] == R1
    assert [a.get("reasoning_content") for a in assistant_turns(upstream[2])] == [R1, R2]
    assert upstream[2]["messages"][-1]["tool_call_id"] == "call_patch"


def test_codex_compacts_remotely_mid_loop_and_finishes(proxy, mock, tmp_path, trap):
    model = "gpt-5.5"
    _script(mock, model)
    with SocketTap(proxy.port) as tap:
        sent, received = _run(tmp_path, tap, trap, model, compact_at=200)
    creates = [f for f in sent if f["type"] == "response.create"]
    frames = split_responses(received)
    assert len(creates) == len(frames)
    triggers = [i for i, c in enumerate(creates) if c["input"] and c["input"][-1] == {"type": "compaction_trigger"}]
    assert triggers, "Codex did not compact"
    print(f"\nCodex compacted {len(triggers)} time(s) in {len(creates)} response.create frames")
    for i in triggers:
        assert creates[i]["tools"], "Codex sends its tools with the trigger"
        final = check_trigger_stream(frames[i])
        assert creates[i + 1]["input"][-1]["type"] == "compaction" or any(
            item.get("type") == "compaction" for item in creates[i + 1]["input"]
        ), "the turn after a compaction carries the compaction item"
        assert final["output"][0]["encrypted_content"] in json.dumps(creates[i + 1]["input"])
    for i, response_frames in enumerate(frames):
        if i not in triggers:
            check_ws_stream(response_frames)

    upstream = [r["body"] for r in mock.requests(model)]
    summaries = [b for b in upstream if b["messages"][-1]["content"] == DEFAULT_PROMPT]
    turns = [b for b in upstream if b not in summaries]
    assert len(summaries) == len(triggers) and len(turns) == 3
    for body in summaries:
        check_chat_request(body)
        assert "tools" not in body, "the summarizing call must not offer Codex's tools"
    compacted = [b for b in turns if any(SUMMARY_HEADING in str(m.get("content")) for m in b["messages"])]
    assert compacted, "no turn after the compaction carried the summary"
    for body in compacted:
        check_chat_request(body)
        # The summary stands in for the history: the exec_command results it replaced are gone.
        assert EXEC_OUTPUT not in json.dumps(body["messages"]), "the history the summary replaced reached the backend"


RESTART_FINAL = "The file says hello; nothing else to do here."


def _codex_in_thread(tmp_path, tap, trap, model: str) -> tuple[threading.Thread, dict]:
    ws = make_workspace(tmp_path / "ws", {"hello.txt": "hello\n"})
    base = tap.url + "/v1"
    out: dict = {}

    def run() -> None:
        out["run"] = run_codex(codex_binary(), tmp_path / "home", ws, base, model, "Show hello.txt.", API_KEY,
                               trap.env(), config_toml=websocket_config(base))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_codex_finishes_a_turn_streaming_while_its_worker_restarts(proxy_factory, mock, tmp_path, trap):
    """The final answer streams for ~4 s; the worker restarts 1 s into it. The turn must end on the
    same socket, once, then the socket closes with 1012. (Cut mid-answer, as uvicorn's own protocol
    did, Codex falls back to an HTTP POST of the same turn: the backend is asked, and bills, twice.)"""
    service = proxy_factory(WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT_SECS="60")
    model = "gpt-5.5"
    mock.script(
        model,
        {"tool_calls": [{"id": "call_cat", "name": "exec_command", "arguments": {"cmd": "cat hello.txt"}}]},
        {"text": RESTART_FINAL, "chunk_size": 4, "delay": 0.33},
    )
    with SocketTap(service.port) as tap:
        thread, out = _codex_in_thread(tmp_path, tap, trap, model)
        wait_for(lambda: len(mock.requests(model)) >= 2, 90, interval=0.05, what="the final turn upstream")
        time.sleep(1.0)
        reload_worker(service)
        stopping = time.time()  # (the old worker's shutdown had begun by then)
        thread.join(120)
        run = out["run"]
        assert run.returncode == 0, run.describe()
        assert run.items("agent_message")[-1]["text"] == RESTART_FINAL, run.describe()
        (conn,) = tap.websockets()  # no second connection: nothing had to be sent again
        assert conn.closed.wait(15)
        assert tap.http_requests() == []
        assert conn.server_close_code() == 1012
    final_turn = mock.requests(model)[-1]
    assert len(mock.requests(model)) == 2, "a turn was sent to the backend twice"
    assert final_turn["started_at"] < stopping < final_turn["ended_at"], "the restart did not land mid-stream"


def test_codex_reconnects_after_its_idle_socket_is_closed_by_a_restart(proxy_factory, mock, tmp_path, trap):
    """The worker restarts while Codex runs a 6 s command between two turns: the idle socket is
    closed with 1012, and Codex sends the next turn on a new connection, to the new worker."""
    service = proxy_factory(WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT_SECS="60")
    model = "gpt-5.5"
    mock.script(
        model,
        {"tool_calls": [{"id": "call_wait", "name": "exec_command", "arguments": {"cmd": "sleep 6; cat hello.txt"}}]},
        {"text": RESTART_FINAL, "chunk_size": 7},
    )
    with SocketTap(service.port) as tap:
        thread, out = _codex_in_thread(tmp_path, tap, trap, model)
        wait_for(lambda: any(r["ended_at"] for r in mock.requests(model)), 90, interval=0.05,
                 what="the first turn answered")
        time.sleep(0.5)  # its terminal event out; Codex is running the command
        reload_worker(service)
        thread.join(120)
        run = out["run"]
        assert run.returncode == 0, run.describe()
        assert run.items("agent_message")[-1]["text"] == RESTART_FINAL, run.describe()
        first, second = tap.websockets()
        assert tap.http_requests() == []
        assert first.server_close_code() == 1012
        sent, received = second.messages()
        (create,) = [json.loads(m) for m in sent if json.loads(m)["type"] == "response.create"]
        assert check_ws_stream([json.loads(m) for m in received])["status"] == "completed"
    # A new connection starts afresh: Codex sent the whole conversation, not a chain on the old one.
    assert "previous_response_id" not in create or create["previous_response_id"] is None, create
    assert [i["type"] for i in create["input"]][-2:] == ["function_call", "function_call_output"]
    upstream = [r["body"] for r in mock.requests(model)]
    assert len(upstream) == 2 and upstream[1]["messages"][-1]["tool_call_id"] == "call_wait"


def test_readme_websocket_lines_are_the_tested_ones():
    """The README's WebSocket/compaction config lines are the ones these tests run Codex with."""
    import re

    from proxy.devtools import ROOT

    section = (ROOT / "README.md").read_text().split("## WebSocket mode and compaction", 1)[1].split("\n## ", 1)[0]
    (toml,) = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    tested = websocket_config("http://127.0.0.1:8282/v1", compact_at=200000).splitlines()
    lines = [line for line in toml.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 4 and all(line in tested for line in lines), lines
