"""The work done on uploaded instances, wherever it runs: a pool process or the server.

De-identify (through :func:`dicomveil.pipeline.files.deidentify_file`, the function ``deid``
and batches use), check the study the request names, and, for the archive, read back what
the index records and store the instances (a run of them at a time: one flush per folder).
The server hands this to :class:`~dicomveil.web.engine_pool.EnginePool` and keeps for itself
the writes to its databases (vault, audit log, index), which follow the storing.

The module stays light (no web framework): the pool's processes import it and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy, compile_policy
from dicomveil.engine.uids import remap_uid
from dicomveil.errors import DicomveilError, StorageError
from dicomveil.index.records import InstanceRecord, record_from_file
from dicomveil.paths import contained_path
from dicomveil.pipeline.files import FileOutcome, deidentify_file
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy
from dicomveil.quiet import quiet_pydicom
from dicomveil.storage import BaseBlobStore, FileUpload, open_store

__all__ = [
    "STUDY_MISMATCH_KIND",
    "Ingested",
    "Upload",
    "can_read",
    "failed",
    "ingest_chunk",
    "ingest_one",
    "ingest_many",
    "init_worker",
    "store_results",
]

DICOM: Final = "application/dicom"
STUDY_MISMATCH_KIND: Final = "StudyMismatch"
"""Error kind of an instance refused because it belongs to another study than asked."""


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded instance to work on.

    Attributes
    ----------
    path:
        The spooled upload (readable from any process of this user: an anonymous memory
        file is named through ``/proc/<pid>/fd``).
    number:
        Its place in the request, from 1 (outcomes name ``upload-<number>``, never a path).
    out:
        The request's folder for de-identified files.
    archive:
        Take the instance's index record too (and its SHA-256 while writing it).
    study:
        Take only instances of this pseudonymous study (others fail, kind
        :data:`STUDY_MISMATCH_KIND`).
    """

    path: str
    number: int
    out: str
    archive: bool
    study: str | None = None


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
        What is to be indexed (archiving requests only); ``None`` when the instance failed.
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


def failed(source: Path, exc: DicomveilError | str, kind: str = "") -> FileOutcome:
    """A failure outcome for ``source`` (PHI-free: the reason names no value)."""
    if isinstance(exc, DicomveilError):
        return FileOutcome(source, "failed", reason=str(exc), error_kind=type(exc).__name__)
    return FileOutcome(source, "failed", reason=exc, error_kind=kind)


def _references(path: Path, compiled: CompiledPolicy, keys: PseudonymKeys) -> tuple[str, str]:
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
    if compiled.has(Option.RETAIN_UIDS):
        return sop_class, original
    return sop_class, remap_uid(keys, original)


def ingest_one(upload: Upload, compiled: CompiledPolicy, keys: PseudonymKeys) -> Ingested:
    """De-identify one upload into its request's folder; see :class:`Upload`."""
    path, out = Path(upload.path), Path(upload.out)
    outcome = deidentify_file(path, out, compiled, keys, hash_output=upload.archive)
    outcome.source = Path(f"upload-{upload.number}")
    outcome.reason = outcome.reason.replace(str(path), outcome.source.name)
    result = Ingested(outcome)
    if outcome.status == "ok" and outcome.identity is not None:
        pseudo = outcome.identity.pseudonymous
        result.sop_instance_uid = pseudo.sop_instance_uid
        if upload.study is not None and pseudo.study_instance_uid != upload.study:
            result.outcome = failed(
                outcome.source,
                "the instance belongs to another study than the request's",
                STUDY_MISMATCH_KIND,
            )
        else:
            result.staged = contained_path(out, outcome.output)
            if upload.archive:
                _take_record(result)
    if result.record is not None:
        result.sop_class_uid = result.record.text("SOPClassUID")
    elif not result.ok:
        result.sop_class_uid, references = _references(path, compiled, keys)
        result.sop_instance_uid = result.sop_instance_uid or references
    return result


def _take_record(result: Ingested) -> None:
    outcome, staged = result.outcome, result.staged
    assert staged is not None
    try:
        result.record = record_from_file(
            staged,
            storage_key=outcome.output,
            size=outcome.size,
            sha256=outcome.sha256,
            with_metadata=False,  # built on first read (see dicomveil.web.headers)
        )
    except DicomveilError as exc:
        result.outcome, result.staged = failed(outcome.source, exc), None


def store_results(store: BaseBlobStore, results: Sequence[Ingested]) -> None:
    """Store the de-identified files of the ``results`` to archive, in one group.

    The staged files are moved into the archive when it is local (``staged`` is then
    ``None``). An instance that cannot be stored becomes a failure (and loses its record).
    """
    uploads: list[FileUpload] = []
    taken: list[Ingested] = []
    for result in results:
        outcome, staged = result.outcome, result.staged
        if not result.ok or result.record is None or staged is None:
            continue
        assert outcome.identity is not None
        pseudo = outcome.identity.pseudonymous
        labels = {"study_uid": pseudo.study_instance_uid, "patient_id": pseudo.patient_id}
        metadata = {name: value for name, value in labels.items() if value}
        uploads.append(FileUpload(outcome.output, staged, DICOM, metadata, outcome.sha256 or None))
        taken.append(result)
    if not uploads:
        return
    for result, info in zip(taken, store.put_files(uploads, consume=True), strict=True):
        record, result.staged = result.record, None
        assert record is not None
        if isinstance(info, DicomveilError):
            result.outcome, result.record = failed(result.outcome.source, info), None
        elif (info.size, info.sha256) != (record.size, record.sha256):
            error = StorageError("the archived object does not match")
            result.outcome, result.record = failed(result.outcome.source, error), None


def ingest_many(
    uploads: Sequence[Upload],
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    store: BaseBlobStore | None,
) -> list[Ingested]:
    """Work on ``uploads``; those to archive go to ``store`` as a group (``None``: the caller
    stores them)."""
    results = [ingest_one(upload, compiled, keys) for upload in uploads]
    if store is not None:
        store_results(store, [r for r, u in zip(results, uploads, strict=True) if u.archive])
    return results


# -- pool process side ------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def init_worker(
    secret: bytes, policy: Policy, store_url: str | None, store_options: dict[str, Any]
) -> None:
    """Initialise a pool process: no pydicom warnings (they quote values), keys derived,
    policy compiled and the archive opened once (``store_url`` ``None``: the server stores)."""
    quiet_pydicom()
    _STATE["keys"] = PseudonymKeys(secret)
    _STATE["compiled"] = compile_policy(policy)
    _STATE["store"] = None if store_url is None else open_store(store_url, **store_options)


def ingest_chunk(uploads: Sequence[Upload]) -> list[Ingested]:
    """Work on ``uploads`` in a pool process (after :func:`init_worker`)."""
    return ingest_many(uploads, _STATE["compiled"], _STATE["keys"], _STATE["store"])


def can_read(path: str) -> bool:
    """Whether this process can open ``path`` (the pool's check of the server's memory
    files: ``/proc/<pid>/fd`` of another process may be closed to it)."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True
