"""Turning whatever went wrong with one file into a typed, value-free :class:`Failure`.

The per-file boundary of every entry point (``deid``, batches, the gateway, the DICOM node)
ends here: an exception never leaves it. It becomes a :class:`Failure`: a :class:`FailureKind`
(what went wrong, one closed set, mapped once to PS3.4 statuses by
:mod:`dicomveil.pipeline.statuses`) and a reason whose text reaches the terminal, a report or a
log only when it is one of ours (:class:`~dicomveil.errors.DicomveilError`, whose messages
name attributes and never values) or the operating system's reason for an I/O error. Any
other exception (pydicom's ``BytesLengthException`` quotes the value it could not convert; a
codec's ``IndexError`` may quote a name) becomes a fixed reason: its text is dropped.

The kinds' values are the words outcomes always carried (``MalformedInputError``,
``WorkerCrash``...), so journals and audit logs written before stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from dicomveil import errors
from dicomveil.pipeline.outcome import FileOutcome

__all__ = ["UNREADABLE_REASON", "Failure", "FailureKind", "failure", "failure_of", "kind_of"]

UNREADABLE_REASON: Final = (
    "the file could not be read or de-identified (invalid or unsupported content)"
)
"""The reason given for an exception that is not ours (its own text is never shown)."""


class FailureKind(StrEnum):
    """What went wrong with one instance (a closed set; see :mod:`~.statuses`)."""

    MALFORMED = "MalformedInputError"
    """Not readable as DICOM (cannot understand)."""
    UNSUPPORTED = "UnsupportedInputError"
    """Readable, but not something dicomveil de-identifies (a SOP class, a syntax)."""
    NOT_AN_INSTANCE = "NotAnInstanceError"
    """A media directory (DICOMDIR), not an instance: skipped."""
    DEIDENTIFICATION = "DeidentificationError"
    """The policy could not be applied (fail closed)."""
    UNSAFE_PATH = "UnsafePathError"
    """Identifiers that cannot name an output path."""
    STORAGE = "StorageError"
    """The archive refused the object, or holds other bytes after writing."""
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    """The archive could not be reached."""
    IO = "OSError"
    """An operating-system error (disk full, permissions)."""
    OUT_OF_MEMORY = "MemoryError"
    TOO_DEEP = "RecursionError"
    """Sequences nested beyond what the reader follows."""
    WORKER_CRASH = "WorkerCrash"
    """The worker process died on this instance, twice."""
    STUDY_MISMATCH = "StudyMismatch"
    """The instance belongs to another study than the one the request names."""
    CONFLICT = "InstanceConflict"
    """The archive (or the same call) holds other content under this SOP Instance UID."""
    UNREADABLE = "Unreadable"
    """Any other exception (a reader's or codec's own error, whose text is dropped)."""
    INTERNAL = "Internal"
    """A fault of dicomveil's (its text dropped too)."""


_BY_ERROR: Final[tuple[tuple[type[BaseException], FailureKind], ...]] = (
    (errors.NotAnInstanceError, FailureKind.NOT_AN_INSTANCE),
    (errors.MalformedInputError, FailureKind.MALFORMED),
    (errors.UnsupportedInputError, FailureKind.UNSUPPORTED),
    (errors.UnsafePathError, FailureKind.UNSAFE_PATH),
    (errors.DeidentificationError, FailureKind.DEIDENTIFICATION),
    (errors.StorageUnavailable, FailureKind.STORAGE_UNAVAILABLE),
    (errors.StorageError, FailureKind.STORAGE),
    (OSError, FailureKind.IO),
    (MemoryError, FailureKind.OUT_OF_MEMORY),
    (RecursionError, FailureKind.TOO_DEEP),
    (errors.DicomveilError, FailureKind.INTERNAL),
)
"""Exception type → kind, most specific first."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one instance failed: a kind and a value-free reason."""

    kind: FailureKind
    reason: str

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """The failure for ``exc`` (its text kept only when it is known to be value-free)."""
        kind = kind_of(exc)
        if isinstance(exc, errors.DicomveilError):
            return cls(kind, str(exc))
        if isinstance(exc, OSError):
            return cls(kind, f"I/O error: {exc.strerror or type(exc).__name__}")
        if isinstance(exc, MemoryError):
            return cls(kind, "out of memory")
        if isinstance(exc, RecursionError):
            return cls(kind, "nested too deeply")
        return cls(kind, UNREADABLE_REASON)


def kind_of(exc: BaseException) -> FailureKind:
    """The :class:`FailureKind` of an exception."""
    for error, kind in _BY_ERROR:
        if isinstance(exc, error):
            return kind
    return FailureKind.UNREADABLE


def failure_of(outcome: FileOutcome) -> Failure | None:
    """The typed failure an outcome carries (``None`` for one that did not fail; a
    ``"skipped"`` file is :attr:`FailureKind.NOT_AN_INSTANCE`)."""
    if outcome.status == "skipped":
        return Failure(FailureKind.NOT_AN_INSTANCE, outcome.reason)
    if outcome.status != "failed":
        return None
    try:
        kind = FailureKind(outcome.error_kind)
    except ValueError:  # an outcome recorded before the kinds were closed
        kind = FailureKind.UNREADABLE
    return Failure(kind, outcome.reason)


def failure(source: Path, exc: BaseException) -> FileOutcome:
    """Return the outcome of ``source`` for ``exc`` (``"skipped"`` for a DICOMDIR).

    Examples
    --------
    >>> failure(Path("x.dcm"), IndexError("DOE^JOHN")).reason == UNREADABLE_REASON
    True
    >>> failure(Path("x.dcm"), IndexError("DOE^JOHN")).error_kind
    'Unreadable'
    """
    if isinstance(exc, errors.NotAnInstanceError):
        return FileOutcome(source, "skipped", reason="DICOMDIR (media directory) not copied")
    found = Failure.of(exc)
    return FileOutcome(source, "failed", reason=found.reason, error_kind=found.kind)
