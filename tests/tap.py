"""``RecordingTap``: a loopback HTTP relay between a client and the proxy that keeps
every exchange byte for byte, so that what a client sent and received — the openai
SDK, the Agents SDK, or Codex, which we do not control — can be validated with
``tests.conformance`` (``check_exchanges``).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "accept-encoding", "te", "upgrade"}


@dataclass
class Exchange:
    """One request through the tap and the exact bytes of its answer."""

    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    # Set once the whole upstream answer has been read and recorded.
    done: threading.Event = field(default_factory=threading.Event)

    def json(self) -> Any:
        return json.loads(self.request_body)


class RecordingTap:
    """Forward ``http://127.0.0.1:<port>/...`` to ``target`` and record each exchange.

    Streams are relayed chunk by chunk as they arrive (chunked encoding to the
    client), so the client sees the proxy's timing, not a buffered copy.
    """

    def __init__(self, target: str, *, fresh_connections: bool = False) -> None:
        """``fresh_connections``: open a new connection to ``target`` for every request (none kept
        alive), so a test that lets only one gunicorn worker accept (``only_worker``) chooses the
        worker of each request."""
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        limits = httpx.Limits(max_keepalive_connections=0) if fresh_connections else httpx.Limits()
        self._client = httpx.Client(timeout=httpx.Timeout(120.0, connect=5.0), limits=limits)
        tap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                ex = Exchange(self.command, self.path, headers, body)
                with tap._lock:
                    tap.exchanges.append(ex)
                fwd = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
                chunks: list[bytes] = []
                try:
                    with tap._client.stream(self.command, tap.target + self.path, headers=fwd, content=body) as r:
                        ex.status = r.status_code
                        ex.response_headers = {k.lower(): v for k, v in r.headers.items()}
                        self.send_response(r.status_code)
                        for k, v in r.headers.items():
                            if k.lower() not in _HOP_BY_HOP:
                                self.send_header(k, v)
                        self.send_header("transfer-encoding", "chunked")
                        self.end_headers()
                        client_gone = False
                        for chunk in r.iter_raw():
                            chunks.append(chunk)
                            if client_gone:
                                continue
                            try:
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                                self.wfile.flush()
                            except OSError:
                                # A client may hang up right after the terminal event
                                # (before the chunked terminator): record the rest anyway.
                                client_gone = True
                        if not client_gone:
                            try:
                                self.wfile.write(b"0\r\n\r\n")
                                self.wfile.flush()
                            except OSError:
                                pass
                finally:
                    ex.response_body = b"".join(chunks)
                    ex.done.set()

            do_GET = do_POST = do_DELETE = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def __enter__(self) -> RecordingTap:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()



def check_stored_object(path: str, doc: Any) -> bool:
    """Validate a JSON answer of the stateful routes (``GET``/``DELETE /v1/responses/{id}``,
    ``input_items``, the Conversations API) as the openai SDK's own types; ``False`` when ``doc``
    is not one (a Response object: the caller checks it as one)."""
    from openai.types.conversations import (
        Conversation,
        ConversationDeletedResource,
        ConversationItem,
        ConversationItemList,
    )
    from openai.types.responses import ResponseItemList
    from pydantic import TypeAdapter

    kind = doc.get("object") if isinstance(doc, dict) else None
    route = path.split("?", 1)[0]
    if kind == "response" and doc.get("deleted") is True:
        assert doc == {"id": doc["id"], "object": "response", "deleted": True}, doc
    elif kind == "list":
        assert set(doc) == {"object", "data", "first_id", "last_id", "has_more"}, doc
        model = ConversationItemList if "/conversations/" in route else ResponseItemList
        if not doc["data"]:
            # OpenAI answers an empty list with null ids (the SDK declares strings, and parses
            # without validating): check that, then the rest as the SDK's type.
            assert doc["first_id"] is None and doc["last_id"] is None and doc["has_more"] is False, doc
            doc = {**doc, "first_id": "", "last_id": ""}
        model.model_validate(doc)
        assert all(isinstance(item.get("id"), str) and item["id"] for item in doc["data"]), doc
    elif kind == "conversation":
        assert set(doc) == {"id", "object", "created_at", "metadata"} and doc["id"].startswith("conv_"), doc
        Conversation.model_validate(doc)
    elif kind == "conversation.deleted":
        ConversationDeletedResource.model_validate(doc)
        assert doc == {"id": doc["id"], "object": "conversation.deleted", "deleted": True}, doc
    elif "/conversations/" in route and "/items/" in route:
        TypeAdapter(ConversationItem).validate_python(doc)
        assert isinstance(doc.get("id"), str) and doc["id"], doc
    else:
        return False
    return True


def check_exchanges(tap: RecordingTap) -> list[dict[str, Any]]:
    """Validate every answer the tap saw; return the final Response of each successful one.

    SSE bodies go through ``check_stream``, JSON Response bodies through
    ``check_response`` (a compaction trigger's, whose one output is a ``compaction`` item, through
    ``check_final_trigger_response``), the stateful routes' other objects through
    ``check_stored_object``, error bodies must have the OpenAI error shape.
    """
    from tests.conformance import check_response, check_stream, parse_sse
    from tests.conformance_ws import check_final_trigger_response

    finals = []
    for ex in tap.exchanges:
        assert ex.done.wait(15), f"{ex.method} {ex.path}: the answer never finished"
        ctype = ex.response_headers.get("content-type", "")
        where = f"{ex.method} {ex.path} -> {ex.status}"
        if ex.status >= 400:
            err = json.loads(ex.response_body)["error"]
            assert set(err) >= {"message", "type", "param", "code"}, (where, err)
            assert isinstance(err["message"], str) and err["message"], (where, err)
            continue
        assert ex.status == 200, where
        if ctype.startswith("text/event-stream"):
            finals.append(check_stream(parse_sse(ex.response_body)))
        else:
            assert ctype.startswith("application/json"), (where, ctype)
            doc = json.loads(ex.response_body)
            if check_stored_object(ex.path, doc):
                continue
            if [item.get("type") for item in doc.get("output", ())] == ["compaction"]:
                check_final_trigger_response(doc)
                finals.append(doc)
            else:
                finals.append(check_response(doc))
    return finals
