"""A plain WebSocket client for the proxy's WebSocket mode, for what the SDKs hide
(binary and malformed frames, close codes, raw frames)."""
from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.conformance_ws import TERMINALS
from tests.conftest import API_KEY


def ws_url(base: str, path: str = "/v1/responses") -> str:
    return base.replace("http://", "ws://") + path


def open_ws(base: str, *, key: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any) -> ClientConnection:
    h = dict(headers or {})
    key = API_KEY if key is None else key
    if key:
        h["Authorization"] = f"Bearer {key}"
    return connect(ws_url(base), additional_headers=h, open_timeout=30, max_size=None, compression=None, **kwargs)


def send(conn: ClientConnection, frame: dict[str, Any]) -> None:
    conn.send(json.dumps(frame))


def recv(conn: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    raw = conn.recv(timeout=timeout)
    assert isinstance(raw, str), f"binary message from the server: {raw!r}"
    return json.loads(raw)


def read_response(conn: ClientConnection, timeout: float = 30, *, through_errors: bool = False) -> list[dict[str, Any]]:
    """Frames until a terminal event, or (unless ``through_errors``) a protocol error (an ``error``
    with a ``status``)."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = recv(conn, timeout)
        frames.append(frame)
        if frame["type"] in TERMINALS or (frame["type"] == "error" and "status" in frame and not through_errors):
            return frames
