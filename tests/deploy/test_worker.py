"""The worker class's log: a WebSocket handshake refused for a client's mistake is no ERROR."""
from __future__ import annotations

import base64
import os
import socket

import pytest

from tests.conftest import API_KEY
from tests.http import wait_for

pytestmark = pytest.mark.slow


def _handshake(port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: proxy\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
        )
        return s.recv(65536).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("level, logged", [("info", True), ("warn", False)])
def test_a_handshake_on_a_path_without_websocket_is_logged_at_info(proxy_factory, level, logged):
    service = proxy_factory(LOG_LEVEL=level)
    for path, code in (("/v1/no-such-path", 3404), ("/v1/models", 3405)):
        assert _handshake(service.port, path).split()[1] == b"403"  # uvicorn's answer to a close before accept
        line = f"HTTPError <HTTP{'RouteNotFound: 404' if code == 3404 else 'MethodNotAllowed: 405'}"
        if logged:
            found = wait_for(lambda: [ln for ln in service.log_text().splitlines() if line in ln], 10,
                             what="falcon's line for the refused handshake")
            assert " INFO " in found[-1] and f"Closing with code {code}" in found[-1], found
    # Either way: no ERROR for them (a real error would still be one: only 4xx refusals are demoted).
    assert "ERROR" not in service.log_text(), service.log_text()[-2000:]
