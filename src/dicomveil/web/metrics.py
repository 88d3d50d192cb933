"""Prometheus metrics of one gateway app (its own registry, no PHI in any label).

Labels are the HTTP method, the *route template* (``/dicomweb/studies/{study}``, never the
requested path with its UIDs), the status code, and outcome words (``ok``, ``failed``,
``skipped``). Index sizes are read from the index when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dicomveil.index.base import IndexCounts

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _IndexCollector(Collector):
    def __init__(self, counts: Callable[[], IndexCounts]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Any]:
        try:
            counts = self._counts()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the index is down
            return
        family = GaugeMetricFamily(
            "dicomveil_index_objects", "Objects in the archive index", labels=["level"]
        )
        for level in ("patients", "studies", "series", "instances"):
            family.add_metric([level], getattr(counts, level))
        yield family


class Metrics:
    """The gateway's metrics.

    Parameters
    ----------
    counts:
        Returns the index counts when scraped.
    """

    def __init__(self, counts: Callable[[], IndexCounts]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dicomveil_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dicomveil_http_request_duration_seconds",
            "HTTP request duration by method and route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.instances = Counter(
            "dicomveil_instances",
            "Instances received for de-identification, by entry point and outcome",
            ["entry", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_IndexCollector(counts))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def count_instances(self, entry: str, outcomes: dict[str, int]) -> None:
        """Count instances of one request by outcome (``entry``: ``stow``, ``api``, ...)."""
        for outcome, number in outcomes.items():
            if number:
                self.instances.labels(entry, outcome).inc(number)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
