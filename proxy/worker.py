"""The Uvicorn worker class gunicorn runs: uvloop, httptools and websockets, explicitly,
and HTTP and WebSocket protocols that lose no request when the worker stops.

``uvicorn-worker`` would pick the stack by "auto"; naming it makes a missing
package fail at boot instead of silently running the slower pure-Python stack
(or, for WebSockets, refusing every upgrade). WebSockets run on uvicorn's
``websockets-sansio`` protocol, over the ``websockets`` package's sans-I/O core
(the legacy one is deprecated by websockets 14+), subclassed for shutdown below.

The WebSocket limits come from the settings: a message may be a little larger
than ``MAX_BODY_BYTES`` so that one just over the limit reaches the app and gets
a clear ``error`` event (the connection stays usable); anything larger still is
refused by the protocol itself (close code 1009) before it is buffered whole.
The server pings every ``WEBSOCKET_PING_SECS`` and drops a peer that does not
answer within as long again.

**Stopping without losing a request** (SIGHUP's old workers, SIGTERM). uvicorn's
``Server.shutdown`` calls ``HttpToolsProtocol.shutdown`` on every connection,
which closes at once each one with no request in progress: idle keep-alive
connections, and just-accepted ones whose request is already in the socket
but not read yet. A balancer that had just sent a request on one (HAProxy
reuses its idle connections to an instance) gets nothing back, or a reset,
from a server that may have seen the request, and cannot replay a POST: the
request is lost. ``LingeringHttpToolsProtocol`` instead keeps such a
connection open for ``SHUTDOWN_LINGER_SECS``: a request that is already
buffered, or arrives meanwhile, is served, answered with ``Connection:
close``, and the connection then closes (the balancer opens its next one to a
worker that is not stopping). A connection still idle at the end of the linger
is closed then. A request in progress whose answer has not begun
finishes with ``Connection: close``, as before; one whose head is already
out (a stream: uvicorn would close the connection right after its last byte,
while the balancer may already be reusing it) finishes, then its connection
lingers as an idle one does. The worker exits once its last connection
has closed, so the linger only delays the exit of a worker that still had
idle connections; gunicorn's graceful timeout bounds it as it bounds streams.

Its length: closing an idle connection is safe once the balancer no longer
picks it. ``conf/haproxy.cfg`` purges the idle server connections it does not
need every ``pool-purge-delay`` (5 s), and after a SIGTERM (listener closed)
marks the instance down after ``fall`` failed checks ``inter`` apart (3 × 2 s);
the default of 10 s outlasts both, and stays far below gunicorn's ``keepalive``
(75 s: an idle connection's normal lifetime) and the graceful timeout.
``SHUTDOWN_LINGER_SECS=0`` restores uvicorn's behaviour.

**WebSockets at shutdown.** uvicorn's ``WebSocketsSansIOProtocol.shutdown`` closes
every open socket with 1012 (service restart) at once, cutting a response in progress:
the client loses that turn and the backend's tokens are wasted. ``DrainingWebSocketProtocol``
instead resolves the connection's ``STOPPING`` future (an ASGI scope extension) and lets the
app end the connection itself: an idle one is closed with 1012 at once, a busy one right after
its running response's terminal event (``proxy.resources.ws_connection``). gunicorn's
graceful timeout bounds the wait, as it bounds streams.

**Bytes that are not HTTP.** httptools refuses a request it cannot parse (a control character
in a header value, both ``Content-Length`` and ``Transfer-Encoding``, a bad chunk size, a bad
request line) before any app sees it, and uvicorn answers that with a plain-text ``400 Invalid
HTTP request received.``; ``LingeringHttpToolsProtocol.send_400_response`` answers the same
400 as an OpenAI-shaped JSON error (``invalid_http_request``), as every other error here is.
It overrides only that error path. (The worker always runs httptools; uvicorn's h11 protocol
cannot be chosen here, so it has no such override.) That 400 writes the ``request_completed``
line every request writes (``proxy.edge``). Request heads and bodies that stall are bounded by
the worker's sweep (``proxy.stalled``), which it runs beside the server; a head is timed out
here (``time_out_head``: a JSON 408). WebSocket handshakes the ``websockets`` library refuses
(its plain-text 400) and uvicorn's WebSocket 500 and 403 are JSON too: ``DrainingWebSocketProtocol``
gives its ``websockets`` protocol object the class ``proxy.edge.JsonRejections``, whose ``reject``
is the one place every such refusal is built.

A handshake on a path that has no WebSocket route never reaches Falcon (``proxy.edge.
JsonRejections.accept`` refuses it: a JSON 404 and its line). Falcon logs an ERROR for any other
WebSocket handshake it refuses with a 4xx, where the same refusal of a plain HTTP
request is not logged at all: a client's mistake, not the server's.
``QuietRefusedHandshakes`` sends those lines out at INFO. At DEBUG the
``websockets`` protocol logs each handshake's headers; ``MaskedHandshakeHeaders`` masks the
credentials among them.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from typing import Any, ClassVar

import orjson
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]  # ships no type information
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]  # ships no type information
from websockets.http11 import Request

from . import settings as settings_mod
from .drain import STOPPING
from .edge import SERVER_ANSWERED, JsonRejections, head_timeout_tail, json_tail, log_refused
from .errors import malformed_http, restarting
from .logs import mask_key
from .stalled import RequestWatch

# Room for the `response.create` envelope and for a body just over the limit.
WS_MESSAGE_SLACK_BYTES = 1024 * 1024

# A WebSocket handshake that reaches a stopping worker: the client reconnects and lands on a
# live one. (An upgraded connection would outlive the linger, holding the worker up.)
_RESTARTING_BODY = orjson.dumps(restarting().body())
_RESTARTING = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_RESTARTING_BODY), _RESTARTING_BODY)
)
# What a request httptools cannot parse gets (after the server's date and server headers), in place
# of uvicorn's plain-text "Invalid HTTP request received.".
_BAD_REQUEST_TAIL = json_tail(malformed_http())


class LingeringHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol, but a connection idle at shutdown may still bring one last request.

    ``linger_secs`` and ``stopping`` belong to the class ``http_protocol``
    makes for one worker (one server per worker process). ``stopping`` is set
    when the server starts shutting down (``LingeringServer``): a connection
    accepted just before the listener closed, whose ``connection_made`` runs
    after the server's pass over its connections, lingers as well instead of
    staying keep-alive for ``keepalive`` seconds.
    """

    linger_secs: ClassVar[float] = 0.0
    stopping: ClassVar[bool] = False

    _linger: asyncio.TimerHandle | None = None
    _lingering = False
    _linger_after_response = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        if self.stopping:
            self.shutdown()

    def shutdown(self) -> None:
        cycle = self.cycle
        if self.linger_secs <= 0:
            super().shutdown()
        elif cycle is None or cycle.response_complete:
            self._start_linger()
        elif not cycle.response_started:
            cycle.keep_alive = False  # its head will say "Connection: close"
        else:
            # Its head went out without "Connection: close" (a stream): closing right after its
            # last byte races a balancer that has just put the connection back in its pool and
            # sends the next request on it. Linger after it instead, as if idle now.
            self._linger_after_response = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._linger_after_response or self.transport.is_closing():
            return
        self._linger_after_response = False
        if self.cycle is not None and not self.cycle.response_complete:  # a pipelined request began
            self.cycle.keep_alive = False
        else:
            self._start_linger()

    def _start_linger(self) -> None:
        if self._lingering:
            return
        self._lingering = True
        self._linger = self.loop.call_later(self.linger_secs, self._linger_over)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._lingering and self.cycle is not None:
            # The app task is created, not yet run: the answer will say "Connection: close".
            self.cycle.keep_alive = False

    def handle_websocket_upgrade(self) -> None:
        if not self._lingering:
            super().handle_websocket_upgrade()
            return
        self.transport.write(_RESTARTING)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser refuses (a control character in a header, both
        ``Content-Length`` and ``Transfer-Encoding``, a bad chunk size, a bad request line), as JSON.

        Only ever called on that error path (``data_received``). Nothing is written into a
        response already under way (a pipelined request's bytes were bad while the one before
        was streaming): a second status line would corrupt it; the connection closes, as uvicorn's
        does. An answered 400 writes its ``request_completed`` line (``proxy.edge``); when its
        request had reached the app (its body's framing was bad), the app writes none."""
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self._answer(400, _BAD_REQUEST_TAIL)
            if cycle is not None and not cycle.response_complete and cycle.scope is self.scope:
                cycle.scope[SERVER_ANSWERED] = True  # type: ignore[literal-required]  # (else the app logs a 499)
            log_refused(self.headers, 400, None)
        self.transport.close()

    def _answer(self, status: int, tail: bytes) -> None:
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join(head) + tail)

    def head_wait(self) -> tuple[object, bool] | None:
        """For the sweep (``proxy.stalled``): ``None`` when no request head is awaited — a request
        is in progress, or the connection is idle between requests (uvicorn's keep-alive timer
        bounds that) —, else the request this head follows (its cycle, or ``None`` on a new
        connection) and whether any of the head has come (a request line begun: httptools'
        ``on_message_begin`` gave it a new scope that no cycle has taken yet)."""
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.transport.is_closing():
            return None
        began = self.scope is not None and (cycle is None or cycle.scope is not self.scope)
        if cycle is not None and not began:
            return None
        return cycle, began

    def time_out_head(self, timeout_secs: float, waited_secs: float) -> None:
        """The head did not come within ``timeout_secs``: a 408 (and its metrics line) when some of
        it came, as HAProxy answers; a connection that sent nothing at all (a preconnect, a probe)
        is closed without a word, as HAProxy's ``http-ignore-probes`` and nginx do."""
        wait = self.head_wait()
        if wait is None:
            return  # (it came meanwhile)
        if wait[1]:
            self._answer(408, head_timeout_tail(timeout_secs))
            log_refused(self.headers, 408, time.perf_counter() - waited_secs)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)

    def _linger_over(self) -> None:
        self._linger = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def http_protocol(linger_secs: float) -> type[LingeringHttpToolsProtocol]:
    """A protocol class of this worker's own, lingering ``linger_secs`` at shutdown."""
    return type("LingeringHttpToolsProtocol", (LingeringHttpToolsProtocol,), {"linger_secs": linger_secs})


