"""The work done on received instances, wherever it runs: a worker process or the caller.

De-identify (through :func:`dicomveil.pipeline.files.deidentify_file`, the function ``deid``
and batches use), check the study the request names, and, for the archive, read back what
the index records and store the instances (a run of them at a time: one flush per folder).
:class:`~dicomveil.pipeline.ingest.IngestService` hands this to
:class:`~dicomveil.pipeline.ingest_pool.IngestPool` and keeps for itself the writes to its
databases (vault, audit log, index), which follow the storing.

The ``forkserver`` imports this module once (it pulls in the engine, the reader and the
storage backends), so that the workers forked from it start in milliseconds.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy
from dicomveil.engine.uids import remap_uid
from dicomveil.errors import StorageError
from dicomveil.index.records import InstanceRecord, record_from_file
from dicomveil.paths import contained_path
from dicomveil.pipeline.executor import WorkerState
from dicomveil.pipeline.failures import Failure, FailureKind
from dicomveil.pipeline.files import FileOutcome, deidentify_file
from dicomveil.pipeline.tenancy import TenantEngines, engine_for
from dicomveil.ports import BlobInfo
from dicomveil.profile.options import Option
from dicomveil.storage import BaseBlobStore, FileUpload

__all__ = [
    "CONFLICT_KIND",
    "HEAD_BYTES",
    "STUDY_MISMATCH_KIND",
    "HeadUids",
    "Ingested",
    "Upload",
    "failed",
    "head_uids",
    "ingest_chunk",
    "ingest_one",
    "ingest_many",
    "mark_existing",
    "pseudonymous_uid",
    "put_results",
    "scan_sop_instance_uid",
    "sop_instance_uid_of",
    "store_results",
]

DICOM: Final = "application/dicom"
STUDY_MISMATCH_KIND: Final = FailureKind.STUDY_MISMATCH
"""Error kind of an instance refused because it belongs to another study than asked."""
CONFLICT_KIND: Final = FailureKind.CONFLICT
"""Error kind of an instance refused because the archive holds different content under its
pseudonymous SOP Instance UID (or another part of the request does)."""
HEAD_BYTES: Final = 64 * 1024
"""Bytes of an upload read to find its UIDs without parsing it (they come early)."""
_log = logging.getLogger(__name__)
_LAST_HEAD_TAG: Final = 0x0020000D  # StudyInstanceUID: the last UID looked for
_SOP_INSTANCE_UID: Final = 0x00080018
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_IMPLICIT_LE: Final = "1.2.840.10008.1.2"
_EXPLICIT_LE: Final = frozenset(
    {"1.2.840.10008.1.2.1"}
    | {f"1.2.840.10008.1.2.4.{n}" for n in range(50, 204)}
    | {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.98"}
)


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
    salt:
        De-identify with the keys salted with this (see :meth:`PseudonymKeys.salted`);
        empty: with the server's keys.
    organisation:
        The organisation (tenant) it is sent for: its pseudonym prefix and key apply (see
        :mod:`dicomveil.pipeline.tenancy`); ``None``: the server's.
    """

    path: str
    number: int
    out: str
    archive: bool
    study: str | None = None
    salt: str = ""
    organisation: str | None = None


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
    exists:
        The archive holds an object under this instance's key already: it was not stored
        (the server decides, see :mod:`dicomveil.pipeline.request_plan`); ``staged`` is kept.
    unchanged:
        The archive holds this very content already: not stored nor indexed again.
    replaced:
        The archive held different content under this SOP Instance UID; replaced.
    """

    outcome: FileOutcome
    staged: Path | None = None
    record: InstanceRecord | None = None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    exists: bool = False
    unchanged: bool = False
    replaced: bool = False

    @property
    def ok(self) -> bool:
        """Whether the instance was de-identified (and stored, when archiving)."""
        return self.outcome.status == "ok"


def failed(
    source: Path, exc: BaseException | str, kind: FailureKind = FailureKind.INTERNAL
) -> FileOutcome:
    """A failure outcome for ``source``: of an exception (see :meth:`Failure.of`), or of a
    value-free ``reason`` and its ``kind``."""
    found = Failure.of(exc) if isinstance(exc, BaseException) else Failure(kind, exc)
    return FileOutcome(source, "failed", reason=found.reason, error_kind=found.kind)


@dataclass(frozen=True, slots=True)
class HeadUids:
    """UIDs read from the first :data:`HEAD_BYTES` of an upload (empty when not found)."""

    sop_class: str = ""
    sop_instance: str = ""
    study: str = ""


def head_uids(path: Path | str) -> HeadUids:
    """Read the SOP Class, SOP Instance and Study Instance UIDs from the start of ``path``.

    Bounded cost whatever the upload: at most :data:`HEAD_BYTES` are read and parsed, and
    parsing stops after Study Instance UID. A file whose UIDs come later, or that is not
    DICOM, gives empty UIDs.
    """
    import io

    from pydicom.filereader import read_partial

    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
        ds = read_partial(
            io.BytesIO(head),
            stop_when=lambda tag, _vr, _length: int(tag) > _LAST_HEAD_TAG,
            force=True,
            specific_tags=[0x00080016, 0x00080018, _LAST_HEAD_TAG],
        )
        values = [str(ds.get(k, "") or "") for k in ("SOPClassUID", "SOPInstanceUID")]
        study = str(ds.get("StudyInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - unreadable (or cut in the middle): nothing to refer to
        return HeadUids()
    return HeadUids(values[0], values[1], study)


def _element(head: bytes, pos: int, implicit: bool) -> tuple[int, int, int] | None:
    """(tag, value offset, value length) of the element at ``pos``; ``None`` when it cannot
    be read plainly (end of the head, undefined length, a VR that is not two letters)."""
    if pos + 8 > len(head):
        return None
    group, number = struct.unpack_from("<HH", head, pos)
    if implicit:
        start, length = pos + 8, struct.unpack_from("<I", head, pos + 4)[0]
    else:
        vr = head[pos + 4 : pos + 6]
        if not vr.isalpha() or not vr.isupper():
            return None
        if vr in _LONG_VRS:
            if pos + 12 > len(head):
                return None
            start, length = pos + 12, struct.unpack_from("<I", head, pos + 8)[0]
        else:
            start, length = pos + 8, struct.unpack_from("<H", head, pos + 6)[0]
    if length == 0xFFFFFFFF or start + length > len(head):
        return None
    return group << 16 | number, start, length


def _text(value: bytes) -> str | None:
    text = value.rstrip(b"\0 ")
    return text.decode("ascii") if text.isascii() else None


def scan_sop_instance_uid(head: bytes) -> str | None:
    """SOP Instance UID from the first bytes of a Part 10 file, without pydicom (tens of
    microseconds): ``""`` when the file has none, ``None`` when a plain scan cannot tell
    (no preamble, big endian or deflated, unusual elements before it)."""
    if head[128:132] != b"DICM":
        return None
    pos, syntax = 132, None
    while (found := _element(head, pos, implicit=False)) is not None and found[0] >> 16 == 2:
        tag, start, length = found
        if tag == 0x00020010:
            syntax = _text(head[start : start + length])
        pos = start + length
    if syntax != _IMPLICIT_LE and syntax not in _EXPLICIT_LE:
        return None
    while (found := _element(head, pos, implicit=syntax == _IMPLICIT_LE)) is not None:
        tag, start, length = found
        if tag == _SOP_INSTANCE_UID:
            return _text(head[start : start + length])
        if tag > _SOP_INSTANCE_UID:
            return ""
        pos = start + length
    return None


def sop_instance_uid_of(path: Path | str) -> str:
    """The original SOP Instance UID of an upload (``""``: none found), read from its head:
    by :func:`scan_sop_instance_uid`, else by pydicom on the head."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return ""
    found = scan_sop_instance_uid(head)
    return head_uids(path).sop_instance if found is None else found


