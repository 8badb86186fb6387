"""The Uvicorn worker class gunicorn runs: uvloop and httptools, explicitly.

``uvicorn-worker`` would pick them by "auto"; naming them makes a missing
package fail at boot instead of silently running the slower pure-Python stack.
"""
from __future__ import annotations

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]  # ships no type information


class Worker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "uvloop", "http": "httptools", "lifespan": "on"}
