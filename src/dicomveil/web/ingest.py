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
from pathlib import Path

from dicomveil.errors import DicomveilError, StorageError
from dicomveil.index import InstanceRecord
from dicomveil.pipeline.recording import RunRecorder
from dicomveil.storage import FileUpload
from dicomveil.web.ingest_work import STUDY_MISMATCH_KIND, Ingested, Upload, failed
from dicomveil.web.services import Services

__all__ = ["STUDY_MISMATCH_KIND", "Ingested", "deidentify_uploads"]

DICOM = "application/dicom"


def _archive(services: Services, results: list[Ingested]) -> None:
    """Store the de-identified files of ``results`` in one group.

    The staged files are moved into the archive when it is local (``staged`` is then
    ``None``). An instance that cannot be stored becomes a failure (and loses its record).
    """
    uploads: list[FileUpload] = []
    records: list[tuple[Ingested, InstanceRecord]] = []
    for result in results:
        outcome, staged, record = result.outcome, result.staged, result.record
        assert outcome.identity is not None and staged is not None and record is not None
        pseudo = outcome.identity.pseudonymous
        labels = {"study_uid": pseudo.study_instance_uid, "patient_id": pseudo.patient_id}
        metadata = {name: value for name, value in labels.items() if value}
        uploads.append(FileUpload(outcome.output, staged, DICOM, metadata, outcome.sha256 or None))
        records.append((result, record))
    stored = services.store.put_files(uploads, consume=True)
    for (result, record), info in zip(records, stored, strict=True):
        result.staged = None
        if isinstance(info, DicomveilError):
            result.outcome, result.record = failed(result.outcome.source, info), None
        elif (info.size, info.sha256) != (record.size, record.sha256):
            error = StorageError("the archived object does not match")
            result.outcome, result.record = failed(result.outcome.source, error), None


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

    The de-identification itself runs in the gateway's engine processes (see
    :class:`~dicomveil.web.engine_pool.EnginePool`); storing and recording run here.

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
    out = str(workspace / "out")
    work = [
        Upload(str(path), number, out, archive, study)
        for number, path in enumerate(uploads, start=1)
    ]
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
        results = services.engine.run(work)
        if archive:
            _archive(services, [result for result in results if result.ok])
        for result in results:
            recorder.add(result.outcome)
        counts = Counter(r.outcome.status for r in results)
        recorder.finish(dict(counts), failed=bool(counts["failed"]))
    services.metrics.count_instances(entry, dict(counts))
    if archive:
        services.index.add([r.record for r in results if r.record is not None])
    return results
