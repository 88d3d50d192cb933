"""Sending work to the queue workers: store the original durably, then enqueue it.

Two entry points:

- :func:`enqueue_objects`: enqueue objects already in the incoming store (direct uploads'
  ``complete`` call; anything that put originals there itself).
- :class:`Submitter`: what the gateway and the DICOM node do in cluster mode with a received
  file: write it to the incoming store under the SHA-256 of its content (a second copy of
  the same bytes is the same object), then enqueue it, and answer with the pseudonymous UIDs
  the instance will have (a keyed, deterministic function of the original's) — in the shape
  of :class:`~dicomveil.pipeline.ingest.IngestResult`, so an edge calls either the ingest
  service or this the same way.

A submitted instance is *accepted*: its original is in the incoming store (durable as that
store is: ``fsync`` for a folder, the provider's guarantee for a bucket) and its message in
the broker. It is not yet de-identified, archived or visible (``docs/cluster.md``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomveil.cluster.broker import TASK_NAME, make_app, public_queue_url
from dicomveil.cluster.payload import TaskPayload, incoming_key
from dicomveil.cluster.queues import Priority, queue_for
from dicomveil.errors import DicomveilError, Retryable, StorageError
from dicomveil.pipeline.failures import Failure, FailureKind
from dicomveil.pipeline.ingest import IngestResult, Origin
from dicomveil.pipeline.ingest_work import head_uids, pseudonymous_uid
from dicomveil.pipeline.statuses import status_of
from dicomveil.pipeline.tenancy import Engine, TenantEngines, engine_for
from dicomveil.storage import FileUpload

if TYPE_CHECKING:
    from celery import Celery

    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import CompiledPolicy
    from dicomveil.runtime import Runtime
    from dicomveil.storage import BaseBlobStore

__all__ = [
    "IncomingObject",
    "Queue",
    "QueueUnavailable",
    "Submitter",
    "attach_cluster",
    "enqueue_objects",
]

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/dicom"


class QueueUnavailable(DicomveilError, Retryable):
    """The broker cannot be reached (the message names the URL without its password)."""


@dataclass(frozen=True, slots=True)
class IncomingObject:
    """An object in the incoming store: its key, size (``0``: unknown), SHA-256 (``""``)."""

    key: str
    size: int = 0
    sha256: str = ""


class Queue:
    """The sending side of the broker (thread-safe: one per process is enough)."""

    def __init__(self, settings: ClusterSettings) -> None:
        if not settings.queue_url:
            raise ValueError("no queue URL")
        self.settings = settings
        self.url = public_queue_url(settings.queue_url)
        self._app: Celery = make_app(settings, "dicomveil-sender")

    def send(self, payload: TaskPayload) -> str:
        """Enqueue one payload on its queue; return the queue's name.

        Raises
        ------
        QueueUnavailable
            The broker did not take the message.
        """
        name = queue_for(payload.priority, payload.size, large_bytes=self.settings.large_bytes)
        with _broker_errors(self.url):
            self._app.send_task(
                TASK_NAME, args=[payload.to_json()], queue=name, retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
            )  # fmt: skip
        return name

    def ping(self) -> None:
        """Connect to the broker once.

        Raises
        ------
        QueueUnavailable
            It cannot be reached.
        """
        with _broker_errors(self.url), self._app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)

    def close(self) -> None:
        """Release the broker connections."""
        self._app.close()


@contextmanager
def _broker_errors(url: str) -> Iterator[None]:
    try:
        yield
    except DicomveilError:
        raise
    except Exception as exc:  # kombu, redis-py and amqp each raise their own
        raise QueueUnavailable(
            f"the queue at {url} cannot be reached ({type(exc).__name__})"
        ) from None


def enqueue_objects(
    queue: Queue,
    objects: Sequence[IncomingObject],
    origin: Origin,
    priority: Priority = Priority.ROUTINE,
) -> list[str]:
    """Enqueue objects of the incoming store for the workers; return each one's queue.

    The objects must be in the store already (workers read them from there and delete
    them once de-identified and recorded).

    Raises
    ------
    ValueError
        An invalid key or digest (nothing enqueued for it and the ones after it).
    QueueUnavailable
        The broker did not take a message.
    """
    now = time.time()
    return [
        queue.send(
            TaskPayload(
                key=item.key,
                sha256=item.sha256,
                size=item.size,
                priority=priority,
                entry=origin.entry,
                actor=origin.actor,
                calling_ae=origin.calling_ae,
                organisation=origin.organisation,
                enqueued_at=now,
            )
        )
        for item in objects
    ]


def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Submitter:
    """Cluster mode's ingest call: store, enqueue, answer (see the module's documentation).

    ``ingest(files, origin)`` has the signature of
    :meth:`~dicomveil.pipeline.ingest.IngestService.ingest`.
    """

    def __init__(
        self,
        queue: Queue,
        incoming: BaseBlobStore,
        *,
        keys: PseudonymKeys,
        compiled: CompiledPolicy,
        priority: Priority = Priority.ROUTINE,
        tenants: TenantEngines | None = None,
    ) -> None:
        self.queue, self.incoming = queue, incoming
        self.keys, self.compiled, self.priority = keys, compiled, priority
        self.tenants: TenantEngines = tenants or {}

    def close(self) -> None:
        """Close the broker connections and the incoming store."""
        self.queue.close()
        self.incoming.close()

    def ingest(
        self, files: Sequence[Path], origin: Origin, *, study: str | None = None, **_: Any
    ) -> list[IngestResult]:
        """Accept each file (stored, then enqueued); one result each, in order.

        A file the incoming store or the broker does not take fails alone (status of an
        unreachable archive, value-free reason); so does one of another pseudonymous study
        than ``study`` (when given). The caller may delete ``files`` once this returns.
        """
        keys, compiled = engine_for(self.tenants, origin.organisation, self.keys, self.compiled)
        plans = [
            self._plan(Path(path), study, (keys, compiled), origin.organisation) for path in files
        ]
        self._store([plan for plan in plans if plan.failure is None])
        for plan in plans:
            if plan.failure is None and plan.item is not None:
                try:
                    enqueue_objects(self.queue, [plan.item], origin, self.priority)
                except DicomveilError as exc:
                    plan.fail(exc)
        return [plan.result() for plan in plans]

    def _plan(
        self, path: Path, wanted: str | None, engine: Engine, organisation: str | None
    ) -> _Accept:
        keys, compiled = engine
        uids = head_uids(path)
        plan = _Accept(
            path,
            uids.sop_class,
            pseudonymous_uid(uids.sop_instance, compiled, keys),
            pseudonymous_uid(uids.study, compiled, keys),
        )
        if wanted is not None and plan.study != wanted:
            plan.failure = Failure(FailureKind.STUDY_MISMATCH, "the instance is of another study")
            return plan
        try:
            digest, size = _sha256(path)
        except OSError as exc:
            plan.fail(exc)
            return plan
        plan.item = IncomingObject(incoming_key(digest, organisation), size, digest)
        return plan

    def _store(self, plans: list[_Accept]) -> None:
        """Write the originals the incoming store lacks, together (one ``fsync`` per folder
        for a local store)."""
        missing: dict[str, list[_Accept]] = {}
        for plan in plans:
            assert plan.item is not None
            try:
                if self.incoming.head(plan.item.key) is None:
                    missing.setdefault(plan.item.key, []).append(plan)
            except DicomveilError as exc:
                plan.fail(exc)
        if not missing:
            return
        uploads = [
            FileUpload(key, group[0].path, CONTENT_TYPE, sha256=group[0].item.sha256)
            for key, group in missing.items()
            if group[0].item is not None
        ]
        try:
            stored = self.incoming.put_files(uploads)
        except (OSError, DicomveilError) as exc:
            stored = [StorageError(type(exc).__name__)] * len(uploads)
        for group, outcome in zip(missing.values(), stored, strict=True):
            if isinstance(outcome, Exception):
                for plan in group:
                    plan.fail(outcome)


@dataclass(slots=True)
class _Accept:
    """One file on its way into the queue."""

    path: Path
    sop_class: str
    sop: str
    study: str
    item: IncomingObject | None = None
    failure: Failure | None = None

    def fail(self, exc: BaseException) -> None:
        log.error("an instance was not accepted for the queue (%s)", type(exc).__name__)
        self.failure = Failure(FailureKind.STORAGE_UNAVAILABLE, "the instance could not be queued")

    def result(self) -> IngestResult:
        return _result(self.path, self.failure, self.sop_class, self.sop, self.study)


def attach_cluster(runtime: Runtime) -> Submitter | None:
    """Put ``runtime``'s edge in cluster mode when a queue is configured (``--queue``,
    ``DICOMVEIL_QUEUE``, ``[cluster] queue_url`` of its ``--config``): set
    ``runtime.submitter`` (closed with the runtime) and return it; else ``None``.

    Called by the edges that receive instances (the gateway, the DICOM node), never by a
    queue worker: its runtime ingests what the others queue.

    Raises
    ------
    ConfigError
        Bad ``[cluster]`` settings, or Celery not installed.
    QueueUnavailable
        The broker cannot be reached.
    """
    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.storage import open_store

    settings = ClusterSettings.load(runtime.settings.config_file)
    if not settings.queue_url:
        return None
    queue = Queue(settings)
    try:
        queue.ping()
        incoming = open_store(settings.incoming(runtime.settings.home))
    except BaseException:
        queue.close()
        raise
    submitter = Submitter(
        queue,
        incoming,
        keys=runtime.keys,
        compiled=runtime.compiled,
        tenants=runtime.ingest.tenants,
    )
    runtime.submitter = submitter
    runtime.add_closer(submitter.close)
    return submitter


def _result(
    path: Path, failure: Failure | None, sop_class: str, sop: str, study: str
) -> IngestResult:
    return IngestResult(
        source=path,
        status=status_of(failure),
        failure=failure,
        sop_class_uid=sop_class or None,
        sop_instance_uid=sop or None,
        study_uid=study or None,
        series_uid=None,
    )
