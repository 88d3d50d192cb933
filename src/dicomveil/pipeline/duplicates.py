"""Inputs that map to one output: the same instance twice, or two instances sharing a UID.

An output is named by its SOP Instance UID (:func:`~dicomveil.pipeline.outcome.output_key`),
so two inputs with the same UID (copies of one file, or distinct files a modality gave one
UID) would write one path, the second silently replacing the first. :class:`DuplicateGuard`
sees every outcome of a run, in input order (see :func:`~dicomveil.pipeline.run
.run_deidentification`), and decides, the same way whatever the number of workers:

- the first input (in input order) that writes an output keeps it;
- a later input with the same output and the same content (SHA-256 of the input file) is a
  ``"duplicate"``: counted, nothing more to write;
- a later input with the same output and different content is refused (``"failed"``, so it is
  quarantined with its reason) and the first input's output is written again, since the
  later one may have replaced it on disk in the meantime.

Only inputs whose output is already taken are read again (to hash them): a run without
duplicates costs one dictionary entry per output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from dicomveil.pipeline.outcome import FileOutcome

__all__ = ["CONFLICT_KIND", "CONFLICT_REASON", "DUPLICATE_REASON", "DuplicateGuard"]

CONFLICT_KIND: Final = "DuplicateInstanceConflict"
CONFLICT_REASON: Final = (
    "another input with the same SOP Instance UID and different content came first; "
    "this one was not kept (its output would have replaced the other's)"
)
DUPLICATE_REASON: Final = "the same content as another input of this run (one output for both)"


def _sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


class DuplicateGuard:
    """Decides, outcome by outcome, which input keeps a shared output (module docstring).

    Parameters
    ----------
    restore:
        Writes a kept input's output again (called with its source) when a refused one may
        have replaced it.
    """

    def __init__(self, restore: Callable[[Path], None]) -> None:
        self._restore = restore
        self._first: dict[str, Path] = {}
        self._digests: dict[Path, str | None] = {}

    def check(self, outcome: FileOutcome) -> FileOutcome:
        """Return ``outcome``, or what it becomes when its output is already taken."""
        if outcome.status != "ok" or not outcome.output:
            return outcome
        first = self._first.setdefault(outcome.output, outcome.source)
        if first == outcome.source:
            return outcome
        mine, theirs = self._digest(outcome.source), self._digest(first)
        if mine is not None and mine == theirs:
            return FileOutcome(
                outcome.source, "duplicate", reason=DUPLICATE_REASON, modality=outcome.modality
            )
        self._restore(first)
        return FileOutcome(
            outcome.source, "failed", reason=CONFLICT_REASON, error_kind=CONFLICT_KIND
        )

    def _digest(self, path: Path) -> str | None:
        if path not in self._digests:
            self._digests[path] = _sha256(path)
        return self._digests[path]
