"""De-identify one file: read, de-identify, write atomically. The unit every entry point uses.

Errors are turned into a :class:`FileOutcome` with a PHI-free reason; nothing is written for a
file that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dicomveil.dicomio import read_instance, write_instance
from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.identity import IdentityRecord
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy
from dicomveil.errors import DicomveilError, NotAnInstanceError

__all__ = ["FileOutcome", "deidentify_file", "output_key"]


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


def deidentify_file(
    source: Path,
    dest_root: Path,
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    *,
    fsync: bool = False,
    hash_output: bool = False,
) -> FileOutcome:
    """De-identify ``source`` into ``dest_root`` under its pseudonymous path.

    ``hash_output`` computes the output's SHA-256 (batches need it for their manifest; it
    costs about a third of a millisecond per 0.5 MB file).
    """
    try:
        instance = read_instance(source)
        ds = instance.dataset
        modality = str(ds.get("Modality", "") or "")
        result = deidentify(ds, compiled, keys, has_pixels=instance.pixel is not None)
        # Whatever followed the pixel data (digital signatures, which de-identification
        # invalidates anyway, trailing padding, private groups past 7FE0) is not carried over.
        key = output_key(result.identity)
        target = dest_root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        written = write_instance(
            instance, result.dataset, None, target, fsync=fsync, hash_output=hash_output
        )
    except NotAnInstanceError:
        return FileOutcome(source, "skipped", reason="DICOMDIR (media directory) not copied")
    except DicomveilError as exc:
        return FileOutcome(source, "failed", reason=str(exc), error_kind=type(exc).__name__)
    except (OSError, MemoryError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return FileOutcome(
            source, "failed", reason=f"I/O error: {reason}", error_kind=type(exc).__name__
        )
    return FileOutcome(
        source,
        "ok",
        output=key,
        size=written.size,
        sha256=written.sha256 or "",
        operations=dict(result.report.operations()),
        flags=list(result.report.flags),
        modality=modality,
        identity=result.identity,
    )
