"""Turning whatever went wrong with one file into a value-free failure outcome.

The per-file boundary of every entry point (``deid``, batches, the gateway) ends here: an
exception never leaves it, and its text reaches the terminal, a report or a log only when it
is one of ours (:class:`~dicomveil.errors.DicomveilError`, whose messages name attributes and
never values) or the operating system's reason for an I/O error. Any other exception (pydicom's
``BytesLengthException`` quotes the value it could not convert; a codec's ``IndexError`` may
quote a name) becomes a fixed reason and its class name as the error kind: its text is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from dicomveil.errors import DicomveilError, NotAnInstanceError
from dicomveil.pipeline.outcome import FileOutcome

__all__ = ["UNREADABLE_REASON", "failure"]

UNREADABLE_REASON: Final = (
    "the file could not be read or de-identified (invalid or unsupported content)"
)
"""The reason given for an exception that is not ours (its own text is never shown)."""


def failure(source: Path, exc: BaseException) -> FileOutcome:
    """Return the outcome of ``source`` for ``exc`` (``"skipped"`` for a DICOMDIR).

    Examples
    --------
    >>> failure(Path("x.dcm"), IndexError("DOE^JOHN")).reason == UNREADABLE_REASON
    True
    >>> failure(Path("x.dcm"), IndexError("DOE^JOHN")).error_kind
    'IndexError'
    """
    kind = type(exc).__name__
    if isinstance(exc, NotAnInstanceError):
        return FileOutcome(source, "skipped", reason="DICOMDIR (media directory) not copied")
    if isinstance(exc, DicomveilError):
        return FileOutcome(source, "failed", reason=str(exc), error_kind=kind)
    if isinstance(exc, OSError):
        reason = f"I/O error: {exc.strerror or kind}"  # strerror: the system's words only
        return FileOutcome(source, "failed", reason=reason, error_kind=kind)
    if isinstance(exc, MemoryError):
        return FileOutcome(source, "failed", reason="out of memory", error_kind=kind)
    if isinstance(exc, RecursionError):
        return FileOutcome(source, "failed", reason="nested too deeply", error_kind=kind)
    return FileOutcome(source, "failed", reason=UNREADABLE_REASON, error_kind=kind)
