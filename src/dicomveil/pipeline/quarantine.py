"""Quarantine: where inputs that could not be made safe are kept, with their reasons.

A quarantine folder lives under ``$DICOMVEIL_HOME/quarantine/RUN_ID`` (never in a destination:
it holds originals). It receives a copy of each failed input, numbered in order, and
``reasons.json`` listing each copy with its source path and PHI-free reason. Reports that
travel (``--json``, batch summaries) name failed inputs by the SHA-256 of their content only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from dicomveil.pipeline.outcome import FileOutcome

__all__ = ["REASONS_NAME", "input_sha256", "quarantine_failures"]

REASONS_NAME = "reasons.json"


def quarantine_failures(failures: Sequence[FileOutcome], folder: Path) -> int:
    """Copy each failed input into ``folder`` and write ``reasons.json``; return the copies.

    The folder is created with mode 0700. Copies are named ``NNNNNN-<input name>`` by their
    position in ``failures``, so quarantining the same list again rewrites the same files.
    Inputs that can no longer be read are listed in ``reasons.json`` without a copy.

    Parameters
    ----------
    failures
        The outcomes of the failed inputs (``source`` and ``reason`` are used).
    folder
        The quarantine folder of the run.

    Returns
    -------
    int
        How many inputs were copied.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    reasons = []
    copied = 0
    for index, outcome in enumerate(failures):
        target = folder / f"{index:06d}-{outcome.source.name}"
        try:
            shutil.copy2(outcome.source, target)
        except OSError:
            name = ""
        else:
            name, copied = target.name, copied + 1
        reasons.append({"file": name, "source": str(outcome.source), "reason": outcome.reason})
    (folder / REASONS_NAME).write_text(json.dumps(reasons, indent=2), encoding="utf-8")
    return copied


def input_sha256(path: Path) -> str:
    """Return the SHA-256 (hex) of a file's content, or ``""`` when it cannot be read.

    This is how reports name a failed input without its path (which may hold a name).
    """
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return ""
