"""``Metrics``: one worker's instruments, cheap enough to call on every request.

Label cardinality is bounded: routes are Falcon's route templates
(``"unmatched"`` for unknown paths); a model name gets its own label, per
worker, only once a request for it ended with a status that is not a client
error (a name the backend refuses with 404 never gets one), and only for the
first ``model_labels`` such names (``CIRCUIT_BREAKER_MODEL_SLOTS``); every
other name is counted as ``model="other"`` (``"-"``: the request named none). Upstream error kinds, routes of
the histograms and store op/backend pairs are bounded to 32 label sets each,
the rest counted under ``other``.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .directory import install_multiprocess_values

__all__ = ["OTHER", "PREFIX", "Metrics"]

PREFIX = "responses_proxy_"
OTHER = "other"
NO_MODEL = "-"  # the request named no (valid) model: a label of its own
SERVER_ROUTE = "server"  # a request the server answered itself, before any route (proxy.edge)
_BOUNDED = 32
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_FIRST_EVENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
C = TypeVar("C")


class _Children(Generic[C]):
    """``metric.labels(*key)`` remembered (that call is the slow part of an increment),
    for at most ``limit`` label sets; past it every new set is counted under ``other``."""

    __slots__ = ("_make", "_limit", "_other", "_cache")

    def __init__(self, make: Callable[..., C], limit: int, other: tuple[str, ...]) -> None:
        self._make = make
        self._limit = limit
        self._other = other
        self._cache: dict[tuple[str, ...], C] = {}

    def get(self, key: tuple[str, ...]) -> C:
        child = self._cache.get(key)
        if child is None:
            if len(self._cache) >= self._limit:
                key = self._other
                child = self._cache.get(key)
            if child is None:
                child = self._cache[key] = self._make(*key)
        return child


class _Observe:
    """A histogram child's ``observe``: add to its sum and to the one bucket the value falls in.

    The same two writes the library's ``observe`` makes, without its per-call
    checks and its linear scan of the bounds. Like the request counter and the
    live gauges (``._value.inc``), this reaches into prometheus_client 0.26's
    children (pinned in requirements.txt); the metrics tests count every value.
    """

    __slots__ = ("_sum", "_buckets", "_bounds")

    def __init__(self, child: Histogram) -> None:
        self._sum = child._sum.inc
        self._buckets = [bucket.inc for bucket in child._buckets]
        self._bounds = child._upper_bounds  # sorted, ending with +Inf

    def __call__(self, amount: float) -> None:
        self._sum(amount)
        self._buckets[bisect_left(self._bounds, amount)](1)


class Metrics:
    """One worker's instruments: a few dictionary lookups and mmap writes per call."""

    def __init__(self, *, model_labels: int = 256) -> None:
        self.multiprocess = install_multiprocess_values()
        # In multiprocess mode values are read from the files, not from a registry.
        self.registry = None if self.multiprocess else CollectorRegistry()
        reg = self.registry
        self._model_limit = model_labels
        self._models: set[str] = set()
        requests = Counter(
            PREFIX + "requests", "Requests answered, by route, model, HTTP status and whether the answer streamed.",
            ["route", "model", "status", "streaming"], registry=reg,
        )
        duration = Histogram(
            PREFIX + "request_duration_seconds", "Time from request to the end of its answer (streams: the last byte).",
            ["route", "streaming"], buckets=_DURATION_BUCKETS, registry=reg,
        )
        first_event = Histogram(
            PREFIX + "time_to_first_event_seconds", "Time from request to the backend's first output, for streams.",
            ["route"], buckets=_FIRST_EVENT_BUCKETS, registry=reg,
        )
        errors = Counter(PREFIX + "upstream_errors", "Backend failures, by kind.", ["kind"], registry=reg)
        self._in_flight = Gauge(
            PREFIX + "requests_in_flight", "Requests being served.", multiprocess_mode="livesum", registry=reg,
        )
        self._streams = Gauge(
            PREFIX + "open_streams", "SSE answers being streamed.", multiprocess_mode="livesum", registry=reg,
        )
        # What each worker holds right now, sampled about once a second
        # (Runtime.startup): after a burst of any kind they return to their floor,
        # which is how a leaked exchange, upstream response or task shows.
        self._held = {
            name: Gauge(PREFIX + name, doc, multiprocess_mode="livesum", registry=reg)
            for name, doc in (
                ("exchanges_open", "Upstream round trips not yet released (each holds a breaker permit)."),
                ("upstream_responses_open", "Upstream responses not yet closed (pooled connections in use)."),
                ("event_loop_tasks", "Tasks alive in the workers' event loops."),
            )
        }
        store_ops = Counter(
            PREFIX + "store_operations", "Store operations, by operation and backend.", ["op", "backend"], registry=reg,
        )
        store_failures = Counter(
            PREFIX + "store_failures", "Store operations that failed, by operation and backend.",
            ["op", "backend"], registry=reg,
        )
        store_seconds = Histogram(
            PREFIX + "store_operation_seconds", "Store operation latency.", ["op", "backend"],
            buckets=_STORE_BUCKETS, registry=reg,
        )
        background = Counter(
            PREFIX + "background_jobs", "Background jobs by what happened to them: started, then one of completed, "
            "incomplete, failed (ended by their worker), cancelled, reaped (their worker vanished).",
            ["event"], registry=reg,
        )
        self._jobs_running = Gauge(
            PREFIX + "background_jobs_running", "Background jobs being generated.", multiprocess_mode="livesum",
            registry=reg,
        )
        # Routes x (model labels + "other") x statuses x 2: bounded by construction;
        # the hard limit only guards against a caller passing unbounded routes.
        self._requests = _Children(
            lambda *key: requests.labels(*key)._value.inc, 64 * (model_labels + 2), (OTHER, OTHER, "0", "false")
        )
        self._duration = _Children(lambda *key: _Observe(duration.labels(*key)), _BOUNDED, (OTHER, "false"))
        self._first_event = _Children(lambda *key: _Observe(first_event.labels(*key)), _BOUNDED, (OTHER,))
        self._in_flight_add = self._in_flight._value.inc
        self._streams_add = self._streams._value.inc
        self._errors = _Children(errors.labels, _BOUNDED, (OTHER,))
        self._background = _Children(background.labels, _BOUNDED, (OTHER,))
        self._jobs_running_add = self._jobs_running._value.inc
        self._store = _Children(
            lambda op, backend: (store_ops.labels(op, backend)._value.inc,
                                 store_failures.labels(op, backend)._value.inc,
                                 _Observe(store_seconds.labels(op, backend))),
            _BOUNDED, (OTHER, OTHER),
        )

    def sample_held(self, *, exchanges: int, upstream_responses: int, tasks: int) -> None:
        """What this worker holds now (see the gauges' doc)."""
        held = self._held
        held["exchanges_open"].set(exchanges)
        held["upstream_responses_open"].set(upstream_responses)
        held["event_loop_tasks"].set(tasks)

    def request_started(self) -> None:
        """A request arrived (before routing: it has no route or model yet)."""
        self._in_flight_add(1)

    def request_finished(self, route: str, model: str, status: int, streaming: bool, seconds: float) -> None:
        """A request's answer ended (a stream's: its last byte); pairs with ``request_started``."""
        label = model if model in self._models else self._admit_model(model, status)
        flag = "true" if streaming else "false"
        self._requests.get((route, label, str(status), flag))(1)
        self._duration.get((route, flag))(seconds)
        self._in_flight_add(-1)

    def request_refused(self, status: int) -> None:
        """A request the server answered itself (``proxy.edge``: malformed HTTP, a head that timed out,
        a refused WebSocket handshake): counted beside the app's, under ``route="server"``. It
        never reached the app, so it was never in flight and has no duration worth a bucket."""
        self._requests.get((SERVER_ROUTE, NO_MODEL, str(status), "false"))(1)

    def first_event(self, route: str, seconds: float) -> None:
        """A stream's first output from the backend, ``seconds`` after the request arrived."""
        self._first_event.get((route,))(seconds)

    def upstream_error(self, kind: str) -> None:
        """A backend failure of ``kind`` (the failure taxonomy's name: ``unreachable``, ``timeout``…)."""
        self._errors.get((kind,)).inc()

    def stream_opened(self) -> None:
        self._streams_add(1)

    def stream_closed(self) -> None:
        self._streams_add(-1)

    def store_op(self, op: str, backend: str, ok: bool, seconds: float) -> None:
        ops, failures, latency = self._store.get((op, backend))
        ops(1)
        if not ok:
            failures(1)
        latency(seconds)

    def background_job(self, event: str) -> None:
        """A background job ``started``, ended (its final status), was ``cancelled`` or ``reaped``."""
        self._background.get((event,)).inc()

    def jobs_running(self, delta: int) -> None:
        self._jobs_running_add(delta)

    def _admit_model(self, model: str, status: int) -> str:
        if model == NO_MODEL:
            return model
        if 400 <= status < 500 or len(self._models) >= self._model_limit:
            return OTHER
        self._models.add(model)
        return model
