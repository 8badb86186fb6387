"""``proxy.edge``: the server's own answers in the OpenAI shape, without a server (the real
processes are driven in ``tests/faults/test_malformed_http.py`` and ``test_limits.py``). Here the
refusals no client can provoke on demand: uvicorn's WebSocket 500 (the app failed before
accepting) and a refusal built with the library's multi-line text; and which paths a handshake is
refused on, with every spelling of the two it is served on."""
from __future__ import annotations

import orjson
import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from proxy.edge import JsonRejections, log_refused


def _protocol() -> ServerProtocol:
    conn = ServerProtocol()
    conn.__class__ = JsonRejections  # as proxy.worker.DrainingWebSocketProtocol does
    return conn


def _error(response) -> dict:
    assert response.headers["Content-Type"] == "application/json" and response.headers["Connection"] == "close"
    assert int(response.headers["Content-Length"]) == len(response.body)
    doc = orjson.loads(response.body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    return doc["error"]


def test_uvicorns_websocket_500_is_json_and_says_nothing_of_the_failure():
    response = _protocol().reject(500, "Internal Server Error")
    assert response.status_code == 500 and response.reason_phrase == "Internal Server Error"
    error = _error(response)
    assert error == {
        "message": "Internal proxy error while opening the WebSocket connection.", "type": "server_error",
        "param": None, "code": "internal_error",
    }


def test_the_librarys_reason_is_the_message_its_advice_to_browsers_dropped():
    text = ("Failed to open a WebSocket connection: invalid Connection header: keep-alive.\n\n"
            "You cannot access a WebSocket server directly with a browser. You need a WebSocket client.\n")
    error = _error(_protocol().reject(426, text))
    assert error["message"] == "Failed to open a WebSocket connection: invalid Connection header: keep-alive."
    assert error["code"] == "websocket_upgrade_required" and error["type"] == "invalid_request_error"


def test_a_handshake_the_library_cannot_accept_is_refused_as_json():
    conn = _protocol()
    request = Request("/v1/responses", Headers({"Host": "x", "Upgrade": "websocket", "Connection": "Upgrade",
                                                "Sec-WebSocket-Key": "bad", "Sec-WebSocket-Version": "13"}))
    response = conn.accept(request)
    assert response.status_code == 400 and "Sec-WebSocket-Key" in _error(response)["message"]


_GOOD = {"Host": "x", "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
         "Sec-WebSocket-Version": "13"}


@pytest.mark.parametrize("path", ["/v1/responses", "/responses", "/v1/responses/", "/v1/responses?x=1",
                                  "/v1/%72esponses"])
def test_a_handshake_to_the_websocket_paths_is_accepted_whatever_its_query_or_trailing_slash(path):
    assert _protocol().accept(Request(path, Headers(_GOOD))).status_code == 101


@pytest.mark.parametrize("path", ["/v1/models", "/", "/v1/responses/compact", "/v1/responsesx?y=/v1/responses"])
def test_a_handshake_to_any_other_path_is_a_json_404_naming_it(path):
    response = _protocol().accept(Request(path, Headers(_GOOD)))
    assert response.status_code == 404, response.status_code
    error = _error(response)
    assert error["code"] == "not_found" and error["type"] == "invalid_request_error", error
    assert path.partition("?")[0] in error["message"] and "GET /v1/responses" in error["message"], error


def test_the_metrics_line_of_a_refused_request_masks_its_key(caplog):
    caplog.set_level("INFO", logger="proxy.metrics")
    key = "sk-edge-0123456789abcdef"
    log_refused([(b"host", b"x"), (b"x-api-key", key.encode()), (b"x-request-id", b"rid-edge")], 400, None)
    log_refused(None, 408, None)
    lines = [r.getMessage() for r in caplog.records if r.name == "proxy.metrics"]
    assert lines[0] == "request_completed: model=-, duration_ms=0, status=error, http_status=400, key=sk-edg…cdef, request_id=rid-edge"
    assert lines[1].startswith("request_completed: model=-, duration_ms=0, status=error, http_status=408, key=-, request_id=req_")
