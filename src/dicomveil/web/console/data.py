"""What the console pages show, gathered from the services (no HTML here).

Every value is PHI-free by construction: index counts, metric counters, batch states and
counts, quarantine reasons (never the quarantined files' names or source paths), audit
entries (pseudonyms, opaque ids and keyed fingerprints only).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from dicomveil.audit.entry import AuditEntry, AuditEvent
from dicomveil.errors import ConfigError, DicomveilError
from dicomveil.pipeline.quarantine import REASONS_NAME, run_organisation
from dicomveil.storage import parse_store_url
from dicomveil.web.services import Services

if TYPE_CHECKING:
    from dicomveil.pipeline.quarantine_release import Released
    from dicomveil.tokens import Token
    from dicomveil.web.console.auth import Visitor

__all__ = [
    "AuditFilter",
    "QuarantineRun",
    "archive_volume",
    "audit_entries",
    "batches",
    "ingest_counts",
    "quarantine_runs",
    "release_quarantine",
    "request_counts",
    "visible",
]

_RUN_ID: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _samples(metric: Any) -> Iterable[tuple[dict[str, str], float]]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                yield sample.labels, float(sample.value)


def ingest_counts(services: Services) -> dict[str, float]:
    """Instances received by this server process since it started, by outcome."""
    found: dict[str, float] = {}
    for labels, value in _samples(services.metrics.instances):
        outcome = labels.get("outcome", "?")
        found[outcome] = found.get(outcome, 0.0) + value
    return found


def request_counts(services: Services) -> dict[str, float]:
    """Requests answered by this server process since it started, by status class."""
    found: dict[str, float] = {}
    for labels, value in _samples(services.metrics.requests):
        status = labels.get("status", "0")
        kind = f"{status[:1]}xx"
        found[kind] = found.get(kind, 0.0) + value
    return dict(sorted(found.items()))


def archive_volume(services: Services) -> tuple[int, int] | None:
    """(used, total) bytes of the volume holding a ``file://`` archive, else ``None``."""
    try:
        url = parse_store_url(services.settings.archive_url)
    except DicomveilError:
        return None
    if url.scheme != "file":
        return None
    folder = Path(services.settings.archive_url.removeprefix("file://"))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    return usage.used, usage.total


def batches(services: Services, token: Token) -> list[dict[str, Any]]:
    """The batches ``token`` may see, newest first: every batch, or its organisation's when
    it is bound to one (as ``GET /api/v1/batches`` answers it); public status, no paths."""
    try:
        from dicomveil.web.routes.batches import list_all
    except ImportError:  # the batch pipeline is not part of this build
        return []
    from dicomveil.web.errors import HttpError

    try:
        found = list_all(services, token)
    except HttpError:  # bound to an organisation this server does not declare: none
        return []
    return [{k: v for k, v in s.items() if k != "destination"} for s in reversed(found)]


@dataclass(frozen=True, slots=True)
class QuarantineRun:
    """One run's quarantine folder: how many inputs, how many copies, why (PHI-free)."""

    run_id: str
    inputs: int
    copies: int
    reasons: dict[str, int]
    organisation: str | None = None
    """Whose inputs (tenant code); ``None``: no organisation."""


def visible(organisation: str | None, scope: str | None) -> bool:
    """Whether a quarantined run of ``organisation`` is shown to a session of ``scope``
    (the token's organisation): every run to a session bound to none, an organisation's own
    runs to its sessions (a run of no organisation, or another's: as absent)."""
    return scope is None or organisation == scope


def quarantine_root(services: Services) -> Path:
    """The folder holding each run's quarantine folder."""
    return services.settings.home / "quarantine"


def quarantine_folder(services: Services, run_id: str) -> Path:
    """The quarantine folder of ``run_id``.

    Raises
    ------
    ConfigError
        ``run_id`` is not a plain run id (a path, ``..``).
    """
    if not run_id or len(run_id) > 64 or not set(run_id) <= _RUN_ID:
        raise ConfigError("not a run id")
    return quarantine_root(services) / run_id


def quarantine_runs(services: Services, scope: str | None = None) -> list[QuarantineRun]:
    """The quarantine folders a session of ``scope`` sees (:func:`visible`), newest run id
    first (reasons counted, no file names)."""
    root = quarantine_root(services)
    runs = []
    for folder in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
        if not folder.is_dir() or not set(folder.name) <= _RUN_ID:
            continue
        organisation = run_organisation(folder)
        if not visible(organisation, scope):
            continue
        try:
            listed = json.loads((folder / REASONS_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            listed = []
        reasons = Counter(str(item.get("reason", "")) for item in listed if isinstance(item, dict))
        copies = sum(1 for item in listed if isinstance(item, dict) and item.get("file"))
        runs.append(QuarantineRun(folder.name, len(listed), copies, dict(reasons), organisation))
    return runs


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the audit page searches for (empty: anything)."""

    since: str = ""
    until: str = ""
    actor: str = ""
    event: str = ""

    def matches(self, entry: AuditEntry) -> bool:
        """Whether ``entry`` passes: time prefix range, actor substring, event prefix."""
        if self.since and entry.time[: len(self.since)] < self.since:
            return False
        if self.until and entry.time[: len(self.until)] > self.until:
            return False
        if self.actor and self.actor.lower() not in entry.actor.lower():
            return False
        return not self.event or entry.event.startswith(self.event)


def audit_entries(services: Services, wanted: AuditFilter, limit: int) -> list[AuditEntry]:
    """The newest ``limit`` entries that match ``wanted``, newest first.

    The log is read backwards from its end, so a page costs what it shows (plus the entries
    the filter skips), not the whole log. A torn last line (a write in progress) is skipped;
    entries are not authenticated here (the chain check is :meth:`AuditLog.verify`).
    """
    found: list[AuditEntry] = []
    for line in services.audit.newest_lines():
        try:
            entry = AuditEntry.parse(line)
        except ValueError:
            continue
        if wanted.matches(entry):
            found.append(entry)
            if len(found) >= limit:
                break
    return found


def release_quarantine(services: Services, folder: Path, visitor: Visitor) -> Released:
    """Release the quarantined run ``folder`` through the gateway's ingest service, audited
    as ``quarantine.release`` (see :mod:`dicomveil.pipeline.quarantine_release`).

    The release is the run's organisation's (its prefix, its own key, its index rows), as
    the run recorded it; the page checked that the session may act on it.

    Raises
    ------
    ConfigError
        The run's organisation record is unreadable (nothing released).
    """
    from dicomveil.pipeline.quarantine_release import release_origin, release_run

    actor = visitor.token.actor
    origin = release_origin(folder, "console", actor)
    workspace = services.workspace()
    try:
        done = release_run(services.ingest, folder, workspace, origin)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    details = done.event(actor)
    services.audit.append(
        AuditEvent(
            details.event,
            details.actor,
            details.outcome,
            {**details.details, "session": visitor.session.id},
        )
    )
    return done
