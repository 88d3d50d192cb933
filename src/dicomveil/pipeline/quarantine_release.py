"""Releasing a quarantined run: its originals go through the ingest service again.

Once the cause of a quarantine is dealt with (the operator enabled ``clean-pixel-data``, raised
a budget, fixed the policy), the run's originals are submitted again, under the *current*
policy, to the archive (:meth:`~dicomveil.pipeline.ingest.IngestService.process`, as STOW-RS
does: de-identified, stored, indexed, vault-recorded, audited as an ingest run). Each copy that
is now archived leaves the quarantine; the others stay, with the reason of this attempt. A run
left with no entry is removed.

Who may release: the ``ingest`` role (it submits originals already; ``admin`` has no data
access, ``docs/security.md``), and on the command line whoever owns the state folder. A run
records the organisation (tenant) its inputs were sent for
(:func:`~dicomveil.pipeline.quarantine.run_organisation`); the release is that
organisation's, whoever asks for it: its pseudonym prefix and own key, its index rows. A
console session bound to an organisation releases its own organisation's runs only.

What is returned (and audited as ``quarantine.release``) is value-free: the run id, counts,
reasons, the pseudonymous Study Instance UIDs the released instances went to.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dicomveil.audit.entry import AuditEvent, Outcome
from dicomveil.errors import ConfigError
from dicomveil.pipeline.ingest import IngestService, Origin
from dicomveil.pipeline.quarantine import REASONS_NAME, UNREADABLE, read_reasons, run_organisation

__all__ = ["QUARANTINE_RELEASE", "Released", "release_origin", "release_run"]

QUARANTINE_RELEASE: Final = "quarantine.release"


@dataclass(slots=True)
class Released:
    """What a release did (value-free: safe to print and to audit)."""

    run_id: str
    submitted: int = 0
    released: int = 0
    still_failing: dict[str, int] = field(default_factory=dict)
    """Copies still quarantined, by this attempt's reason."""
    not_copied: int = 0
    """Entries listed without a copy (not DICOM, quota): nothing to release, they stay."""
    pseudo_study_uids: list[str] = field(default_factory=list)
    removed: bool = False
    """Whether the run's quarantine folder is gone (nothing left in it)."""
    organisation: str | None = None
    """The organisation the run was released for (its recorded one)."""

    def details(self) -> dict[str, Any]:
        """The audit entry's details."""
        return {
            "run_id": self.run_id,
            "organisation": self.organisation,
            "submitted": self.submitted,
            "released": self.released,
            "still_failing": self.still_failing,
            "not_copied": self.not_copied,
            "pseudo_study_uids": self.pseudo_study_uids,
            "removed": self.removed,
        }

    def event(self, actor: str) -> AuditEvent:
        """The ``quarantine.release`` audit event."""
        outcome: Outcome = "success" if self.released or not self.submitted else "failure"
        return AuditEvent(QUARANTINE_RELEASE, actor, outcome, self.details())


def release_origin(folder: Path, entry: str, actor: str) -> Origin:
    """The origin a release of ``folder`` submits with: ``entry`` and ``actor`` (who asks),
    the organisation the run recorded.

    Raises
    ------
    ConfigError
        The run's ``run.json`` is unreadable: whose the inputs are is unknown, and releasing
        them under another organisation's key would file them wrongly.
    """
    organisation = run_organisation(folder)
    if organisation == UNREADABLE:
        raise ConfigError(f"quarantined run {folder.name}: its organisation record is unreadable")
    return Origin(entry, actor, organisation=organisation)


def release_run(ingest: IngestService, folder: Path, workspace: Path, origin: Origin) -> Released:
    """Submit the quarantined copies of ``folder`` to ``ingest`` (archived); keep the rest.

    ``origin`` is the run's (:func:`release_origin`): its organisation chooses the prefix,
    the key and the index rows. The copies are submitted from ``workspace`` (copied there
    first: the quarantine keeps its originals until they are archived); the caller removes
    ``workspace``.

    Raises
    ------
    ConfigError
        The run is an organisation's that ``ingest`` does not declare: its prefix and key are
        unknown here, and the server's would file its patients under the wrong pseudonyms
        (nothing is released; fail closed).
    """
    if origin.organisation and origin.organisation not in ingest.tenants:
        raise ConfigError(
            f"quarantined run {folder.name} is organisation {origin.organisation}'s, which "
            "the settings do not declare ([organisations]): not released"
        )
    entries = read_reasons(folder)
    result = Released(folder.name, organisation=origin.organisation)
    copies = [e for e in entries if e.get("file") and (folder / str(e["file"])).is_file()]
    result.not_copied = len(entries) - len(copies)
    result.submitted = len(copies)
    if not copies:
        return result
    inbox = workspace / "release"
    inbox.mkdir(mode=0o700)
    uploads = []
    for number, entry in enumerate(copies):
        target = inbox / f"{number:06d}.dcm"
        shutil.copyfile(folder / str(entry["file"]), target)
        uploads.append(target)
    outcomes = ingest.process(uploads, workspace, origin, archive=True)
    failing: Counter[str] = Counter()
    studies: set[str] = set()
    gone: set[str] = set()
    for entry, outcome in zip(copies, outcomes, strict=True):
        if outcome.ok:
            gone.add(str(entry["file"]))
            if outcome.record is not None:
                studies.add(outcome.record.text("StudyInstanceUID"))
        else:
            entry["reason"] = outcome.outcome.reason
            failing[outcome.outcome.reason] += 1
    kept = [e for e in entries if str(e.get("file", "")) not in gone or not e.get("file")]
    for name in gone:
        (folder / name).unlink(missing_ok=True)
    if kept:
        temporary = folder / f".{REASONS_NAME}.tmp"
        temporary.write_text(json.dumps(kept, indent=2), encoding="utf-8")
        os.replace(temporary, folder / REASONS_NAME)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        result.removed = True
    result.released = len(copies) - sum(failing.values())
    result.still_failing = dict(failing)
    result.pseudo_study_uids = sorted(studies - {""})
    return result
