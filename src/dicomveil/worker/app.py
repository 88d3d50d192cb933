"""The worker's Celery app: the task, and starting a worker.

:func:`run_worker` checks the broker first (a clear error, not a retry loop, when it cannot
be reached), then runs Celery's worker in this process: ``-P solo`` for one task at a time;
for ``concurrency`` > 1, threads sharing one runtime (the ingest service is thread-safe: the
tasks' waits on ``fsync``, the databases and the stores overlap) or, with ``pool="prefork"``,
child processes (each opens its own runtime on its first task).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from dicomveil.cluster.broker import TASK_NAME, make_app
from dicomveil.cluster.queues import ALL_QUEUES
from dicomveil.worker.metrics import WorkerMetrics
from dicomveil.worker.tasks import Verdict, WorkerState, backoff, handle

if TYPE_CHECKING:
    from collections.abc import Sequence

    from celery import Celery

__all__ = ["build_app", "run_worker"]

log = logging.getLogger("dicomveil.worker")


def build_app(state: WorkerState, metrics: WorkerMetrics | None = None) -> Celery:
    """The Celery app of a worker, with its one task bound to ``state``."""
    app = make_app(state.cluster, "dicomveil-worker")
    max_retries = state.cluster.max_retries

    @app.task(bind=True, name=TASK_NAME, max_retries=max_retries)  # type: ignore[untyped-decorator]
    def ingest_object(self: Any, body: object) -> str:
        retries = int(self.request.retries or 0)
        try:
            verdict = handle(body, state, last_attempt=retries >= max_retries)
        except Exception as exc:  # noqa: BLE001 - a task that raises is acknowledged: lost
            log.error("task failed unexpectedly (%s): retrying", type(exc).__name__)
            verdict = Verdict.RETRY
        if metrics is not None:
            metrics.observe(body, verdict)
        if verdict is Verdict.RETRY:
            raise self.retry(countdown=backoff(retries))
        return verdict.value

    del ingest_object
    return app


def run_worker(
    state: WorkerState,
    *,
    queues: Sequence[str] = ALL_QUEUES,
    concurrency: int = 1,
    metrics_port: int | None = None,
    loglevel: str = "WARNING",
    pool: str | None = None,
) -> None:
    """Serve ``queues`` until stopped (SIGTERM: warm shutdown, the task in hand finishes).

    Raises
    ------
    QueueUnavailable
        The broker cannot be reached at start.
    """
    from dicomveil.cluster.submit import Queue

    probe = Queue(state.cluster)
    try:
        probe.ping()
    finally:
        probe.close()
    metrics = WorkerMetrics.start(metrics_port, state.cluster, queues) if metrics_port else None
    app = build_app(state, metrics)
    pool = pool or ("solo" if concurrency <= 1 else "threads")
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={max(1, concurrency)}",
        f"--queues={','.join(queues)}",
        f"--hostname=dicomveil-{os.getpid()}@{socket.gethostname()}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    try:
        app.worker_main(argv=argv)
    finally:
        state.close()
