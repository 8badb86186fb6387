"""The Uvicorn worker class gunicorn runs: uvloop, httptools and websockets, explicitly.

``uvicorn-worker`` would pick them by "auto"; naming them makes a missing
package fail at boot instead of silently running the slower pure-Python stack
(or, for WebSockets, refusing every upgrade). ``websockets-sansio`` is uvicorn's
protocol over the ``websockets`` package's sans-I/O core (the legacy one is
deprecated by websockets 14+).

The WebSocket limits come from the settings: a message may be a little larger
than ``MAX_BODY_BYTES`` so that one just over the limit reaches the app and gets
a clear ``error`` event (the connection stays usable); anything larger still is
refused by the protocol itself (close code 1009) before it is buffered whole.
The server pings every ``WEBSOCKET_PING_SECS`` and drops a peer that does not
answer within as long again.
"""
from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]  # ships no type information

from . import settings as settings_mod

# Room for the `response.create` envelope and for a body just over the limit.
WS_MESSAGE_SLACK_BYTES = 1024 * 1024


def websocket_kwargs(settings: settings_mod.Settings) -> dict[str, Any]:
    """uvicorn's WebSocket options for these settings."""
    return {
        "ws": "websockets-sansio",
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
        self.CONFIG_KWARGS = {
            **Worker.CONFIG_KWARGS, **websocket_kwargs(settings),
            # Connections get GRACEFUL_TIMEOUT_SECS after SIGTERM, then uvicorn cuts them and runs the
            # lifespan shutdown, where background jobs still running are stored failed: gunicorn's own
            # graceful timeout is longer by BACKGROUND_SHUTDOWN_MARGIN_SECS for that (conf/gunicorn.conf.py).
            "timeout_graceful_shutdown": settings.graceful_timeout_secs,
        }
        super().__init__(*args, **kwargs)