class LingeringServer(Server):
    """uvicorn's server, telling ``protocol`` when its shutdown begins (before it closes the listener)."""

    def __init__(self, config: Config, protocol: type[LingeringHttpToolsProtocol]) -> None:
        super().__init__(config)
        self._protocol = protocol

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._protocol.stopping = True
        await super().shutdown(sockets)


class DrainingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, but a stopping worker lets the app close each
    accepted connection itself (see the module docstring)."""

    _stopping: asyncio.Future[None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every handshake it refuses, and uvicorn's 500 and 403, as OpenAI-shaped JSON (``proxy.edge``):
        # the same object, its class narrowed (one store per connection, nothing per message).
        self.conn.__class__ = JsonRejections

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # (none when the handshake was refused outright)
        if scope is not None:
            self._stopping = self.loop.create_future()
            scope["extensions"][STOPPING] = self._stopping
        else:  # the library refused it (a bad Sec-WebSocket-Key…): its metrics line, as a refused POST has
            raw = event.headers.raw_items()
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in raw]
            log_refused(headers, self.response.status_code, None)

    def shutdown(self) -> None:
        stopping = self._stopping
        if stopping is None or not self.handshake_complete or self.close_sent or self.disconnected:
            super().shutdown()  # not accepted yet (a 500), or already closing: uvicorn's way
        elif not stopping.done():
            stopping.set_result(None)  # (its pings go on: a response may run for minutes yet)


class QuietRefusedHandshakes(logging.Filter):
    """On the ``falcon`` logger: its "HTTPError … raised while handling WebSocket" records of a 4xx
    become INFO records (dropped when the logger is set above INFO); everything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR or not isinstance(record.msg, str) or not record.args:
            return True
        if not record.msg.startswith("[FALCON] HTTPError") or "WebSocket" not in record.msg:
            return True
        status = getattr(record.args[0], "status_code", 500) if isinstance(record.args, tuple) else 500
        if not 400 <= status < 500:
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


