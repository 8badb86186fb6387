"""``SocketTap``: a loopback TCP relay that records every connection byte for byte.

``tests/tap.py``'s ``RecordingTap`` speaks HTTP and cannot carry an upgraded
connection; this one relays raw bytes, so a client we do not control (Codex, the
Agents SDK) can talk WebSocket mode to the proxy through it and the test can
still see everything: which connections were WebSocket upgrades and which were
plain HTTP requests (``connections``), and every message each side sent
(``messages``). To make the messages readable it drops the client's
``Sec-WebSocket-Extensions`` header from the handshake, so no compression is
negotiated (the proxy compresses when asked; that is uvicorn's, not ours).
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

_HEAD_END = b"\r\n\r\n"


@dataclass
class TapConnection:
    """One client connection: its first request line and headers, and both byte streams."""

    request_line: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    client_bytes: bytearray = field(default_factory=bytearray)  # after the request head
    server_bytes: bytearray = field(default_factory=bytearray)  # the whole answer, head included
    closed: threading.Event = field(default_factory=threading.Event)

    @property
    def is_websocket(self) -> bool:
        return self.request_line.startswith("GET ") and self.headers.get("upgrade", "").lower() == "websocket"

    def messages(self) -> tuple[list[str], list[str]]:
        """(client's text messages, server's text messages) of a WebSocket connection."""
        return (_texts(_frames(bytes(self.client_bytes), masked=True)),
                _texts(_frames(self._server_frames(), masked=False)))

    def server_close_code(self) -> int | None:
        """The code of the server's close frame, if it sent one."""
        closes = [payload for opcode, payload in _frames(self._server_frames(), masked=False) if opcode == 0x8]
        return int.from_bytes(closes[-1][:2], "big") if closes and len(closes[-1]) >= 2 else None

    def _server_frames(self) -> bytes:
        assert self.is_websocket, self.request_line
        head, sep, frames = bytes(self.server_bytes).partition(_HEAD_END)
        assert sep and head.startswith(b"HTTP/1.1 101"), head[:200]
        return frames


def _texts(frames: list[tuple[int, bytes]]) -> list[str]:
    return [payload.decode("utf-8") for opcode, payload in frames if opcode == 0x1]


def _frames(data: bytes, *, masked: bool) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each frame in a stream of (unfragmented, uncompressed) WebSocket frames."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        opcode, length, i = b0 & 0x0F, b1 & 0x7F, i + 2
        assert b0 & 0x80, "fragmented WebSocket message"
        assert not b0 & 0x70, "compressed WebSocket frame (RSV bits set)"
        if length == 126:
            length, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        mask = b""
        if b1 & 0x80:
            assert masked, "masked frame from the server"
            mask, i = data[i:i + 4], i + 4
        payload = data[i:i + length]
        if len(payload) < length:
            break  # cut short (the connection dropped)
        i += length
        if mask:
            payload = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
        out.append((opcode, payload))
    return out


class SocketTap:
    """Relay ``127.0.0.1:<port>`` to ``target_port`` on loopback and record each connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections: list[TapConnection] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def websockets(self) -> list[TapConnection]:
        return [c for c in self.connections if c.is_websocket]

    def http_requests(self) -> list[str]:
        return [c.request_line for c in self.connections if not c.is_websocket]

    def close(self) -> None:
        self._stopped = True
        self._listener.close()

    def __enter__(self) -> SocketTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        record = TapConnection()
        self.connections.append(record)
        head = b""
        while _HEAD_END not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                record.closed.set()
                return
            head += chunk
        head, _, rest = head.partition(_HEAD_END)
        lines = head.decode("latin-1").split("\r\n")
        record.request_line = lines[0]
        kept = [lines[0]]
        for line in lines[1:]:
            name, _, value = line.partition(":")
            record.headers[name.strip().lower()] = value.strip()
            if name.strip().lower() != "sec-websocket-extensions":
                kept.append(line)
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        upstream.sendall("\r\n".join(kept).encode("latin-1") + _HEAD_END + rest)
        record.client_bytes += rest
        done = threading.Event()
        threading.Thread(target=self._pump, args=(upstream, client, record.server_bytes, done), daemon=True).start()
        self._pump(client, upstream, record.client_bytes, None)
        done.wait(30)
        for s in (client, upstream):
            s.close()
        record.closed.set()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, log: bytearray, done: threading.Event | None) -> None:
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                log += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if done is not None:
                done.set()
