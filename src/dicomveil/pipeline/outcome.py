"""What happened to one input file: the record workers send back to the process that
collects outcomes (light: unpickling it imports neither the engine nor pydicom)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dicomveil.engine.identity import IdentityRecord

__all__ = ["FileOutcome", "output_key"]


@dataclass(slots=True)
class FileOutcome:
    """What happened to one input file (PHI-free except ``identity``, which is for the vault).

    Attributes
    ----------
    source:
        The input path (shown to the operator, never written to DEST).
    status:
        ``"ok"``, ``"failed"`` or ``"skipped"``.
    output:
        The output key relative to the destination root, for ``"ok"``.
    reason:
        Why a file failed or was skipped (no attribute values).
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


def output_key(identity: IdentityRecord) -> str:
    """Return where a de-identified instance goes: ``patient/study/series/instance.dcm``."""
    p = identity.pseudonymous
    return f"{p.patient_id}/{p.study_id}/{p.series_instance_uid}/{p.sop_instance_uid}.dcm"