class MaskedHandshakeHeaders(logging.Filter):
    """On ``uvicorn.error``: at DEBUG the ``websockets`` protocol logs every handshake header
    there (``< authorization: Bearer …``); credentials go out through ``mask_key``."""

    SECRET = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == "< %s: %s" and isinstance(args, tuple) and len(args) == 2:
            name, value = args
            if isinstance(name, str) and name.lower() in self.SECRET:
                record.args = (name, mask_key(str(value)))
        return True


def websocket_kwargs(settings: settings_mod.Settings) -> dict[str, Any]:
    """uvicorn's WebSocket options for these settings."""
    return {
        "ws": DrainingWebSocketProtocol,
        "ws_max_size": settings.max_body_bytes + WS_MESSAGE_SLACK_BYTES,
        "ws_ping_interval": settings.websocket_ping_secs,
        "ws_ping_timeout": settings.websocket_ping_secs,
        "ws_per_message_deflate": True,
    }


class Worker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {"loop": "uvloop", "http": "httptools", "lifespan": "on"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Settings were validated by conf/gunicorn.conf.py before any worker exists.
        settings = settings_mod.load()
        self._protocol = http_protocol(min(settings.shutdown_linger_secs, settings.graceful_timeout_secs))
        self._body_timeout = settings.body_read_timeout_secs
        self.CONFIG_KWARGS = {
            **Worker.CONFIG_KWARGS, "http": self._protocol, **websocket_kwargs(settings),
            # Connections get GRACEFUL_TIMEOUT_SECS after SIGTERM, then uvicorn cuts them and runs the
            # lifespan shutdown, where background jobs still running are stored failed: gunicorn's own
            # graceful timeout is longer by BACKGROUND_SHUTDOWN_MARGIN_SECS for that (conf/gunicorn.conf.py).
            "timeout_graceful_shutdown": settings.graceful_timeout_secs,
        }
        super().__init__(*args, **kwargs)
        falcon_log = logging.getLogger("falcon")
        if not any(isinstance(f, QuietRefusedHandshakes) for f in falcon_log.filters):
            falcon_log.addFilter(QuietRefusedHandshakes())
        server_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, MaskedHandshakeHeaders) for f in server_log.filters):
            server_log.addFilter(MaskedHandshakeHeaders())

    async def _serve(self) -> None:
        # UvicornWorker._serve with LingeringServer in place of Server.
        self.config.app = self.wsgi
        server = LingeringServer(self.config, self._protocol)
        self._install_sigquit_handler()
        # Every request head and body within BODY_READ_TIMEOUT_SECS, during the shutdown too (proxy/stalled.py).
        watch = asyncio.create_task(RequestWatch(server.server_state.connections, self._body_timeout).run())
        try:
            await server.serve(sockets=self.sockets)
        finally:
            watch.cancel()
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
