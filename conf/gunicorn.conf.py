"""Gunicorn configuration: ``gunicorn -c conf/gunicorn.conf.py`` starts the service.

systemd, the Procfile, the Dockerfile and the tests all use that one line.
This file runs in the master, before any worker forks: settings are validated
here (a bad value stops the service with a clear message), the circuit
breakers' shared table is created here so every worker, respawned ones
included, inherits the same state, and the metrics directory every worker
writes to is prepared here. gunicorn re-runs this file on SIGHUP; both are
get-or-create, so a reload keeps the breakers' state and the counts.
"""
import os
import sys

# The project root, so `proxy` imports however gunicorn was started.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proxy import drain as _drain
from proxy import metrics as _metrics
from proxy import settings as _settings
from proxy.breaker import shared_table

try:
    _s = _settings.load()
except _settings.SettingsError as _exc:
    sys.stderr.write(f"responses-proxy: invalid setting: {_exc}\n")
    sys.exit(2)

if _s.breaker_enabled:
    shared_table(_s.breaker_model_slots)
# The draining flag every worker's /health reads (proxy/drain.py), set on SIGTERM below.
_draining = _drain.shared_flag()
# METRICS_DIR, or a temporary directory of this instance's own (removed at exit):
# two instances on one host must never merge each other's files.
try:
    _metrics.prepare_multiprocess_dir(_s.metrics_dir or _metrics.instance_dir())
except OSError as _exc:
    sys.stderr.write(f"responses-proxy: invalid setting: METRICS_DIR cannot be used: {_exc}\n")
    sys.exit(2)

# The workers' third-party libraries, imported here once and shared by every forked worker
# (proxy/preload.py: ~9 MB less PSS with 2 workers); the proxy's own code stays per worker.
from proxy.preload import preload as _preload  # noqa: E402

_preload()

wsgi_app = "proxy.app:app"
worker_class = "proxy.worker.Worker"
bind = [f"0.0.0.0:{_s.bind_port}"]
workers = _s.web_concurrency
# In-flight streams and background jobs get GRACEFUL_TIMEOUT_SECS to finish after SIGTERM; jobs
# still running then are stopped and stored as failed within the margin, before gunicorn's kill.
graceful_timeout = int(_s.graceful_timeout_secs) + _settings.BACKGROUND_SHUTDOWN_MARGIN_SECS
# Heartbeat timeout for a stuck worker (not a request timeout: streams may run long).
timeout = 60
# Behind HAProxy: keep idle client connections longer than its `timeout http-keep-alive`.
# A stopping worker keeps them SHUTDOWN_LINGER_SECS instead (proxy/worker.py), for one last request.
keepalive = 75
backlog = 2048
loglevel = _s.log_level.lower()
accesslog = None
errorlog = "-"
proc_name = "responses-proxy"
# gunicorn 27's control socket lives in ~/.gunicorn and would be shared by every
# instance on a host; nothing here uses it.
control_socket_disable = True

if _s.log_format == "json":
    # gunicorn's and uvicorn's own lines in the same one-object-per-line format
    # as the proxy's (proxy.logs configures the app's loggers in each worker).
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "proxy.logs.JsonFormatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"level": _s.log_level, "handlers": ["console"]},
        "loggers": {
            name: {"level": _s.log_level, "handlers": ["console"], "propagate": False, "qualname": name}
            for name in ("gunicorn.error", "gunicorn.access")
        },
    }


def on_starting(server):
    # SHUTDOWN_DRAIN_SECS > 0: the first SIGTERM makes /health answer 503 "draining" for that
    # long, serving as usual, so a health-checking balancer stops sending before the listener
    # closes; then gunicorn's graceful stop (a second SIGTERM skips the rest of the drain).
    # Never on SIGHUP: its new workers keep serving.
    _drain.drain_before_stop(server, _s.shutdown_drain_secs, _draining)
    # SIGINT (Ctrl-C) stops like SIGTERM does (drain, then in-flight streams finish), instead
    # of gunicorn's quick shutdown.
    server.handle_int = server.handle_term


def child_exit(server, worker):
    # A dead worker's requests in flight and open streams are no longer live;
    # its counters stay in its files, so nothing it counted is lost.
    _metrics.worker_exited(worker.pid)


def on_exit(server):
    _metrics.remove_instance_dir()
