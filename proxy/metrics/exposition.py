"""``render``: the body of ``GET /metrics``, the workers' files merged plus the breakers read now.

The breakers' state and transition counters are not per-process values: they
live in the breakers' shared table, so a collector reads them at scrape time
(every worker would report the same numbers, and summing them would be wrong).
Model labels come from the table's slots, so they are bounded by its size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ..breaker import Breakers
from ..breaker.machine import STATE_NAMES
from .directory import multiprocess_dir
from .instruments import PREFIX, Metrics

__all__ = ["BreakerCollector", "render"]

# Unannotated in prometheus_client: typed once here. It registers itself with the registry.
_multi_process_collector: Callable[[CollectorRegistry, str], object] = MultiProcessCollector


class BreakerCollector(Collector):
    """The host breaker (``scope="host"``) and every model slot in use (``scope="model"``)."""

    def __init__(self, breakers: Breakers) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        b = self._breakers
        states = [b.host_state(), *b.model_states()]
        labels = ["scope", "model"]
        enabled = GaugeMetricFamily(PREFIX + "breaker_enabled", "1 if the circuit breakers are on.")
        enabled.add_metric([], 1.0 if b.enabled else 0.0)
        yield enabled
        state = GaugeMetricFamily(
            PREFIX + "breaker_state", "1 for the breaker's current state (closed, open, half_open).",
            labels=[*labels, "state"],
        )
        failures = GaugeMetricFamily(
            PREFIX + "breaker_consecutive_failures",
            "Failures counted toward opening (host: since the last success on any model).", labels=labels,
        )
        opens = CounterMetricFamily(PREFIX + "breaker_opens", "Times the breaker opened.", labels=labels)
        probes = CounterMetricFamily(PREFIX + "breaker_probes", "Half-open probes let through.", labels=labels)
        recoveries = CounterMetricFamily(
            PREFIX + "breaker_recoveries", "Probes that closed the breaker.", labels=labels
        )
        for s in states:
            key = ["host", ""] if s.model is None else ["model", s.model]
            for name in STATE_NAMES:
                state.add_metric([*key, name], 1.0 if s.state == name else 0.0)
            failures.add_metric(key, s.consecutive_failures)
            opens.add_metric(key, s.opens)
            probes.add_metric(key, s.probes)
            recoveries.add_metric(key, s.recoveries)
        yield from (state, failures, opens, probes, recoveries)
        stats = b.table_stats()
        slots = GaugeMetricFamily(
            PREFIX + "breaker_model_slots", "Model slots in the table, and in use.", labels=["kind"]
        )
        slots.add_metric(["total"], stats["slots"])
        slots.add_metric(["used"], stats["used"])
        yield slots
        yield CounterMetricFamily(
            PREFIX + "breaker_untracked_failures",
            "Model failures not tracked per model: every slot the model could use was open.",
            value=stats["untracked_failures"],
        )
        yield CounterMetricFamily(
            PREFIX + "breaker_evictions", "Model slots taken over by another model.", value=stats["evictions"],
        )


def render(breakers: Breakers, metrics: Metrics | None = None) -> tuple[bytes, str]:
    """Body and content type of ``GET /metrics``.

    With a multiprocess directory (always under gunicorn) the values come from
    every worker's files; without one (a single process, e.g. ``uvicorn``
    directly) from ``metrics``' own registry.
    """
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path is not None:
        _multi_process_collector(registry, path)
    elif metrics is not None and metrics.registry is not None:
        registry.register(_Registry(metrics.registry))
    registry.register(BreakerCollector(breakers))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Registry(Collector):
    """Another registry's metrics, as a collector."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return iter(self._source.collect())
