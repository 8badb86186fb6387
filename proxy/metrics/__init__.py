"""Prometheus metrics, aggregated over every worker of the instance.

prometheus_client's multiprocess mode: each worker writes its values to its
own memory-mapped files in one directory (``directory``), and ``GET /metrics``
merges all of them at scrape time (``exposition.render``). A worker that dies
leaves its counters' files behind, so what it counted is never lost, and its
respawned successor (another pid) writes new files, so nothing is counted
twice. Live gauges (requests in flight, open streams) of a dead worker are
dropped by ``worker_exited`` from gunicorn's ``child_exit`` hook.

``instruments.Metrics`` is what the request path calls (a few µs per
request, nothing per streamed chunk); the breakers' state is read from their
shared table at scrape time, not counted per process.
"""
from __future__ import annotations

from .directory import (
    DIR_ENV,
    instance_dir,
    multiprocess_dir,
    prepare_multiprocess_dir,
    remove_instance_dir,
    worker_exited,
)
from .exposition import BreakerCollector, render
from .instruments import OTHER, PREFIX, Metrics

__all__ = [
    "DIR_ENV",
    "OTHER",
    "PREFIX",
    "BreakerCollector",
    "Metrics",
    "instance_dir",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
    "remove_instance_dir",
    "render",
    "worker_exited",
]
