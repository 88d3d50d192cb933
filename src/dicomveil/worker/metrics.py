"""A worker's Prometheus metrics (``dicomveil worker --metrics-port N``).

- ``dicomveil_worker_tasks_total{verdict}``: tasks ended, by verdict (stored, gone, retry,
  dead, rejected); failures are ``retry`` + ``dead`` + ``rejected``;
- ``dicomveil_worker_task_latency_seconds``: from enqueue to the end of the task (queue
  wait included: what a reader waits);
- ``dicomveil_worker_queue_depth{queue}``: messages waiting in each served queue, read from
  the broker when scraped.

Labels hold verdicts and queue names only. Needs ``prometheus-client`` (the ``server``
extra).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dicomveil._optional import require

if TYPE_CHECKING:
    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.worker.tasks import Verdict

__all__ = ["WorkerMetrics"]

log = logging.getLogger("dicomveil.worker")


class _Depth:
    """A collector reading each queue's length from the broker on scrape."""

    def __init__(self, cluster: ClusterSettings, queues: Sequence[str]) -> None:
        from dicomveil.cluster.broker import make_app

        self.app = make_app(cluster, "dicomveil-metrics")
        self.queues = list(queues)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "dicomveil_worker_queue_depth", "Messages waiting per queue", labels=["queue"]
        )
        try:
            with self.app.connection_for_read() as conn:
                channel = conn.default_channel
                for name in self.queues:
                    declared = channel.queue_declare(name, passive=True)
                    family.add_metric([name], float(declared.message_count))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the broker
            log.warning("queue depth not read (%s)", type(exc).__name__)
        yield family


class WorkerMetrics:
    """The metrics of one worker process (see the module's documentation)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.registry = registry
        self.tasks = Counter(
            "dicomveil_worker_tasks", "Tasks ended, by verdict", ["verdict"], registry=registry
        )
        self.latency = Histogram(
            "dicomveil_worker_task_latency_seconds",
            "Seconds from enqueue to the end of the task",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600),
            registry=registry,
        )

    @classmethod
    def start(
        cls, port: int, cluster: ClusterSettings, queues: Sequence[str], host: str = "127.0.0.1"
    ) -> WorkerMetrics:
        """Serve the metrics on ``host:port`` (a thread of this process)."""
        prometheus = require("prometheus_client", "worker metrics", "server")
        registry = prometheus.CollectorRegistry()
        metrics = cls(registry)
        registry.register(_Depth(cluster, queues))
        prometheus.start_http_server(port, addr=host, registry=registry)
        return metrics

    def observe(self, body: object, verdict: Verdict) -> None:
        """Count a task's end (and its latency, when the payload says when it was sent)."""
        self.tasks.labels(verdict.value).inc()
        enqueued = body.get("enqueued_at") if isinstance(body, dict) else None
        if isinstance(enqueued, int | float) and enqueued > 0:
            self.latency.observe(max(0.0, time.time() - enqueued))
