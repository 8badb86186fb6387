"""The worker class's log: a WebSocket handshake refused for a client's mistake is no ERROR."""
from __future__ import annotations

import base64
import logging
import os
import socket

import falcon
import pytest

from proxy.worker import QuietRefusedHandshakes
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


def test_a_handshake_on_a_path_without_websocket_is_a_404_that_logs_no_error(proxy_factory):
    """Such a handshake never reaches Falcon (``proxy.edge.JsonRejections.accept`` refuses it: a JSON
    404), so Falcon's "HTTPError … raised while handling WebSocket" ERROR, which
    ``QuietRefusedHandshakes`` demoted, is not written at all, even at INFO."""
    service = proxy_factory(LOG_LEVEL="info")
    for path in ("/v1/no-such-path", "/v1/models"):
        assert _handshake(service.port, path).split()[1] == b"404"
    wait_for(lambda: service.log_text().count("http_status=404") >= 2 or None, 10, what="the two request_completed lines")
    assert "HTTPError" not in service.log_text() and "ERROR" not in service.log_text(), service.log_text()[-2000:]


def _falcon_record(status: int) -> logging.LogRecord:
    """The record Falcon's ASGI app logs for an HTTPError raised while handling a WebSocket."""
    error = falcon.HTTPError(status)
    return logging.LogRecord(
        "falcon", logging.ERROR, __file__, 0, "[FALCON] HTTPError %s raised while handling WebSocket. Closing with code %s",
        (error, 3000 + status), None,
    )


@pytest.mark.parametrize("status, level", [(404, logging.INFO), (405, logging.INFO), (500, logging.ERROR)])
def test_falcons_4xx_websocket_refusals_are_demoted_to_info_and_real_errors_stay(status, level):
    """Any 4xx Falcon would still refuse a handshake with on the WebSocket route (a client's mistake)
    goes out at INFO; a 5xx stays an ERROR."""
    record = _falcon_record(status)
    kept = QuietRefusedHandshakes().filter(record)
    assert record.levelno == level
    assert kept is (level == logging.ERROR or logging.getLogger("falcon").isEnabledFor(logging.INFO))
