"""What happened to one input file: the record workers send back to the process that
collects outcomes (light: unpickling it imports neither the engine nor pydicom)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from dicomveil.engine.identity import IdentityRecord
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.errors import UnsafePathError

if TYPE_CHECKING:
    from dicomveil.pipeline.failures import Failure

__all__ = ["FileOutcome", "output_key", "upload_key"]

_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
"""A patient or study folder used as it is: every pseudonym the engine makes matches."""
_UID: Final = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UID_MAX: Final = 64


@dataclass(slots=True)
class FileOutcome:
    """What happened to one input file (PHI-free except ``identity``, which is for the vault).

    Attributes
    ----------
    source:
        The input path (shown to the operator, never written to DEST).
    status:
        ``"ok"``, ``"failed"``, ``"skipped"`` or ``"duplicate"`` (the same content as an
        input already written: one output for both).
    output:
        The output key relative to the destination root, for ``"ok"``.
    reason:
        Why a file failed or was skipped (no attribute values).
    error_kind:
        What went wrong, for a failure: a
        :class:`~dicomveil.pipeline.failures.FailureKind` (see :attr:`failure`).
    fallback:
        How the byte-level fast path fared: ``""`` used (or not tried), ``"declined"`` it
        handed the file to the reference path (an input it does not reproduce exactly),
        ``"error"`` it raised (a fast-path bug: counted and reported, never hidden).
    """

    source: Path
    status: str
    output: str = ""
    reason: str = ""
    size: int = 0
    sha256: str = ""
    operations: dict[str, int] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    modality: str = ""
    error_kind: str = ""
    identity: IdentityRecord | None = None
    fallback: str = ""

    @property
    def failure(self) -> Failure | None:
        """The typed, value-free failure (``None`` unless failed or skipped)."""
        from dicomveil.pipeline.failures import failure_of

        return failure_of(self)


def output_key(identity: IdentityRecord, keys: PseudonymKeys) -> str:
    """Return where a de-identified instance goes: ``patient/study/series/instance.dcm``.

    No segment is ever an unchecked value:

    - the patient and study folders are the pseudonymous PatientID and StudyID when they are
      plain names (letters, digits, ``.``, ``_``, ``-``, at most 64, not starting with ``.``:
      every pseudonym the engine makes); any other value (kept by a policy override) is
      replaced by its keyed hash, ``K`` + 15 characters;
    - the series folder and the file name are the (pseudonymous) Series and SOP Instance UIDs,
      which must be valid UIDs (digits and dots, at most 64 characters). Only
      ``retain-uids`` (or an override) can keep an invalid one: such an instance is refused.

    Raises
    ------
    UnsafePathError
        For an invalid UID or a missing identifier (the message names the attribute only).
    """
    p = identity.pseudonymous
    return "/".join(
        (
            _name_segment(p.patient_id, "PatientID", keys),
            _name_segment(p.study_id, "StudyID", keys),
            _uid_segment(p.series_instance_uid, "SeriesInstanceUID"),
            _uid_segment(p.sop_instance_uid, "SOPInstanceUID") + ".dcm",
        )
    )


def upload_key(output: str) -> str:
    """Return the key a batch uploads an output to: its :func:`output_key` without the
    patient folder (``study/series/instance.dcm``)."""
    return output.split("/", 1)[1]


def _name_segment(value: str, keyword: str, keys: PseudonymKeys) -> str:
    if _NAME.fullmatch(value):
        return value
    if not value:
        raise UnsafePathError(f"the instance has no {keyword} to name its output folder")
    return "K" + keys.token(f"path:{keyword}", value, 15)


def _uid_segment(value: str, keyword: str) -> str:
    if len(value) <= _UID_MAX and _UID.fullmatch(value):
        return value
    raise UnsafePathError(
        f"{keyword} is not a valid UID (digits and dots, at most {_UID_MAX} characters): "
        "it cannot name an output path"
    )
