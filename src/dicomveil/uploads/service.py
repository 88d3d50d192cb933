"""Direct uploads: hand out pre-signed PUT URLs, then ingest what the client uploaded.

1. :meth:`UploadService.create` picks an opaque upload id and ``count`` object names
   (``00001.dcm``...: generated here, a client's name is never a path) under
   ``incoming/<upload_id>/`` of the incoming store, and signs one ``PUT`` URL for each.
2. The client uploads straight to the object store (the bytes never pass the gateway).
3. :meth:`UploadService.complete` checks which objects exist (a missing one is recorded
   ``missing``, one above ``max_object_bytes`` is deleted and recorded ``too_large``) and
   hands the others on, once: a second call changes nothing.

   - cluster mode (a queue URL): each object is enqueued for the queue workers
     (:func:`dicomveil.cluster.submit.enqueue_objects`), state ``queued``; the worker
     deletes the original once de-identified and recorded;
   - single-process mode: a background thread (one per gateway, so uploads queue behind
     each other instead of taking every core) reads each object, ingests it through the
     ingest service (the path STOW-RS takes) and deletes the original once it is
     de-identified and recorded; state ``stored``, or ``quarantined`` (an instance that
     could not be made safe: its original moves from the incoming store to
     ``<home>/quarantine/upload-<upload_id>/``, named by its SHA-256, with ``reasons.json``,
     as ``dicomveil deid`` keeps failures) with the PS3.4 status and the failure kind. An
     upload left half-done by a restart is resumed when the service opens again.

An upload never completed expires: ``stale_after_seconds`` after its URLs did, a sweep (at
start, then every ``sweep_seconds``) deletes its objects and marks it ``expired``
(:meth:`UploadService.expire_stale`).

Only the token (actor) that created an upload may complete it or read its progress.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from dicomveil.errors import DicomveilError
from dicomveil.pipeline.ingest import IngestResult, Origin
from dicomveil.uploads import registry as reg
from dicomveil.uploads.presign import SignedPut, presign_put
from dicomveil.uploads.registry import UploadRegistry, UploadRow

if TYPE_CHECKING:
    from dicomveil.cluster.submit import Queue
    from dicomveil.storage import BaseBlobStore
    from dicomveil.uploads.settings import UploadSettings

__all__ = [
    "ENTRY",
    "UnknownUpload",
    "UploadConflict",
    "UploadService",
    "admit_object",
    "enqueue_object",
    "object_key",
]

log = logging.getLogger(__name__)
ENTRY: Final = "upload"
PREFIX: Final = "incoming"
_BATCH: Final = 16
PRIORITIES: Final = ("STAT", "URGENT", "ROUTINE")


class UnknownUpload(DicomveilError):
    """No such upload for this token (404: another token's upload is not revealed)."""


class UploadConflict(DicomveilError):
    """The upload is not in a state that allows this (409)."""


class Ingesting(Protocol):
    """What the service calls in single-process mode (``IngestService.ingest``)."""

    def ingest(self, files: Sequence[Path], origin: Origin) -> list[IngestResult]: ...


def object_key(upload_id: str, name: str) -> str:
    """The incoming store key of one object of an upload."""
    return f"{PREFIX}/{upload_id}/{name}"


def admit_object(
    incoming: BaseBlobStore, registry: UploadRegistry, max_bytes: int, upload_id: str, name: str
) -> int | str:
    """The size of object ``name`` of ``upload_id`` when it can be handed on; else why not:
    :data:`~.registry.MISSING` (not in the incoming store; nothing recorded) or
    :data:`~.registry.TOO_LARGE` (above ``max_bytes``: deleted and recorded)."""
    key = object_key(upload_id, name)
    info = incoming.head(key)
    if info is None:
        return reg.MISSING
    if info.size > max_bytes:
        incoming.delete(key)
        registry.set_object(upload_id, name, reg.TOO_LARGE, size=info.size)
        return reg.TOO_LARGE
    return info.size


def enqueue_object(
    queue: Queue,
    registry: UploadRegistry,
    upload_id: str,
    name: str,
    size: int,
    origin: Origin,
    priority: str,
) -> None:
    """Enqueue an admitted object for the queue workers, then record it ``queued`` (a
    failure in between enqueues it again later: the workers are idempotent)."""
    from dicomveil.cluster.queues import Priority
    from dicomveil.cluster.submit import IncomingObject, enqueue_objects

    item = IncomingObject(object_key(upload_id, name), size)
    enqueue_objects(queue, [item], origin, Priority[priority])
    registry.set_object(upload_id, name, reg.QUEUED, size=size)


@dataclass(frozen=True, slots=True)
class NewUpload:
    """What :meth:`UploadService.create` returns: the id and one signed PUT per name."""

    upload_id: str
    urls: list[tuple[str, SignedPut]]
    expires_in: int


class UploadService:
    """Create, complete and follow direct uploads (thread-safe).

    Parameters
    ----------
    settings
        Limits and URL expiry.
    incoming
        The incoming store (a bucket store: local stores cannot sign URLs).
    ingest
        The ingest service (single-process mode).
    workspace
        Returns a new private folder for downloaded originals (the caller removes it).
    queue
        The broker (cluster mode), or ``None``.
    quarantine
        The quarantine root (``<home>/quarantine``) for originals that fail.
    on_quarantined
        Called with ``(sha256, failure kind)`` of each original quarantined (events).
    owns_incoming
        Close ``incoming`` with the service (not when it is the cluster submitter's).
    """

    def __init__(
        self,
        settings: UploadSettings,
        incoming: BaseBlobStore,
        ingest: Ingesting,
        workspace: Callable[[], Path],
        queue: Queue | None = None,
        *,
        quarantine: Path | None = None,
        on_quarantined: Callable[[Sequence[tuple[str, str]]], None] | None = None,
        owns_incoming: bool = True,
    ) -> None:
        self.settings, self.incoming, self.queue = settings, incoming, queue
        self._quarantine, self._on_quarantined = quarantine, on_quarantined
        self._owns_incoming = owns_incoming
        self._ingest, self._workspace = ingest, workspace
        self.registry = UploadRegistry(settings.database_url)
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicomveil-upload")
        self._lock = threading.Lock()
        for upload_id in self.registry.unfinished():
            self._jobs.submit(self._run_logged, upload_id)
        self._stop = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep, name="dicomveil-upload-sweep", daemon=True
        )
        self._sweeper.start()

    # -- the three calls -------------------------------------------------------------

    def create(
        self,
        actor: str,
        count: int,
        priority: str = "ROUTINE",
        organisation: str | None = None,
    ) -> NewUpload:
        """Open an upload of ``count`` objects and sign their PUT URLs; what they hold is
        de-identified for ``organisation`` (the token's tenant, if any) and filed under it.

        Raises
        ------
        ValueError
            ``count`` outside 1..``max_objects`` or an unknown priority.
        PresignUnsupported, ConfigError
            The incoming store cannot sign URLs.
        """
        if not 1 <= count <= self.settings.max_objects:
            raise ValueError(f"count must be 1 to {self.settings.max_objects}")
        if priority not in PRIORITIES:
            raise ValueError("priority must be STAT, URGENT or ROUTINE")
        upload_id = secrets.token_hex(16)
        names = [f"{i:05d}.dcm" for i in range(1, count + 1)]
        expires = self.settings.expires_seconds
        urls = [(n, presign_put(self.incoming, object_key(upload_id, n), expires)) for n in names]
        self.registry.create(upload_id, actor, priority, names, expires, organisation)
        return NewUpload(upload_id, urls, expires)

    def status(self, upload_id: str, actor: str) -> UploadRow:
        """The upload's progress (raises :class:`UnknownUpload`)."""
        row = self.registry.get(upload_id)
        if row is None or row.actor != actor:
            raise UnknownUpload("no such upload")
        return row

    def complete(self, upload_id: str, actor: str) -> Future[None] | None:
        """Check the uploaded objects and hand them on (see the module's documentation).

        Returns the background job when this call started one (``None``: the upload was
        completed before; nothing is done twice).

        Raises
        ------
        UnknownUpload
            No such upload for ``actor``.
        UploadConflict
            No object was uploaded (the upload stays open), or its URLs expired.
        """
        row = self.status(upload_id, actor)
        if row.state in (reg.EXPIRING, reg.EXPIRED):
            raise UploadConflict("the upload expired: its objects were deleted")
        if row.state != "open":
            return None
        folder = object_key(upload_id, "")
        present = {info.key.removeprefix(folder) for info in self.incoming.list(folder)}
        if not present & {o.name for o in row.objects}:  # one listing, not a HEAD each
            raise UploadConflict("no object of this upload was uploaded")
        if not self.registry.start_completing(upload_id):
            return None
        return self._jobs.submit(self._run_logged, upload_id)

    def expire_stale(self, now: float | None = None) -> int:
        """Expire the uploads never completed whose URLs expired more than
        ``stale_after_seconds`` ago: delete their objects from the incoming store, mark them
        ``expired`` (``complete`` then answers 409). Return how many were expired.

        Marked ``expiring`` first (``complete`` takes only open uploads, so none is handed
        on while its objects go); one whose objects could not all be deleted stays
        ``expiring`` and is taken again at the next sweep.
        """
        cutoff = (time.time() if now is None else now) - self.settings.stale_after_seconds
        count = 0
        for upload_id in self.registry.stale(cutoff):
            if not self.registry.start_expiring(upload_id):
                continue  # completed meanwhile
            row = self.registry.get(upload_id)
            handed_on = {  # queued by a bucket notification: a worker still needs it
                object_key(upload_id, item.name)
                for item in (row.objects if row is not None else ())
                if item.state == reg.QUEUED
            }
            try:
                for info in list(self.incoming.list(object_key(upload_id, ""))):
                    if info.key not in handed_on:
                        self.incoming.delete(info.key)
            except DicomveilError as exc:
                log.warning("upload %s: objects not deleted (%s)", upload_id, type(exc).__name__)
                continue
            self.registry.expired(upload_id)
            log.info("upload %s expired: never completed, its objects deleted", upload_id)
            count += 1
        return count

    def _sweep(self) -> None:
        """At start, then every ``sweep_seconds``: :meth:`expire_stale`."""
        while True:
            try:
                self.expire_stale()
            except Exception as exc:  # noqa: BLE001 - a database hiccup: next sweep
                log.warning("the upload sweep failed (%s)", type(exc).__name__)
            if self._stop.wait(self.settings.sweep_seconds):
                return

    def close(self) -> None:
        """Wait for the running job, then release the database (and the store, if ours)."""
        self._stop.set()
        self._sweeper.join(timeout=30)
        self._jobs.shutdown(wait=True, cancel_futures=True)
        self.registry.close()
        if self._owns_incoming:
            self.incoming.close()

    # -- the background work ---------------------------------------------------------

    def _run_logged(self, upload_id: str) -> None:
        try:
            self._run(upload_id)
        except Exception as exc:  # noqa: BLE001 - resumed at the next start
            log.error("upload %s: completion stopped (%s)", upload_id, type(exc).__name__)

    def _run(self, upload_id: str) -> None:
        row = self.registry.get(upload_id)
        if row is None:
            return
        origin = Origin(entry=ENTRY, actor=row.actor, organisation=row.organisation)
        ready: list[tuple[str, int]] = []
        for item in row.objects:
            if item.state != reg.PENDING:
                continue  # already handled before a restart
            size = self._checked(upload_id, item.name)
            if size is not None:
                ready.append((item.name, size))
        if self.queue is not None:
            self._enqueue(upload_id, ready, origin, row.priority)
        else:
            for start in range(0, len(ready), _BATCH):
                self._ingest_some(upload_id, ready[start : start + _BATCH], origin)
        self.registry.finish(upload_id)
        log.info("upload %s complete (%d objects handed on)", upload_id, len(ready))

    def _checked(self, upload_id: str, name: str) -> int | None:
        """The object's size when it can be ingested; else record why not."""
        admitted = admit_object(
            self.incoming, self.registry, self.settings.max_object_bytes, upload_id, name
        )
        if admitted == reg.MISSING:
            self.registry.set_object(upload_id, name, reg.MISSING)
        return admitted if isinstance(admitted, int) else None

    def _enqueue(
        self, upload_id: str, ready: list[tuple[str, int]], origin: Origin, priority: str
    ) -> None:
        assert self.queue is not None
        for name, size in ready:
            enqueue_object(self.queue, self.registry, upload_id, name, size, origin, priority)

    def _ingest_some(self, upload_id: str, items: list[tuple[str, int]], origin: Origin) -> None:
        folder = self._workspace()
        try:
            files = []
            for name, _ in items:  # our names: nothing of the client's reaches a path
                path = folder / name
                self.incoming.get_file(object_key(upload_id, name), path)  # streamed
                files.append(path)
            results = self._ingest.ingest(files, origin)
            failed = [(p, r) for p, r in zip(files, results, strict=True) if not r.ok]
            kept = self._quarantined(upload_id, failed, origin.organisation)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        for (name, size), result in zip(items, results, strict=True):
            failure = result.failure.kind.value if result.failure is not None else None
            state = reg.STORED if result.ok else reg.QUARANTINED if kept else reg.FAILED
            if result.ok or kept:  # recorded (archive or quarantine): the original goes
                self.incoming.delete(object_key(upload_id, name))
            self.registry.set_object(
                upload_id, name, state, size=size, status=result.status, failure=failure
            )

    def _quarantined(
        self,
        upload_id: str,
        failed: list[tuple[Path, IngestResult]],
        organisation: str | None = None,
    ) -> bool:
        """Keep the failed originals in the quarantine, recorded as ``organisation``'s (the
        upload's tenant); ``False`` when there is none."""
        if not failed or self._quarantine is None:
            return False
        from dicomveil.pipeline.outcome import FileOutcome
        from dicomveil.pipeline.quarantine import input_sha256, quarantine_run

        outcomes = [
            FileOutcome(
                source=path,
                status="failed",
                reason=result.failure.reason if result.failure else "failed",
            )
            for path, result in failed
        ]
        folder = self._quarantine / f"upload-{upload_id}"
        quarantine_run(outcomes, folder, root=self._quarantine, organisation=organisation)
        if self._on_quarantined is not None:
            self._on_quarantined(
                [
                    (input_sha256(path), r.failure.kind.value if r.failure else "failed")
                    for path, r in failed
                ]
            )
        return True
