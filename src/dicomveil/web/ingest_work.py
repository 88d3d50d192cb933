"""The work done on one uploaded instance, wherever it runs: a pool process or the server.

De-identify (through :func:`dicomveil.pipeline.files.deidentify_file`, the function ``deid``
and batches use), check the study the request names, and, for the archive, read back what
the index records. This is the CPU-bound part of an upload; the server hands it to
:class:`~dicomveil.web.engine_pool.EnginePool` and keeps for itself what touches shared
state (archive, vault, audit, index).

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
from dicomveil.errors import DicomveilError
from dicomveil.index.records import InstanceRecord, record_from_file
from dicomveil.pipeline.files import FileOutcome, deidentify_file
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy

__all__ = [
    "STUDY_MISMATCH_KIND",
    "Ingested",
    "Upload",
    "can_read",
    "failed",
    "ingest_chunk",
    "ingest_one",
    "init_worker",
    "quiet_pydicom",
]

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
            result.staged = out / outcome.output
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


# -- pool process side ------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def quiet_pydicom() -> None:
    """Stop pydicom from warning about invalid values it reads (its warnings quote them).

    Called once by the server's entry points and in each engine process, never by library
    code (pydicom's configuration and the warning filters are global).
    """
    import warnings

    from pydicom import config

    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    config.settings.reading_validation_mode = config.IGNORE


def init_worker(secret: bytes, policy: Policy) -> None:
    """Initialise a pool process: no pydicom warnings (they quote values), keys derived and
    policy compiled once."""
    quiet_pydicom()
    _STATE["keys"] = PseudonymKeys(secret)
    _STATE["compiled"] = compile_policy(policy)


def ingest_chunk(uploads: Sequence[Upload]) -> list[Ingested]:
    """Work on ``uploads`` in a pool process (after :func:`init_worker`)."""
    compiled, keys = _STATE["compiled"], _STATE["keys"]
    return [ingest_one(upload, compiled, keys) for upload in uploads]


def can_read(path: str) -> bool:
    """Whether this process can open ``path`` (the pool's check of the server's memory
    files: ``/proc/<pid>/fd`` of another process may be closed to it)."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True
