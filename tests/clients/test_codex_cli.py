"""Codex CLI 0.171 (the real binary) edits a file through the proxy.

The mock backend plays a coding model: turn 1 reasons and runs two shell commands
in parallel (``exec_command``), turn 2 reasons again and patches the file, turn 3
answers. Codex must finish cleanly and the file must really change; every upstream
Chat Completions request must be valid, with the earlier reasoning replayed as
``reasoning_content``; every Responses stream Codex received must pass the
conformance checks; and Codex must not reach anything but loopback.

Both tool sets Codex sends are covered: ``gpt-5.5`` (a model it knows: custom
``apply_patch`` with a grammar, ``web_search``, ``tool_search``) and an unknown
model name (fallback set: ``namespace`` tools, no ``apply_patch`` tool — Codex then
patches through ``exec_command`` with an ``apply_patch`` heredoc, which it
intercepts). A first "probe" run reads which tools Codex actually offers.

Codex asks for ``reasoning.summary: "auto"`` only in the fallback configuration;
there the proxy streams the reasoning as a summary, which ``codex exec --json``
shows as ``reasoning`` items. For gpt-5.5 (no summary requested) the reasoning
stays ``reasoning_text`` content, which Codex keeps to itself.
"""
from __future__ import annotations

import json

import pytest

from tests.clients.codex_harness import codex_binary, make_workspace, run_codex
from tests.clients.helpers import NetTrap, assistant_turns, check_chat_request, message_text, upstream_tool_names
from tests.conformance import check_stream, parse_sse
from tests.conftest import API_KEY
from tests.tap import RecordingTap

pytestmark = pytest.mark.codex

PATCH = "*** Begin Patch\n*** Update File: hello.txt\n@@\n-hello\n+hello, patched\n*** End Patch\n"
R1 = "The user wants hello.txt fixed. Read it and list the directory first."
R2 = "It contains 'hello'. Patch it to 'hello, patched'."
FINAL = "Patched hello.txt: it now says 'hello, patched'."
UNKNOWN_MODEL = "acme-coder-7b"
# Codex's own notice for a model missing from its catalogue; not a proxy refusal.
METADATA_NOTICE = f"Model metadata for `{UNKNOWN_MODEL}` not found"


@pytest.fixture
def codex():
    return codex_binary()


@pytest.fixture
def trap():
    t = NetTrap()
    yield t
    t.close()


def _streams(tap: RecordingTap) -> list[tuple[dict, dict]]:
    """(request body, final Response) of every Responses call Codex made; all must conform."""
    out = []
    for ex in tap.exchanges:
        assert (ex.method, ex.path, ex.status) == ("POST", "/v1/responses", 200), (
            f"{ex.method} {ex.path} -> {ex.status}: {ex.response_body[:500]!r}"
        )
        assert ex.response_headers["content-type"].startswith("text/event-stream")
        final = check_stream(parse_sse(ex.response_body))
        assert final["status"] == "completed", final
        out.append((ex.json(), final))
    return out