def pseudonymous_uid(uid: str, compiled: CompiledPolicy, keys: PseudonymKeys) -> str:
    """The UID the de-identified instance gets for ``uid`` (``""`` stays ``""``)."""
    if not uid or compiled.has(Option.RETAIN_UIDS):
        return uid
    return remap_uid(keys, uid)


def _references(path: Path, compiled: CompiledPolicy, keys: PseudonymKeys) -> tuple[str, str]:
    """SOP Class UID and pseudonymous SOP Instance UID of an upload that failed (read from
    its head only: a refused upload is never parsed again in full)."""
    uids = head_uids(path)
    return uids.sop_class, pseudonymous_uid(uids.sop_instance, compiled, keys)


def ingest_one(upload: Upload, compiled: CompiledPolicy, keys: PseudonymKeys) -> Ingested:
    """De-identify one upload into its request's folder; see :class:`Upload`.

    Any error is this upload's failure alone (a typed, value-free :class:`Failure`), never
    the request's.
    """
    try:
        return _ingest_one(upload, compiled, keys)
    except Exception as exc:  # noqa: BLE001 - one upload must not sink the others
        return Ingested(failed(Path(f"upload-{upload.number}"), exc))


def _ingest_one(upload: Upload, compiled: CompiledPolicy, keys: PseudonymKeys) -> Ingested:
    path, out = Path(upload.path), Path(upload.out)
    keys = keys.salted(upload.salt) if upload.salt else keys
    outcome = deidentify_file(path, out, compiled, keys, hash_output=upload.archive)
    outcome.source = Path(f"upload-{upload.number}")
    outcome.reason = outcome.reason.replace(str(path), outcome.source.name)
    result = Ingested(outcome)
    if outcome.status == "ok" and outcome.identity is not None:
        pseudo = outcome.identity.pseudonymous
        result.sop_instance_uid = pseudo.sop_instance_uid
        if upload.study is not None and pseudo.study_instance_uid != upload.study:
            contained_path(out, outcome.output).unlink(missing_ok=True)  # not for the caller
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
    except Exception as exc:  # noqa: BLE001 - this instance's failure alone
        result.outcome, result.staged = failed(outcome.source, exc), None


