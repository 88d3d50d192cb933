"""The one ingest service: de-identify → store → way back → index → events, for every entry.

The HTTP gateway (STOW-RS, ``/api/v1/deidentify``), the DICOM node (C-STORE) and, next, queue
workers call :meth:`IngestService.ingest`; the work runs on the runtime's
:class:`~dicomveil.pipeline.executor.Executor` (worker processes started once, not per call),
and the writes to the databases run in the calling thread, in this order:

1. de-identify each file (and store it in the archive) in the workers;
2. settle instances the archive holds already (idempotent, conflict, or replace);
3. record the way back in the vault and every outcome in the audit log (one run per call);
4. index what was stored: only now is an instance visible (QIDO-RS, C-FIND);
5. tell the listeners (:mod:`dicomveil.pipeline.events`).

Each file's fate is an :class:`IngestResult` with a PS3.4 status (one table,
:mod:`dicomveil.pipeline.statuses`) and a typed, value-free failure.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomveil.audit.entry import AuditEvent
from dicomveil.pipeline.events import IngestListener, InstanceStored
from dicomveil.pipeline.failures import Failure, failure_of
from dicomveil.pipeline.ingest_work import CONFLICT_KIND, Ingested, put_results
from dicomveil.pipeline.recording import RunRecorder
from dicomveil.pipeline.request_plan import (
    plan_uploads,
    refuse_foreign_studies,
    settle_existing,
)
from dicomveil.pipeline.statuses import is_ok, status_of
from dicomveil.pipeline.tenancy import TenantEngines, engine_for
from dicomveil.threads import ProcessThreads

if TYPE_CHECKING:
    from dicomveil.audit import AuditLog
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import CompiledPolicy
    from dicomveil.index import StudyIndex
    from dicomveil.pipeline.files import FileOutcome
    from dicomveil.pipeline.ingest_pool import IngestPool
    from dicomveil.profile.policy import Policy
    from dicomveil.storage import BaseBlobStore
    from dicomveil.vault import Vault

__all__ = ["IngestResult", "IngestService", "Origin", "shutdown_archivers"]

log = logging.getLogger(__name__)

_archivers = ProcessThreads("dicomveil-archive", 4)
"""Where an instance's archive write and flush run while its call is recorded (one executor
per process: safe across ``fork``)."""


def shutdown_archivers() -> None:
    """Stop this process's archive threads once their work is done (a later call starts new
    ones)."""
    _archivers.shutdown()


@dataclass(frozen=True, slots=True)
class Origin:
    """Where instances come from, for the audit log and the listeners.

    Attributes
    ----------
    entry:
        The entry point: ``"stow"``, ``"api"``, ``"dimse"``, ``"deid"``, ``"batch"``,
        ``"worker"``.
    actor:
        The audit actor: ``"token:<id or name>"``, ``"ae:<CALLING_AE>"``, ``"cli:<user>"``.
    calling_ae:
        The calling AE title (DIMSE).
    peer:
        The client's address.
    organisation:
        The organisation (tenant) code of the token or calling AE; ``None``: none (the
        single-tenant default). It is recorded on the index rows, in the audit log, and
        chooses the organisation's pseudonym prefix and key.
    """

    entry: str
    actor: str
    calling_ae: str | None = None
    peer: str | None = None
    organisation: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """One file's fate (pseudonymous values only).

    Attributes
    ----------
    source:
        The file given to :meth:`IngestService.ingest`.
    status:
        Its PS3.4 status (:mod:`dicomveil.pipeline.statuses`; ``0x0000`` success).
    failure:
        Why it failed (``None`` on success).
    sop_class_uid, sop_instance_uid, study_uid, series_uid:
        As archived (pseudonymous); for a failure, what could be read (may be ``None``).
    """

    source: Path
    status: int
    failure: Failure | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_uid: str | None
    series_uid: str | None

    @property
    def ok(self) -> bool:
        """Whether the status is success or a warning."""
        return is_ok(self.status)


class IngestService:
    """De-identify, archive, record and index received instances (thread-safe).

    Built by :meth:`dicomveil.runtime.Runtime.open`; the attributes are the runtime's.
    """

    def __init__(
        self,
        *,
        store: BaseBlobStore,
        index: StudyIndex,
        keys: PseudonymKeys,
        policy: Policy,
        compiled: CompiledPolicy,
        vault: Vault | None,
        audit: AuditLog,
        pool: IngestPool,
        staging: Path,
        replace_instances: bool = False,
        tenants: TenantEngines | None = None,
    ) -> None:
        self.store, self.index, self.keys = store, index, keys
        self.policy, self.compiled = policy, compiled
        self.vault, self.audit, self.pool = vault, audit, pool
        self.staging, self.replace_instances = staging, replace_instances
        self.tenants: TenantEngines = tenants or {}
        self._listeners: list[IngestListener] = []
        self._lock = threading.Lock()
        self._workspaces: list[Path] = []

    def engine_for(self, organisation: str | None) -> tuple[PseudonymKeys, CompiledPolicy]:
        """The keys and compiled policy instances sent for ``organisation`` take."""
        return engine_for(self.tenants, organisation, self.keys, self.compiled)

    def subscribe(self, listener: IngestListener) -> None:
        """Call ``listener`` after each :meth:`ingest` that stored instances."""
        with self._lock:
            self._listeners.append(listener)

    def ingest(
        self,
        files: Sequence[Path],
        origin: Origin,
        *,
        archive: bool = True,
        study: str | None = None,
    ) -> list[IngestResult]:
        """Ingest ``files`` (one instance each); one result each, in order.

        One bad file fails alone. The caller may delete ``files`` once this returns.

        Parameters
        ----------
        archive:
            Store, index and announce the instances (``False``: de-identify and record
            only).
        study:
            Take only instances of this pseudonymous study; the others fail
            (``STUDY_MISMATCH``, status 0xA900).

        Raises
        ------
        VaultError, AuditError, StudyIndexError
            The way back, the audit trail or the index could not be written: nothing of
            the call is indexed then.
        """
        workspace = self._take_workspace()
        try:
            done = self.process(files, workspace, origin, archive=archive, study=study)
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)  # whatever it holds goes with it
            raise
        for item in done:  # the folders stay for the next call: only files go
            if item.staged is not None:
                item.staged.unlink(missing_ok=True)
        with self._lock:
            self._workspaces.append(workspace)
        return [_result(path, item) for path, item in zip(files, done, strict=True)]

    def _take_workspace(self) -> Path:
        """A folder for de-identified files on their way to the archive, for one call.

        Folders are used again by later calls (as many as calls ran at once): a call makes
        and removes no folders; the archive takes the files, their folders stay.
        """
        with self._lock:
            while self._workspaces:
                workspace = self._workspaces.pop()
                if workspace.is_dir():
                    return workspace
        return Path(tempfile.mkdtemp(dir=self.staging))

    def process(
        self,
        files: Sequence[Path],
        workspace: Path,
        origin: Origin,
        *,
        archive: bool,
        study: str | None = None,
        salt: str = "",
    ) -> list[Ingested]:
        """:meth:`ingest`, with the details an HTTP route needs (the de-identified file
        staged under ``workspace/out``, the index record); the caller removes
        ``workspace``.

        ``salt`` (never with ``archive``): de-identify with the keys salted with it
        (:meth:`~dicomveil.engine.keys.PseudonymKeys.salted`), so the results cannot be
        linked to the archive's pseudonyms (``docs/security.md``, separation of duties).
        """
        if salt and archive:
            raise ValueError("archived instances take the server's pseudonyms: no salt")
        uploads = list(files)
        plan = plan_uploads(
            self,
            uploads,
            str(workspace / "out"),
            archive=archive,
            study=study,
            organisation=origin.organisation,
        )
        if salt:
            plan.work[:] = [replace(upload, salt=salt) for upload in plan.work]
        keys, _ = self.engine_for(origin.organisation)
        run_id = uuid.uuid4().hex
        recorder = RunRecorder(
            self.vault,
            self.audit,
            run_id=run_id,
            actor=origin.actor,
            policy=self.policy,
            pseudonym_key_id=keys.key_id,
            files=len(uploads),
            start_now=False,  # one call, one write to the audit log
            organisation=origin.organisation,
            origin=_audited(origin),
        )
        with recorder:
            if archive:
                done, to_put = self.pool.run_unstored(plan.work)
            else:
                done, to_put = self.pool.run(plan.work), []
            results = plan.results(done, self)
            if archive:
                refuse_foreign_studies(self, results, origin.organisation)
                settle_existing(self, results)
            outcomes = [result.outcome for result in results]
            # The archive's write and flush of an instance worked on in this thread run while
            # the call is recorded (vault + audit): the call returns once all are durable.
            storing = _archivers.get().submit(put_results, self.store, to_put) if to_put else None
            try:
                for outcome in outcomes:
                    recorder.add(outcome)
                counts = Counter(outcome.status for outcome in outcomes)
                recorder.finish(dict(counts), failed=bool(counts["failed"]))
            finally:
                if storing is not None:
                    wait([storing])
            if storing is not None:
                storing.result()  # a fault of the archive fails its instances, not this
                _record_lost(recorder, results, outcomes)
            self._audit_conflicts(results, actor=origin.actor, run_id=run_id)
        if archive:
            stored = [r for r in results if r.record is not None and not r.unchanged]
            records = [r.record for r in stored if r.record is not None]
            if origin.organisation is not None:
                records = [replace(r, organisation=origin.organisation) for r in records]
            self.index.add(records)
            self._announce(stored, origin)
        return results

    def _announce(self, stored: list[Ingested], origin: Origin) -> None:
        with self._lock:
            listeners = list(self._listeners)
        if not listeners or not stored:
            return
        events = [_event(result, origin) for result in stored]
        for listener in listeners:
            try:
                listener(events)
            except Exception as exc:  # noqa: BLE001 - a listener must not undo an ingest
                log.error("an ingest listener failed (%s)", type(exc).__name__)

    def _audit_conflicts(self, results: list[Ingested], *, actor: str, run_id: str) -> None:
        """Record every archived instance replaced, and every one refused as a conflict."""
        events = [
            AuditEvent(
                "instance_conflict",
                actor,
                "success" if result.replaced else "failure",
                {
                    "run_id": run_id,
                    "action": "replaced" if result.replaced else "refused",
                    "pseudo_sop_instance_uid": result.sop_instance_uid or None,
                    "output_sha256": result.outcome.sha256 or None,
                },
            )
            for result in results
            if result.replaced or result.outcome.error_kind == CONFLICT_KIND
        ]
        if events:
            self.audit.append_many(events)


def _record_lost(
    recorder: RunRecorder, results: Sequence[Ingested], recorded: Sequence[FileOutcome]
) -> None:
    """Audit the instances the archive failed to store after they were recorded as
    de-identified (their failure follows their entry in the run); they are not indexed and
    their callers are answered with the failure."""
    pairs = zip(results, recorded, strict=True)
    lost = [result.outcome for result, outcome in pairs if result.outcome is not outcome]
    if lost:
        for outcome in lost:
            recorder.add(outcome)
        recorder.flush()


def _audited(origin: Origin) -> dict[str, str]:
    """What the run's start entry says of ``origin`` (no PHI: entry point, AE title, address)."""
    named = {"entry": origin.entry, "calling_ae": origin.calling_ae, "peer": origin.peer}
    return {key: value for key, value in named.items() if value}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _attributes(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: text for k, v in values.items() if (text := _text(v)) is not None}


def _event(result: Ingested, origin: Origin) -> InstanceStored:
    record = result.record
    assert record is not None
    attributes = _attributes(record.values)
    return InstanceStored(
        study_uid=attributes.get("StudyInstanceUID", ""),
        series_uid=attributes.get("SeriesInstanceUID", ""),
        sop_instance_uid=attributes.get("SOPInstanceUID", ""),
        sop_class_uid=attributes.get("SOPClassUID", result.sop_class_uid),
        modality=attributes.get("Modality") or None,
        storage_key=record.storage_key,
        origin=origin,
        attributes=attributes,
    )


def _result(source: Path, item: Ingested) -> IngestResult:
    failure = failure_of(item.outcome)
    study = series = None
    identity = item.outcome.identity
    if identity is not None:
        study = identity.pseudonymous.study_instance_uid or None
        series = identity.pseudonymous.series_instance_uid or None
    if item.record is not None:
        study = item.record.text("StudyInstanceUID") or study
        series = item.record.text("SeriesInstanceUID") or series
    return IngestResult(
        source=source,
        status=status_of(failure),
        failure=failure,
        sop_class_uid=item.sop_class_uid or None,
        sop_instance_uid=item.sop_instance_uid or None,
        study_uid=study,
        series_uid=series,
    )
