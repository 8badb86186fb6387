"""``python -m proxy.demo``: run the proxy and show it working.

Starts the proxy exactly as deployed (``gunicorn -c conf/gunicorn.conf.py``) on
``HOST_PORT`` (8282). With no ``BACKEND_URL`` set it also starts the bundled mock
backend, so the demo needs no model server and no key. It then sends one JSON
and one streamed request through the proxy, prints both, and keeps serving
until Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import httpx
import orjson

from .devtools import start_mock, start_proxy


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C and SIGTERM end the demo through the ``finally`` that stops what it started. SIGINT's
    # handler is set here too: started from a script's background job, the demo inherits SIGINT
    # ignored, and Python then installs none of its own. (Not by blocking the signals for
    # sigwait: a blocked mask is inherited across fork and exec, and gunicorn and the mock would
    # then never see the SIGTERM that stops them gracefully.)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    logs = Path(tempfile.mkdtemp(prefix="responses-proxy-"))
    mock = proxy = None
    try:
        backend = os.environ.get("BACKEND_URL", "").strip()
        if not backend:
            mock = start_mock(logs / "mock.log")
            backend = mock.url + "/v1"
            print(f"mock backend: {mock.url} (no BACKEND_URL set)")
        port = int(os.environ.get("HOST_PORT", "8282"))
        proxy = start_proxy(backend, logs / "proxy.log", port=port,
                            WEB_CONCURRENCY=os.environ.get("WEB_CONCURRENCY", "2"))
        base = f"http://127.0.0.1:{port}"
        key = os.environ.get("OPENAI_API_KEY", "sk-demo-not-a-real-key-0000")
        model = os.environ.get("DEMO_MODEL", "mock-reasoning" if mock else "")
        print(f"proxy: {base}  (logs: {proxy.log_path})\n")
        if model:
            _show(base, key, model)
        print(f"\nServing on {base}/v1/responses. Ctrl-C to stop.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping…", flush=True)
        codes = []
        if proxy is not None:
            codes.append(f"proxy exited with {proxy.stop()}")
        if mock is not None:
            codes.append(f"mock exited with {mock.stop()}")
        print(", ".join(codes) or "nothing was started", flush=True)
    return 0


def _show(base: str, key: str, model: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": model, "input": "Say hello through the proxy."}
    print(f"$ POST {base}/v1/responses  (JSON)")
    r = httpx.post(f"{base}/v1/responses", json=body, headers=headers, timeout=60)
    doc = r.json()
    print(f"HTTP {r.status_code}: status={doc.get('status')!r} output_text={_output_text(doc)!r}")
    print(f"usage={orjson.dumps(doc.get('usage')).decode()}\n")
    print(f"$ POST {base}/v1/responses  (stream: true)")
    names: list[str] = []
    text = ""
    with httpx.stream("POST", f"{base}/v1/responses", json={**body, "stream": True}, headers=headers, timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("data: {"):
                event = orjson.loads(line[6:])
                names.append(event["type"])
                if event["type"] == "response.output_text.delta":
                    text += event["delta"]
            elif line == "data: [DONE]":
                names.append("[DONE]")
    # Print the event sequence with runs of deltas collapsed: "….delta ×12".
    runs: list[list] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    for name, count in runs:
        print(f"  {name}" + (f" ×{count}" if count > 1 else ""))
    print(f"streamed output_text={text!r}")


def _output_text(doc: dict) -> str:
    return "".join(
        part.get("text", "")
        for item in doc.get("output") or []
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


if __name__ == "__main__":
    sys.exit(main())