def store_results(
    store: BaseBlobStore, results: Sequence[Ingested], *, overwrite: bool = False
) -> None:
    """Store the de-identified files of the ``results`` to archive, in one group.

    The staged files are moved into the archive when it is local (``staged`` is then
    ``None``). An instance that cannot be stored becomes a failure (and loses its record).
    An instance whose key the archive holds already is not stored (``exists``) unless
    ``overwrite``: the server compares it with the archived one first.
    """
    put_results(store, mark_existing(store, results, overwrite=overwrite))


def mark_existing(
    store: BaseBlobStore, results: Sequence[Ingested], *, overwrite: bool = False
) -> list[Ingested]:
    """The first step of :func:`store_results`: mark the results whose key the archive
    holds (``exists``, unless ``overwrite``); return those :func:`put_results` is to store."""
    taken: list[Ingested] = []
    for result in results:
        if not result.ok or result.record is None or result.staged is None or result.unchanged:
            continue
        if not overwrite and store.head(result.outcome.output) is not None:
            result.exists = True
            continue
        taken.append(result)
    return taken


def put_results(store: BaseBlobStore, taken: Sequence[Ingested]) -> None:
    """The second step of :func:`store_results`: store ``taken`` (durably, as the archive
    does: one group, its flushes at once); one that cannot be stored becomes a failure."""
    taken = [r for r in taken if r.record is not None and r.staged is not None]  # not refused
    if not taken:
        return
    uploads: list[FileUpload] = []
    for result in taken:
        outcome, staged = result.outcome, result.staged
        assert outcome.identity is not None and staged is not None
        pseudo = outcome.identity.pseudonymous
        labels = {"study_uid": pseudo.study_instance_uid, "patient_id": pseudo.patient_id}
        metadata = {name: value for name, value in labels.items() if value}
        uploads.append(FileUpload(outcome.output, staged, DICOM, metadata, outcome.sha256 or None))
    try:
        infos: Sequence[BlobInfo | BaseException] = store.put_files(uploads, consume=True)
    except Exception as exc:  # noqa: BLE001 - an archive fault fails the group, never the call
        # Its text may quote a value (a key, a path): only its type is logged.
        _log.error("the archive failed to store %d instances (%s)", len(taken), type(exc).__name__)
        lost = StorageError("the archive did not store the instance")
        infos = [lost] * len(taken)
    for result, info in zip(taken, infos, strict=True):
        record, result.staged = result.record, None
        assert record is not None
        if isinstance(info, BaseException):
            result.outcome, result.record = failed(result.outcome.source, info), None
        elif (info.size, info.sha256) != (record.size, record.sha256):
            error = StorageError("the archived object does not match")
            result.outcome, result.record = failed(result.outcome.source, error), None


def ingest_many(
    uploads: Sequence[Upload],
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    store: BaseBlobStore | None,
    tenants: TenantEngines | None = None,
) -> list[Ingested]:
    """Work on ``uploads``; those to archive go to ``store`` as a group (``None``: the caller
    stores them). An upload sent for an organisation takes its engine from ``tenants``."""
    results = [ingest_one(upload, *_engine(upload, compiled, keys, tenants)) for upload in uploads]
    if store is not None:
        store_results(store, [r for r, u in zip(results, uploads, strict=True) if u.archive])
    return results


def ingest_chunk(state: WorkerState, uploads: Sequence[Upload]) -> list[Ingested]:
    """Work on ``uploads`` with an executor's worker state (see
    :class:`~dicomveil.pipeline.executor.Executor`)."""
    return ingest_many(uploads, state.compiled, state.keys, state.store, state.tenants)


def _engine(
    upload: Upload, compiled: CompiledPolicy, keys: PseudonymKeys, tenants: TenantEngines | None
) -> tuple[CompiledPolicy, PseudonymKeys]:
    if not upload.organisation or not tenants:
        return compiled, keys
    own_keys, own_compiled = engine_for(tenants, upload.organisation, keys, compiled)
    return own_compiled, own_keys