@pytest.mark.parametrize("model", ["gpt-5.5", UNKNOWN_MODEL])
def test_codex_patches_a_file_through_the_proxy(model, codex, proxy, mock, tmp_path, trap, record_property):
    ws = make_workspace(tmp_path / "ws", {"hello.txt": "hello\n"})
    with RecordingTap(proxy.url) as tap:
        base_url = tap.url + "/v1"

        # Probe: one plain text turn, to learn the tools Codex offers this model.
        mock.script(model, {"text": "ready"})
        probe = run_codex(codex, tmp_path / "home-probe", ws, base_url, model, "Say ready.", API_KEY, trap.env())
        assert probe.returncode == 0, probe.describe()
        assert probe.items("agent_message")[-1]["text"] == "ready"
        probe_up = mock.requests(model)
        assert len(probe_up) == 1, [r["body"]["messages"][-1] for r in probe_up]
        check_chat_request(probe_up[0]["body"])
        offered = upstream_tool_names(probe_up[0]["body"])
        assert "exec_command" in offered
        assert not {"web_search", "tool_search"} & set(offered), offered  # built-ins are dropped
        _streams(tap)
        if model == "gpt-5.5":
            # The custom (freeform, lark grammar) tool is offered as a one-string-argument function.
            patch_tool = next(t["function"] for t in probe_up[0]["body"]["tools"] if t["function"]["name"] == "apply_patch")
            assert patch_tool["parameters"]["properties"]["input"]["type"] == "string"
            assert patch_tool["parameters"]["required"] == ["input"]
        else:
            # Fallback set: namespace tools flattened, no apply_patch tool.
            assert any("multi_agent_v1" in n and n.endswith("spawn_agent") for n in offered), offered
        mock.reset()
        tap.exchanges.clear()

        if "apply_patch" in offered:
            patch_call = {"id": "call_patch", "name": "apply_patch", "arguments": {"input": PATCH}}
        else:
            patch_call = {"id": "call_patch", "name": "exec_command",
                          "arguments": {"cmd": f"apply_patch <<'EOF'\n{PATCH}EOF\n"}}
        mock.script(
            model,
            {"reasoning": R1, "reasoning_field": "reasoning_content", "tool_call_style": "interleaved", "tool_calls": [
                {"id": "call_cat", "name": "exec_command", "arguments": {"cmd": "cat hello.txt"}},
                {"id": "call_ls", "name": "exec_command", "arguments": {"cmd": "ls"}},
            ]},
            {"reasoning": R2, "reasoning_field": "reasoning_content", "tool_calls": [patch_call]},
            {"text": FINAL, "chunk_size": 7},
        )
        run = run_codex(codex, tmp_path / "home", ws, base_url, model, "Fix hello.txt.", API_KEY, trap.env())
        record_property("codex_seconds", round(run.seconds, 2))
        print(f"codex exec ({model}): {run.seconds:.2f} s, probe {probe.seconds:.2f} s")

        # What Codex did.
        assert run.returncode == 0, run.describe()
        assert (ws / "hello.txt").read_text() == "hello, patched\n", run.describe()
        refusals = [e for e in run.errors() if METADATA_NOTICE not in e]
        assert refusals == [], run.describe()
        commands = run.items("command_execution")
        assert [c["exit_code"] for c in commands[:2]] == [0, 0], commands
        assert any(c["aggregated_output"] == "hello\n" for c in commands), commands
        assert any(ch["path"].endswith("hello.txt") for fc in run.items("file_change") for ch in fc["changes"])
        assert run.items("agent_message")[-1]["text"] == FINAL
        shown = [r["text"] for r in run.items("reasoning")]
        assert shown == ([] if model == "gpt-5.5" else [R1, R2]), run.describe()
        assert trap.attempts == [], f"Codex tried to reach the internet: {trap.attempts}"

        # What Codex sent and received (through the tap): three conforming streams.
        streams = _streams(tap)
    assert len(streams) == 3, [len(req["input"]) for req, _ in streams]
    (req1, resp1), (req2, resp2), (req3, _) = streams
    reasoning1 = [i for i in resp1["output"] if i["type"] == "reasoning"]
    assert len(reasoning1) == 1 and reasoning1[0]["encrypted_content"], resp1["output"]
    if model == "gpt-5.5":
        assert (req1.get("reasoning") or {}).get("summary") is None, req1.get("reasoning")
        assert reasoning1[0]["summary"] == [] and reasoning1[0]["content"] == [{"type": "reasoning_text", "text": R1}]
    else:
        assert req1["reasoning"]["summary"] == "auto", req1.get("reasoning")
        assert reasoning1[0]["summary"] == [{"type": "summary_text", "text": R1}] and "content" not in reasoning1[0]
    replayed = [i for i in req2["input"] if i.get("type") == "reasoning"]
    assert [r.get("encrypted_content") for r in replayed] == [reasoning1[0]["encrypted_content"]]
    patch_item_type = "custom_tool_call" if patch_call["name"] == "apply_patch" else "function_call"
    assert [i["type"] for i in resp2["output"]] == ["reasoning", patch_item_type]
    if patch_item_type == "custom_tool_call":
        assert resp2["output"][1]["input"] == PATCH
        assert any(i.get("type") == "custom_tool_call_output" for i in req3["input"])

    # What the backend received: valid chat requests, reasoning replayed, calls grouped.
    upstream = [r["body"] for r in mock.requests(model)]
    assert len(upstream) == 3
    for body in upstream:
        check_chat_request(body)
        assert body["stream"] is True and body["model"] == model
    a2 = assistant_turns(upstream[1])
    assert len(a2) == 1, a2
    assert [c["id"] for c in a2[0]["tool_calls"]] == ["call_cat", "call_ls"]  # parallel calls: one message
    assert a2[0]["reasoning_content"] == R1
    cat_result = next(m for m in upstream[1]["messages"] if m.get("tool_call_id") == "call_cat")
    assert "\nhello\n" in message_text(cat_result)
    a3 = assistant_turns(upstream[2])
    assert [a.get("reasoning_content") for a in a3] == [R1, R2]
    assert [c["id"] for c in a3[1]["tool_calls"]] == ["call_patch"]
    sent = a3[1]["tool_calls"][0]["function"]
    assert sent["name"] == patch_call["name"]
    assert json.loads(sent["arguments"]) == patch_call["arguments"]
    assert upstream[2]["messages"][-1]["role"] == "tool"
    assert upstream[2]["messages"][-1]["tool_call_id"] == "call_patch"
