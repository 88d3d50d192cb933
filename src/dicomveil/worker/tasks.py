"""The one task: ingest a queued original, exactly once in effect.

:func:`handle` is the task's body without Celery (tests call it directly); the Celery task
(:mod:`dicomveil.worker.app`) maps its :class:`Verdict` to acknowledge or retry.

Idempotent, because delivery is at least once (``acks_late``: a worker killed mid-task gives
its message back, and it runs again elsewhere):

- the pseudonymous SOP Instance UID, hence the archive key, is a keyed function of the
  original's: a second run finds its key taken and the same content indexed, and counts an
  idempotent success (:func:`~dicomveil.pipeline.request_plan.settle_existing`); a crash
  between archive and index is repaired by storing the same object again;
- the vault inserts its rows with ``ON CONFLICT DO NOTHING`` on their natural keys;
- the original is deleted from the incoming store only after the ingest call returned (the
  instance archived, recorded and indexed); a message whose object is gone was done
  already, and is acknowledged.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from dicomveil.cluster.payload import TaskPayload
from dicomveil.errors import DicomveilError, ObjectNotFound, StorageError
from dicomveil.pipeline.failures import FailureKind
from dicomveil.pipeline.group_commit import GroupCommit
from dicomveil.pipeline.ingest import Origin, shutdown_archivers
from dicomveil.pipeline.recording import shutdown_recorders
from dicomveil.worker.deadletter import dead_letter

if TYPE_CHECKING:
    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.runtime import Runtime
    from dicomveil.settings import CoreSettings
    from dicomveil.storage import BaseBlobStore

__all__ = ["Verdict", "WorkerState", "backoff", "handle"]

log = logging.getLogger("dicomveil.worker")

TRANSIENT: Final = frozenset(
    {
        FailureKind.STORAGE_UNAVAILABLE,
        FailureKind.STORAGE,
        FailureKind.IO,
        FailureKind.OUT_OF_MEMORY,
        FailureKind.WORKER_CRASH,
        FailureKind.INTERNAL,
    }
)
"""Failures that may pass: retried; the instance is dead-lettered after the last attempt."""


class Verdict(StrEnum):
    """What became of a message."""

    STORED = "stored"
    """Ingested (or found ingested already): the original is deleted."""
    GONE = "gone"
    """Its object is not in the incoming store: done by an earlier delivery."""
    RETRY = "retry"
    """A passing failure: run it again later."""
    DEAD = "dead"
    """Dead-lettered into the quarantine; the original is deleted."""
    REJECTED = "rejected"
    """Not a valid payload: dropped (nothing to quarantine)."""


def backoff(retries: int) -> float:
    """Seconds before attempt ``retries + 1``: 1, 2, 4, ... up to 5 minutes."""
    return float(min(300, 2**retries))


@dataclass
class WorkerState:
    """What a worker process opens once: its runtime and the incoming store."""

    core: CoreSettings
    cluster: ClusterSettings
    _runtime: Runtime | None = None
    _incoming: BaseBlobStore | None = None
    batcher: GroupCommit = field(default_factory=GroupCommit)
    """Where the tasks running at once meet to share ingest calls (group commit)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def runtime(self) -> Runtime:
        """The runtime (opened on first use, in the process that runs tasks)."""
        with self._lock:
            if self._runtime is None:
                from dicomveil.events import attach_events
                from dicomveil.forward.service import attach_forwarding
                from dicomveil.runtime import Runtime

                runtime = Runtime.open(self.core)
                try:  # routing of complete studies runs where instances are ingested
                    forwarding = attach_forwarding(runtime)
                    if forwarding is not None:
                        runtime.add_closer(forwarding.stop)
                    events = attach_events(runtime, forwarding)  # and so do their events
                    if events is not None:
                        runtime.add_closer(events.stop)
                except BaseException:
                    runtime.close()
                    raise
                self._runtime = runtime
            return self._runtime

    def incoming(self) -> BaseBlobStore:
        """The incoming object store."""
        with self._lock:
            if self._incoming is None:
                from dicomveil.storage import open_store

                self._incoming = open_store(self.cluster.incoming(self.core.home))
            return self._incoming

    def reset(self, broken: Runtime | None = None) -> None:
        """Close the runtime (after a failure that may have broken its connections).

        ``broken``: close it only if it is still the one in use (a task that saw a runtime
        fail must not close the new one another task opened since). ``None``: whatever is
        open.
        """
        with self._lock:
            if broken is not None and self._runtime is not broken:
                return
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            try:
                runtime.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken runtime
                log.warning("closing the runtime failed (%s)", type(exc).__name__)

    def close(self) -> None:
        """Close everything."""
        self.reset()
        with self._lock:
            incoming, self._incoming = self._incoming, None
        if incoming is not None:
            incoming.close()
        shutdown_recorders()  # the recording and archive threads its ingest calls started
        shutdown_archivers()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(incoming: BaseBlobStore, payload: TaskPayload, folder: Path) -> Path:
    name = payload.sha256 or hashlib.sha256(payload.key.encode()).hexdigest()
    local = folder / f"{name}.dcm"
    incoming.get_file(payload.key, local)  # streamed: a 2 GB instance is not held in memory
    return local


