"""De-identifying uploaded instances: the one path every HTTP entry point takes.

Each upload goes through :func:`dicomveil.pipeline.files.deidentify_file` (the same function
as ``deid`` and batches), then, when archiving, into the blob store and the index. The way
back goes to the vault and every outcome to the audit log through
:class:`~dicomveil.pipeline.recording.RunRecorder`, one run per request. Order: de-identify,
store, record (vault + audit), index; an instance becomes visible over DICOMweb only when its
way back is recorded.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dicomveil.engine.uids import remap_uid
from dicomveil.errors import DicomveilError, StorageError
from dicomveil.index import InstanceRecord, record_from_file
from dicomveil.pipeline.files import FileOutcome, deidentify_file
from dicomveil.pipeline.recording import RunRecorder
from dicomveil.profile.options import Option
from dicomveil.storage import FileUpload
from dicomveil.web.services import Services

__all__ = ["STUDY_MISMATCH_KIND", "Ingested", "deidentify_uploads"]

DICOM = "application/dicom"
STUDY_MISMATCH_KIND = "StudyMismatch"
"""Error kind of an instance refused because it belongs to another study than asked."""


@dataclass(slots=True)
class Ingested:
    """One upload's fate.

    Attributes
    ----------
    outcome:
        The pipeline's outcome (``source`` is an opaque upload name, never a path).
    staged:
        The de-identified file in the request's workspace (``"ok"`` only; ``None`` once
        archived: the archive may have taken the file).
    record:
        What was indexed (archiving requests only).
    sop_class_uid, sop_instance_uid:
        SOP Class UID and the *pseudonymous* SOP Instance UID, for STOW-RS answers (empty
        when the upload is not readable DICOM).
    """

    outcome: FileOutcome
    staged: Path | None = None
    record: InstanceRecord | None = None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""

    @property
    def ok(self) -> bool:
        """Whether the instance was de-identified (and stored, when archiving)."""
        return self.outcome.status == "ok"


def _failed(source: Path, exc: DicomveilError) -> FileOutcome:
    return FileOutcome(source, "failed", reason=str(exc), error_kind=type(exc).__name__)


def _references(path: Path, services: Services) -> tuple[str, str]:
    """SOP Class UID and pseudonymous SOP Instance UID of an upload that failed."""
    import pydicom

    try:
        ds = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            force=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
        sop_class = str(ds.get("SOPClassUID", "") or "")
        original = str(ds.get("SOPInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - unreadable: nothing to refer to
        return "", ""
    if not original:
        return sop_class, ""
    if services.compiled.has(Option.RETAIN_UIDS):
        return sop_class, original
    return sop_class, remap_uid(services.keys, original)


def _archive(services: Services, results: list[Ingested]) -> None:
    """Store the de-identified files of ``results`` in one group and take their records.

    The staged files are moved into the archive when it is local (``staged`` is then
    ``None``). An instance that cannot be stored becomes a failure.
    """
    uploads: list[FileUpload] = []
    records: list[tuple[Ingested, InstanceRecord]] = []
    for result in results:
        outcome, staged = result.outcome, result.staged
        assert outcome.identity is not None and staged is not None
        try:
            record = record_from_file(
                staged,
                storage_key=outcome.output,
                size=outcome.size,
                sha256=outcome.sha256,
                with_metadata=False,  # built on first read (see dicomveil.web.headers)
            )
        except DicomveilError as exc:
            result.outcome = _failed(outcome.source, exc)
            continue
        pseudo = outcome.identity.pseudonymous
        labels = {"study_uid": pseudo.study_instance_uid, "patient_id": pseudo.patient_id}
        metadata = {name: value for name, value in labels.items() if value}
        uploads.append(FileUpload(outcome.output, staged, DICOM, metadata, outcome.sha256 or None))
        records.append((result, record))
    stored = services.store.put_files(uploads, consume=True)
    for (result, record), info in zip(records, stored, strict=True):
        result.staged = None
        if isinstance(info, DicomveilError):
            result.outcome = _failed(result.outcome.source, info)
        elif (info.size, info.sha256) != (record.size, record.sha256):
            result.outcome = _failed(
                result.outcome.source, StorageError("the archived object does not match")
            )
        else:
            result.record = record


def deidentify_uploads(
    services: Services,
    uploads: list[Path],
    workspace: Path,
    *,
    actor: str,
    entry: str,
    archive: bool,
    study: str | None = None,
) -> list[Ingested]:
    """De-identify ``uploads`` (files in ``workspace``), optionally archive and index them.

    Parameters
    ----------
    uploads:
        The uploaded files, one instance each.
    workspace:
        The request's private folder; de-identified files are written under
        ``workspace/out``.
    actor:
        Who sent them (the token's actor), for the audit log.
    entry:
        The entry point, for metrics (``stow``, ``api``).
    archive:
        Store the results in the archive and index them.
    study:
        Take only instances of this study (pseudonymous Study Instance UID); the others
        fail with the error kind :data:`STUDY_MISMATCH_KIND` and are neither stored nor
        recorded in the vault.

    Returns
    -------
    list of Ingested
        One per upload, in order. Failures carry a PHI-free reason.

    Raises
    ------
    VaultError, AuditError, StudyIndexError
        The way back, the audit trail or the index could not be written: nothing of the
        request is indexed then.
    """
    out = workspace / "out"
    results: list[Ingested] = []
    recorder = RunRecorder(
        services.vault,
        services.audit,
        run_id=uuid.uuid4().hex,
        actor=actor,
        policy=services.policy,
        pseudonym_key_id=services.keys.key_id,
        files=len(uploads),
        start_now=False,  # one request, one write to the audit log
    )
    with recorder:
        for number, path in enumerate(uploads, start=1):
            outcome = deidentify_file(
                path, out, services.compiled, services.keys, hash_output=archive
            )
            outcome.source = Path(f"upload-{number}")
            outcome.reason = outcome.reason.replace(str(path), outcome.source.name)
            result = Ingested(outcome)
            if outcome.status == "ok" and outcome.identity is not None:
                pseudo = outcome.identity.pseudonymous
                result.sop_instance_uid = pseudo.sop_instance_uid
                if study is None or pseudo.study_instance_uid == study:
                    result.staged = out / outcome.output
                else:
                    result.outcome = FileOutcome(
                        outcome.source,
                        "failed",
                        reason="the instance belongs to another study than the request's",
                        error_kind=STUDY_MISMATCH_KIND,
                    )
            results.append(result)
        if archive:
            _archive(services, [result for result in results if result.ok])
        for path, result in zip(uploads, results, strict=True):
            if result.record is not None:
                result.sop_class_uid = result.record.text("SOPClassUID")
            elif result.outcome.status != "ok":
                result.sop_class_uid, result.sop_instance_uid = _references(path, services)
            recorder.add(result.outcome)
        counts = Counter(r.outcome.status for r in results)
        recorder.finish(dict(counts), failed=bool(counts["failed"]))
    services.metrics.count_instances(entry, dict(counts))
    if archive:
        services.index.add([r.record for r in results if r.record is not None])
    return results
