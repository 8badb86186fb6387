"""Logging: one configuration for every worker, masked secrets, the metrics line.

The reference's operators grep for ``request_completed: model=…, duration_ms=…,
status=…``; we keep that prefix and append the HTTP status and request id.
Prompt text is never logged at INFO; keys only ever appear through ``mask_key``.
"""
from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar

import orjson

log = logging.getLogger("proxy")
metrics = logging.getLogger("proxy.metrics")


def mask_key(key: str | None) -> str:
    """First 6 and last 4 characters; short keys are hidden entirely.

    Works on characters, not bytes, so no key can crash a log line.
    """
    if not key:
        return "-"
    if len(key) < 14:
        return "***"
    return f"{key[:6]}…{key[-4:]}"


# The key of the request the running task serves (set by ``hold_key``; a background job's task
# inherits its request's). Only ``KeyScrubber`` reads it.
_request_key: ContextVar[str | None] = ContextVar("proxy_request_key", default=None)
_MIN_SCRUBBED = 8  # a shorter "key" would mask ordinary words of every line


def hold_key(key: str) -> None:
    """Name the client key of the request this task serves, so that none of its log lines shows
    it: a client may send its key where a logged value goes (``X-Request-ID``, ``model``, a tool
    type a warning names), and the metrics line logged it verbatim."""
    _request_key.set(key)


class KeyScrubber(logging.Filter):
    """Masks the current request's key (``hold_key``) in a record's message and fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = _request_key.get()
        if key is None or len(key) < _MIN_SCRUBBED:
            return True
        message = record.getMessage()  # kept formatted: the formatter does not format it again
        record.msg, record.args = message.replace(key, mask_key(key)) if key in message else message, None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and any(isinstance(v, str) and key in v for v in fields.values()):
            record.fields = {k: v.replace(key, mask_key(key)) if isinstance(v, str) else v for k, v in fields.items()}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure(level: str, fmt: str) -> None:
    """Configure the root logger once per process (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
    handler.addFilter(KeyScrubber())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request line at INFO; that is our job, and it would double the volume.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("httpcore").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def request_completed(
    *, model: str, duration_ms: float, status: str, http_status: int, key: str, request_id: str
) -> None:
    """The metrics line, emitted exactly once per request, failed ones included.

    ``key`` is already masked (``mask_key``): the line attributes traffic to a
    client without ever holding its secret.
    """
    if metrics.isEnabledFor(logging.INFO):
        metrics.info(
            "request_completed: model=%s, duration_ms=%d, status=%s, http_status=%d, key=%s, request_id=%s",
            model,
            duration_ms,
            status,
            http_status,
            key,
            request_id,
            extra={
                "fields": {
                    "event": "request_completed",
                    "model": model,
                    "duration_ms": round(duration_ms, 1),
                    "status": status,
                    "http_status": http_status,
                    "key": key,
                    "request_id": request_id,
                }
            },
        )
