"""Dead letters: queued originals that could not be made safe, kept in the quarantine.

A dead letter is the worker's quarantine run ``deadletter-<digest prefix>`` (under
``$DICOMVEIL_HOME/quarantine``, with the usual quota and retention): a copy named after the
SHA-256 of its content and ``reasons.json`` with a value-free reason. The queue message,
the logs and the reason never hold a value of the instance.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dicomveil.pipeline.outcome import FileOutcome
from dicomveil.pipeline.quarantine import quarantine_run

__all__ = ["dead_letter"]


def dead_letter(
    home: Path,
    original: Path | None,
    key: str,
    reason: str,
    *,
    organisation: str | None = None,
) -> Path:
    """Quarantine ``original`` (``None``: nothing could be read) with ``reason``; return
    the quarantine folder. ``key`` names the incoming object (a digest, never a value).
    ``organisation`` (the sender's) makes the run that organisation's: its console sees it
    and a release de-identifies it with its prefix and key."""
    tag = hashlib.sha256(key.encode()).hexdigest()[:24]
    folder = home / "quarantine" / f"deadletter-{tag}"
    source = original if original is not None else Path("/dev/null") / key  # never a file
    outcome = FileOutcome(source, "failed", reason=reason, error_kind="DeadLetter")
    quarantine_run([outcome], folder, root=home / "quarantine", organisation=organisation)
    return folder
