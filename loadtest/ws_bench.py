"""An agent's tool loop over WebSocket mode (``previous_response_id``) vs over HTTP (full history).

Usage::

    python -m loadtest.ws_bench                      # 5 loops of 20 turns per transport
    python -m loadtest.ws_bench --turns 20 --loops 10 --output-bytes 4000 --out /tmp/ws_bench.json

Both transports run the same conversation against the same proxy (gunicorn,
``--workers`` Uvicorn workers, in front of the mock backend), one after the
other in one run: each turn the "model" (a mock script) calls a tool, and the
client answers with the tool's output (``--output-bytes`` of text), then asks
again — ``--turns`` model calls per loop, the last one answering with text. Every
request carries the agent's instructions and tool schemas, as Codex does.

- **WebSocket**: one connection per loop; each ``response.create`` sends only the
  new ``function_call_output`` with ``previous_response_id`` and ``store: false``
  (the proxy holds the context in memory).
- **HTTP**: ``POST /v1/responses`` (``stream: true``, one kept-alive connection)
  with the whole history every turn, as a stateless client (Codex without
  WebSockets) must.

Printed per transport: client bytes sent per turn (request bodies / message
payloads, uncompressed: ``--deflate`` adds a WebSocket run with permessage-deflate,
as Codex negotiates it, to show what compressing the events costs), proxy CPU per turn
(the workers' user+system seconds from ``/proc``, as ``loadtest/bench.py`` reads
them, over the measured loops), wall time per turn, and the bytes the backend got
per turn (the same for both: a chat backend is stateless, so the proxy sends the
whole conversation either way).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.bench import API_KEY, Proc, cpu_of, start_mock, start_proxy  # noqa: E402

MODEL = "bench-agent-loop"
INSTRUCTIONS = ("You are a coding agent. Work in small steps, read before you edit, run the tests. " * 20).strip()
TOOLS = [
    {
        "type": "function", "name": f"tool_{i}", "description": f"Tool number {i}: does one kind of thing. " * 4,
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "A path in the workspace."},
                           "query": {"type": "string", "description": "What to look for."},
                           "limit": {"type": "integer", "description": "At most this many results."}},
            "required": ["path"],
        },
    }
    for i in range(10)
]
TERMINALS = (b'"type":"response.completed"', b'"type":"response.failed"', b'"type":"response.incomplete"')


def script_loop(mock_url: str, turns: int) -> None:
    """Queue one loop's model answers: ``turns - 1`` tool calls, then a text answer."""
    calls = [
        {"tool_calls": [{"id": f"call_{k}", "name": f"tool_{k % 10}", "arguments": {"path": f"src/file_{k}.py"}}]}
        for k in range(turns - 1)
    ]
    r = httpx.post(mock_url + "/_mock/script", json={"model": MODEL, "responses": [*calls, {"text": "All done."}],
                                                      "replace": True}, timeout=10)
    r.raise_for_status()


