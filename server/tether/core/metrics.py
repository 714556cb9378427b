"""What the server counts, and its Prometheus exposition at ``/metrics``.

The hot path only adds to plain integers (a submit costs a dict lookup, a
bisect and three additions); prometheus-client is imported, and the figures
turned into metric families, only when ``/metrics`` is scraped. Gauges (sessions,
queues) are read from the server at that moment. prometheus-client is an
optional dependency (``pip install 'tether[metrics]'``).
"""

from __future__ import annotations

import bisect
import importlib.util
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["BUCKETS", "Metrics", "available", "exposition"]

# Upper bounds (seconds) of the submit duration histogram: 0.5 ms .. 60 s.
BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip


def available() -> bool:
    """Is prometheus-client installed?"""
    return importlib.util.find_spec("prometheus_client") is not None


class FunctionStats:
    """Submits of one function that got as far as running (or queueing)."""

    __slots__ = ("buckets", "count", "outcomes", "sum")

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0


class Metrics:
    """The counters of one server."""

    def __init__(self) -> None:
        self.functions: dict[str, FunctionStats] = {}
        self.refused: Counter[str] = Counter()  # by error code, before running
        self.closed: Counter[str] = Counter()  # connections the server closed, by reason

    def finished(self, function: str, outcome: str, seconds: float) -> None:
        """A submit is over: ``outcome`` is ``ok`` or its error code."""
        stats = self.functions.get(function)
        if stats is None:
            stats = self.functions[function] = FunctionStats()
        stats.outcomes[outcome] += 1
        stats.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        stats.sum += seconds
        stats.count += 1


def exposition(metrics: Metrics, gauges: Callable[[], dict[str, Any]]) -> tuple[bytes, str]:
    """The text format of every metric, and its content type. ``gauges()`` gives the
    current values: ``sessions``, ``parked``, ``connections``, ``topics``, and
    ``functions`` (name -> (running, queued))."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    class Collector:
        def collect(self) -> Iterator[Any]:
            now = gauges()
            for name, doc, value in (
                ("tether_sessions", "Sessions with a connection.", now["sessions"]),
                ("tether_parked_sessions", "Sessions kept for a resume.", now["parked"]),
                ("tether_connections", "Open WebSocket connections.", now["connections"]),
                ("tether_topics", "Topics with at least one subscriber.", now["topics"]),
            ):
                yield GaugeMetricFamily(name, doc, value=value)
            running = GaugeMetricFamily(
                "tether_running", "Submits running, by function.", labels=["function"]
            )
            queued = GaugeMetricFamily(
                "tether_queued",
                "Submits waiting for their function's concurrency limit.",
                labels=["function"],
            )
            for function, (run, wait) in sorted(now["functions"].items()):
                running.add_metric([function], run)
                queued.add_metric([function], wait)
            yield running
            yield queued
            submits = CounterMetricFamily(
                "tether_submits",
                "Submits that ran or queued, by function and outcome (ok or the error code).",
                labels=["function", "outcome"],
            )
            duration = HistogramMetricFamily(
                "tether_submit_duration_seconds",
                "From a submit's arrival to its answer (queueing included), by function.",
                labels=["function"],
            )
            for function, stats in sorted(metrics.functions.items()):
                for outcome, n in sorted(stats.outcomes.items()):
                    submits.add_metric([function, outcome], n)
                cumulative, buckets = 0, []
                for bound, n in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
                    cumulative += n
                    buckets.append((_bound(bound), cumulative))
                duration.add_metric([function], buckets, stats.sum)
            yield submits
            yield duration
            for name, doc, label, counts in (
                (
                    "tether_refused",
                    "Messages answered with an error before anything ran, by code.",
                    "code",
                    metrics.refused,
                ),
                (
                    "tether_closed_connections",
                    "Connections the server closed or dropped, by reason.",
                    "reason",
                    metrics.closed,
                ),
            ):
                family = CounterMetricFamily(name, doc, labels=[label])
                for value, n in sorted(counts.items()):
                    family.add_metric([value], n)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)
