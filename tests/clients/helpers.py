"""Shared helpers for the client tests.

- ``RecordingTap`` and ``check_exchanges`` live in ``tests/tap.py`` (every SDK test uses them).
- ``NetTrap``: a loopback "HTTP proxy" that refuses everything and remembers who
  asked; clients get it as ``HTTP(S)_PROXY`` so any attempt to reach the internet is
  both blocked and visible to the test.
- ``check_chat_request``: what every upstream Chat Completions request must look like.
"""
from __future__ import annotations

import json
import re
import socketserver
import threading
from typing import Any

# --------------------------------------------------------------------------- internet trap


class NetTrap:
    """A loopback HTTP proxy that refuses every request and records its first line."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        trap = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = self.request.recv(4096)
                trap.attempts.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                self.request.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def env(self) -> dict[str, str]:
        """Proxy variables that send all non-loopback HTTP(S) to the trap."""
        loopback = "127.0.0.1,localhost,::1"
        return {
            "HTTP_PROXY": self.url, "HTTPS_PROXY": self.url, "ALL_PROXY": self.url,
            "http_proxy": self.url, "https_proxy": self.url, "all_proxy": self.url,
            "NO_PROXY": loopback, "no_proxy": loopback,
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- upstream checks

_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = {"system", "user", "assistant", "tool"}


def check_chat_request(body: dict[str, Any]) -> None:
    """Assert ``body`` is a Chat Completions request a strict server would accept.

    One system message, first if present; every assistant tool call answered by the
    tool messages that immediately follow it (same ``tool_call_id``s, each once); no
    tool message without its call; tools all ``function`` with valid, unique names.
    """
    assert isinstance(body.get("model"), str) and body["model"], "model missing"
    messages = body.get("messages")
    assert isinstance(messages, list) and messages, "messages missing"
    roles = [m.get("role") for m in messages]
    assert set(roles) <= _ROLES, f"unexpected roles {roles}"
    assert roles.count("system") <= 1, f"more than one system message: {roles}"
    assert "system" not in roles or roles[0] == "system", f"system message not first: {roles}"

    i = 0
    while i < len(messages):
        msg = messages[i]
        role = msg["role"]
        if role == "tool":
            raise AssertionError(f"messages[{i}]: tool message {msg.get('tool_call_id')!r} without its assistant call")
        if role == "assistant" and msg.get("tool_calls"):
            calls = msg["tool_calls"]
            ids = []
            for call in calls:
                assert call.get("type") == "function", call
                assert isinstance(call.get("id"), str) and call["id"], f"tool call without id: {call}"
                fn = call.get("function") or {}
                assert isinstance(fn.get("name"), str) and fn["name"], call
                assert isinstance(fn.get("arguments"), str), call
                json.loads(fn["arguments"])  # arguments are a JSON document
                ids.append(call["id"])
            assert len(set(ids)) == len(ids), f"duplicate tool call ids {ids}"
            answers = messages[i + 1 : i + 1 + len(ids)]
            answered = [m.get("tool_call_id") for m in answers if m.get("role") == "tool"]
            assert sorted(answered) == sorted(ids), (
                f"messages[{i}]: calls {ids} must be answered right after by tool messages, got "
                f"{[(m.get('role'), m.get('tool_call_id')) for m in answers]}"
            )
            for m in answers:
                assert m.get("content") is not None, f"tool message without content: {m}"
            i += 1 + len(ids)
            continue
        if role in ("user", "system"):
            assert msg.get("content") not in (None, "", []), f"messages[{i}] ({role}) is empty"
        if role == "assistant":
            assert msg.get("content") not in (None, "", []) or msg.get("reasoning_content"), f"empty assistant messages[{i}]"
        i += 1

    tools = body.get("tools")
    if tools is not None:
        assert isinstance(tools, list) and tools, "tools must be a non-empty list when present"
        names = []
        for tool in tools:
            assert tool.get("type") == "function", f"non-function tool upstream: {tool.get('type')}"
            fn = tool["function"]
            assert _FUNCTION_NAME.match(fn.get("name", "")), f"bad function name {fn.get('name')!r}"
            assert isinstance(fn.get("parameters", {}), dict)
            names.append(fn["name"])
        assert len(set(names)) == len(names), f"duplicate tool names {names}"


def upstream_tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


def assistant_turns(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "assistant"]


def message_text(message: dict[str, Any]) -> str:
    """A chat message's text, whether its content is a string or a list of text parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""