def tool_output(k: int, size: int) -> str:
    line = f"file_{k}.py: line of source code that the tool read back for the model\n"
    return (line * (size // len(line) + 1))[:size]


def call_of(response: dict) -> dict | None:
    return next((item for item in response["output"] if item["type"] == "function_call"), None)


def ws_loop(proxy: Proc, turns: int, size: int, deflate: bool = False) -> int:
    """One loop over one WebSocket; returns the bytes the client sent (message payloads, uncompressed)."""
    sent = 0
    url = proxy.url.replace("http://", "ws://") + "/v1/responses"
    with connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"},
                 compression="deflate" if deflate else None, max_size=None) as ws:
        frame: dict = {"type": "response.create", "model": MODEL, "instructions": INSTRUCTIONS, "tools": TOOLS,
                       "store": False, "input": "Fix the failing tests."}
        for k in range(turns):
            text = orjson.dumps(frame)
            sent += len(text)
            ws.send(text.decode())
            while True:
                message = ws.recv(timeout=60)
                assert isinstance(message, str)
                if any(t in message.encode() for t in TERMINALS):
                    response = orjson.loads(message)["response"]
                    break
                assert not message.startswith('{"type":"error"'), message[:300]
            assert response["status"] == "completed", response
            call = call_of(response)
            if call is None:
                assert k == turns - 1, f"the loop ended at turn {k}"
                break
            output = {"type": "function_call_output", "call_id": call["call_id"], "output": tool_output(k, size)}
            frame = {**frame, "previous_response_id": response["id"], "input": [output]}
    return sent


def http_loop(proxy: Proc, client: httpx.Client, turns: int, size: int) -> int:
    """One loop of stateless POSTs carrying the whole history; returns the bytes the client sent."""
    sent = 0
    history: list = [{"type": "message", "role": "user", "content": "Fix the failing tests."}]
    for k in range(turns):
        body = orjson.dumps({"model": MODEL, "instructions": INSTRUCTIONS, "tools": TOOLS, "store": False,
                             "stream": True, "input": history})
        request = client.build_request("POST", proxy.url + "/v1/responses", content=body, headers={
            "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        sent += len(body) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 30  # + request line
        response = None
        r = client.send(request, stream=True)
        try:
            assert r.status_code == 200, r.read()[:300]
            for line in r.iter_lines():
                if line.startswith("data: ") and any(t in line.encode() for t in TERMINALS):
                    response = orjson.loads(line[6:])["response"]
        finally:
            r.close()
        assert response is not None and response["status"] == "completed", response
        history += response["output"]
        call = call_of(response)
        if call is None:
            assert k == turns - 1, f"the loop ended at turn {k}"
            break
        history.append({"type": "function_call_output", "call_id": call["call_id"], "output": tool_output(k, size)})
    return sent


def upstream_bytes(mock_url: str) -> int:
    records = httpx.get(mock_url + "/_mock/requests", params={"model": MODEL}, timeout=10).json()
    return sum(len(orjson.dumps(r["body"])) for r in records)


def measure(name: str, proxy: Proc, mock: Proc, args: argparse.Namespace) -> dict:
    turns, size = args.turns, args.output_bytes
    client = httpx.Client(timeout=60)
    if name == "http":
        def run() -> int:
            return http_loop(proxy, client, turns, size)
    else:
        def run() -> int:
            return ws_loop(proxy, turns, size, deflate=name == "ws+deflate")
    script_loop(mock.url, turns)
    run()  # warm-up loop (imports, pools, first connections)
    sent = upstream = 0
    workers = proxy.workers()
    cpu0, t0 = cpu_of(workers), time.perf_counter()
    for _ in range(args.loops):
        httpx.post(mock.url + "/_mock/reset", timeout=10).raise_for_status()
        script_loop(mock.url, turns)
        sent += run()
        upstream += upstream_bytes(mock.url)
    wall, cpu = time.perf_counter() - t0, cpu_of(workers) - cpu0
    client.close()
    n = turns * args.loops
    return {"transport": name, "turns": n, "client_bytes_per_turn": sent / n, "proxy_cpu_ms_per_turn": cpu * 1000 / n,
            "wall_ms_per_turn": wall * 1000 / n, "upstream_bytes_per_turn": upstream / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ws_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="model calls per loop (the last answers with text)")
    parser.add_argument("--loops", type=int, default=5, help="measured loops per transport")
    parser.add_argument("--output-bytes", type=int, default=2000, help="size of each tool output the client sends")
    parser.add_argument("--workers", type=int, default=2, help="proxy worker processes")
    parser.add_argument("--deflate", action="store_true",
                        help="also run WebSocket with permessage-deflate (Codex asks for it): its proxy CPU")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="ws-bench-"))
    mock = start_mock(1, logs)
    proxy = start_proxy("proxy", ROOT, mock.url + "/v1", args.workers, {"LOG_LEVEL": "warning"}, logs)
    try:
        names = ("websocket", "ws+deflate", "http") if args.deflate else ("websocket", "http")
        rows = [measure(name, proxy, mock, args) for name in names]
    finally:
        proxy.stop()
        mock.stop()
    print(f"\n{args.loops} loops x {args.turns} turns, tool outputs of {args.output_bytes} bytes, "
          f"{args.workers} proxy workers (logs in {logs})\n")
    print(f"{'transport':<11} {'client B/turn':>14} {'proxy CPU ms/turn':>18} {'wall ms/turn':>13} "
          f"{'upstream B/turn':>16}")
    for r in rows:
        print(f"{r['transport']:<11} {r['client_bytes_per_turn']:>14,.0f} {r['proxy_cpu_ms_per_turn']:>18.2f} "
              f"{r['wall_ms_per_turn']:>13.2f} {r['upstream_bytes_per_turn']:>16,.0f}")
    ws, http = rows[0], rows[-1]
    print(f"\nWebSocket sends {http['client_bytes_per_turn'] / ws['client_bytes_per_turn']:.1f}x fewer bytes per turn; "
          f"proxy CPU per turn {ws['proxy_cpu_ms_per_turn'] / http['proxy_cpu_ms_per_turn']:.2f}x the HTTP figure.")
    if args.out:
        args.out.write_text(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