def handle(body: object, state: WorkerState, *, last_attempt: bool = False) -> Verdict:
    """Ingest the instance a message names (see the module's documentation).

    ``last_attempt``: a passing failure is dead-lettered instead of retried.
    """
    try:
        payload = TaskPayload.from_json(body)
    except ValueError as exc:
        log.error("refused a queue message: %s", exc)
        return Verdict.REJECTED
    started = time.monotonic()
    try:
        runtime = state.runtime()
        incoming = state.incoming()
    except (DicomveilError, OSError) as exc:  # nothing opened to reset: Runtime.open closed it
        log.error("the worker cannot open its runtime (%s)", type(exc).__name__)
        return Verdict.RETRY
    try:
        folder = runtime.workspace()
    except OSError as exc:  # its runtime was closed under it (another task reset it)
        log.warning("no workspace (%s): retrying", type(exc).__name__)
        return Verdict.RETRY
    log.info("task %s started", payload.key[-16:])
    try:
        return _ingest(payload, state, runtime, incoming, folder, last_attempt=last_attempt)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("task %s in %.0f ms", payload.key[-16:], (time.monotonic() - started) * 1000)


def _ingest(
    payload: TaskPayload,
    state: WorkerState,
    runtime: Runtime,
    incoming: BaseBlobStore,
    folder: Path,
    *,
    last_attempt: bool,
) -> Verdict:
    home = runtime.settings.home
    try:
        local = _fetch(incoming, payload, folder)
    except ObjectNotFound:
        return Verdict.GONE
    except (StorageError, OSError) as exc:
        if last_attempt:
            dead_letter(
                home,
                None,
                payload.key,
                "the incoming object could not be read",
                organisation=payload.organisation,
            )
            return Verdict.DEAD
        log.warning("the incoming store failed (%s): retrying", type(exc).__name__)
        return Verdict.RETRY
    if payload.sha256 and _sha256(local) != payload.sha256:
        return _dead(state, incoming, home, local, payload, "the object does not match its digest")
    origin = Origin(
        entry=payload.entry,
        actor=payload.actor,
        calling_ae=payload.calling_ae,
        organisation=payload.organisation,
    )
    try:
        result = state.batcher.ingest(runtime.ingest.ingest, local, origin)
    except Exception as exc:  # noqa: BLE001 - vault, audit, index: a database went away
        log.warning("ingest failed (%s): %s", type(exc).__name__, _retrying(last_attempt))
        state.reset(runtime)  # reconnect next time (a restarted database)
        if last_attempt:
            reason = f"the instance could not be recorded ({type(exc).__name__})"
            return _dead(state, incoming, home, local, payload, reason)
        return Verdict.RETRY
    if result.failure is None:
        incoming.delete(payload.key)
        return Verdict.STORED
    if result.failure.kind in TRANSIENT and not last_attempt:
        log.warning("ingest failed (%s): retrying", result.failure.kind.value)
        return Verdict.RETRY
    return _dead(state, incoming, home, local, payload, result.failure.reason)


def _retrying(last_attempt: bool) -> str:
    return "dead-lettering" if last_attempt else "retrying"


def _dead(
    state: WorkerState,
    incoming: BaseBlobStore,
    home: Path,
    local: Path,
    payload: TaskPayload,
    reason: str,
) -> Verdict:
    del state
    folder = dead_letter(home, local, payload.key, reason, organisation=payload.organisation)
    incoming.delete(payload.key)
    log.error("dead-lettered a queued instance into %s", folder.name)
    return Verdict.DEAD
