"""``dicomveil worker``: a queue worker of cluster mode.

Celery is imported only when the command runs; without it the command names the
``pip install 'dicomveil[worker]'`` that fixes it. The worker itself lives in
:mod:`dicomveil.worker`, an edge of its own: this command parses options and hands them over.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from dicomveil.cli.common import fail, state_folder
from dicomveil.errors import ConfigError

__all__ = ["register", "worker"]

HELP = r"""Run a queue worker: de-identify the instances cluster mode queued.

The gateway (`dicomveil serve --queue URL`) and the DICOM node (`dicomveil scp --queue URL`)
write what they receive to the incoming store and queue it; workers read each instance from
there, de-identify, archive, record and index it (the same pipeline as single-process mode),
then delete the original. Run as many workers as you like, on as many hosts: they share only
the broker, the databases (vault, index) and the object stores. docs/cluster.md describes the
topology and what "accepted" means.

Queues: stat, urgent, routine (taken in that order) and large (instances of 256 MB or more).
A worker that serves large and other queues (the default) runs the large queue in a worker
process of its own (--large-concurrency tasks at once), so a 2 GB instance never takes a
slot a STAT study needs; or give large instances their own hosts (--queues large).

Direct uploads can be handed on without their complete call: --upload-events reads the
incoming bucket's S3 event notifications from an SQS queue (docs/uploads.md).

Examples:

  dicomveil worker --queue redis://127.0.0.1:6379/0

  DICOMVEIL_QUEUE=amqp://user:pass@rabbit// dicomveil worker --queues large --config w.toml
"""


def worker(
    queue: str | None = typer.Option(
        None,
        "--queue",
        envvar="DICOMVEIL_QUEUE",
        show_envvar=True,
        help="Broker URL: redis://host:6379/0 or amqp://user:pass@host// (else [cluster]).",
    ),
    queues: str = typer.Option(
        "stat,urgent,routine,large",
        "--queues",
        help="Queues to serve, most urgent first (stat, urgent, routine, large).",
    ),
    concurrency: int = typer.Option(
        1, "--concurrency", min=1, max=256, help="Tasks at once (1: one, in this process)."
    ),
    pool: str | None = typer.Option(
        None,
        "--pool",
        help="solo (default for 1), threads (default for more: one runtime, waits overlap) "
        "or prefork (a process per task slot, each with its own runtime).",
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port."
    ),
    incoming: str | None = typer.Option(
        None, "--incoming", help="Incoming store URL (else [cluster] incoming_url)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        exists=True,
        dir_okay=False,
        help="Settings TOML ([server]: archive, index, vault; [cluster]: queue, incoming).",
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Log every task (value-free)."),
    large_concurrency: int = typer.Option(
        1,
        "--large-concurrency",
        min=0,
        max=256,
        help="When --queues has large and others: large instances in a worker process of "
        "their own, this many at once, so none takes a slot a STAT study needs (0: one pool "
        "for all queues).",
    ),
    upload_events: str | None = typer.Option(
        None,
        "--upload-events",
        envvar="DICOMVEIL_UPLOAD_EVENTS_QUEUE",
        show_envvar=True,
        help="SQS queue URL of the incoming bucket's s3:ObjectCreated notifications: hand "
        "direct uploads on as their objects arrive, without the complete call "
        "(docs/uploads.md).",
    ),
    with_parent: int | None = typer.Option(None, "--with-parent", hidden=True),
) -> None:
    """Run a queue worker: de-identify the instances cluster mode queued."""
    from dicomveil._optional import require
    from dicomveil.cluster.queues import parse_queues
    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.settings import CoreSettings

    require("celery", "dicomveil worker", "worker")
    try:
        served = parse_queues(queues)
    except ValueError as exc:
        fail(f"--queues: {exc}")
    if pool not in (None, "solo", "threads", "prefork"):
        fail("--pool: solo, threads or prefork")
    home = state_folder()
    cluster = ClusterSettings.load(config, queue_url=queue, incoming_url=incoming)
    if not cluster.queue_url:
        raise ConfigError("no queue: give --queue URL, DICOMVEIL_QUEUE or [cluster] queue_url")
    core = CoreSettings.load(home=home, config=config, deid_processes=1)
    from dicomveil.worker.app import run_worker
    from dicomveil.worker.large import split_large, start_large_worker, stop_large_worker
    from dicomveil.worker.tasks import WorkerState

    if with_parent is not None:  # the large queue's worker of a `dicomveil worker`
        from dicomveil.pipeline.orphans import die_with_parent

        die_with_parent(with_parent)
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    close_watcher = None
    if upload_events and with_parent is None:  # the parent reads them, not its large child
        from dicomveil.uploads.notifications import open_watcher

        close_watcher = open_watcher(
            upload_events, config=config, home=home, shared=core.database_url, cluster=cluster
        )[1]
    served, own_large = split_large(served, large_concurrency)
    large = None
    try:
        if own_large:
            large = start_large_worker(
                queue_url=cluster.queue_url, home=home, concurrency=large_concurrency,
                config=config, incoming=incoming, verbose=verbose,
            )  # fmt: skip
        run_worker(
            WorkerState(core, cluster),
            queues=served,
            concurrency=concurrency,
            metrics_port=metrics_port,
            loglevel="INFO" if verbose else "WARNING",
            pool=pool,
        )
    finally:
        if large is not None:
            stop_large_worker(large)
        if close_watcher is not None:
            close_watcher()


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to ``app``."""
    app.command("worker", help=HELP)(worker)
