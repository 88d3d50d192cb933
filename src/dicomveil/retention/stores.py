"""Finding and removing what has expired, store by store (value-free reports).

Every function takes ``now`` (seconds since the epoch) and ``dry_run``: a dry run lists what
would go and changes nothing. What they return is safe to print and to audit: pseudonymous
Study Instance UIDs, run ids, counts and ages, never a path under the spool or quarantine,
never an original value.

- **archive**: a study's age is the time since the archive last received a new instance of
  it (``index_study_received``). Expired studies go with
  :func:`dicomveil.index.erasure.erase_archive` (objects, then index rows: what
  ``erase --archive`` does), and their vault rows with
  :func:`dicomveil.vault.erasure.erase_studies` when the policy says so. A study indexed
  before the received table existed has no time: the first (non-dry) run stamps it with
  ``now``, so it ages from then (``unstamped`` counts them).
- **quarantine**: a run's age is its ``reasons.json``'s, its period its organisation's (else
  the default); removed as ``quarantine purge`` does.
- **spool**: upload folders no live server holds, by their last change.
- **audit**: entries sealed into a segment (:mod:`dicomveil.audit.seal`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from dicomveil.audit.log import AuditLog
from dicomveil.audit.seal import count_older_than, seal_older_than
from dicomveil.index.db import make_engine, map_index_errors, write_transaction
from dicomveil.index.erasure import erase_archive
from dicomveil.index.schema import received, studies
from dicomveil.pipeline.quarantine import list_quarantine, remove_runs
from dicomveil.pipeline.staging import stale_spool
from dicomveil.retention.policy import RetentionPolicy

__all__ = ["StoreReport", "audit_store", "archive_store", "quarantine_store"]

_DAY: Final = 86400.0
_CHUNK: Final = 500
"""Studies erased per transaction (SQLite allows 999 parameters per statement by default)."""


@dataclass(slots=True)
class StoreReport:
    """What expired in one store (and went, unless a dry run)."""

    store: str
    period_days: float
    items: int = 0
    oldest_days: float = 0.0
    ids: list[str] = field(default_factory=list)
    """Pseudonymous study UIDs (archive) or run ids (quarantine); nothing for the others."""
    extra: dict[str, Any] = field(default_factory=dict)

    def add_ages(self, ages: Sequence[float]) -> None:
        self.items += len(ages)
        if ages:
            self.oldest_days = max(self.oldest_days, round(max(ages) / _DAY, 2))

    def as_dict(self) -> dict[str, Any]:
        """The report as plain values (JSON, audit details)."""
        answer: dict[str, Any] = {
            "period_days": self.period_days,
            "items": self.items,
            "oldest_days": self.oldest_days,
        }
        if self.ids:
            answer["ids"] = self.ids
        return answer | self.extra


def _expired(
    connection: Connection, policy: RetentionPolicy, now: float, stamp: bool
) -> tuple[list[tuple[str, float]], int]:
    """``[(pseudo study UID, age)]`` of the expired studies, and how many had no time.

    A study's period is its organisation's (``index_studies.organisation``; ``NULL``, a study
    of no organisation, and an organisation without its own period take the default one).
    """
    query = select(
        studies.c.pk, studies.c.study_instance_uid, received.c.received_at, studies.c.organisation
    ).select_from(studies.outerjoin(received, received.c.study_pk == studies.c.pk))
    expired, unstamped = [], []
    for row in connection.execute(query):
        if row[2] is None:
            unstamped.append(int(row[0]))
            continue
        period = policy.archive_period(str(row[3] or ""))
        age = now - float(row[2])
        if period and age > period:
            expired.append((str(row[1]), age))
    if stamp and unstamped:
        connection.execute(
            insert(received), [{"study_pk": pk, "received_at": int(now)} for pk in unstamped]
        )
    return expired, len(unstamped)


def archive_store(
    policy: RetentionPolicy,
    index_url: str,
    storage_url: str,
    now: float,
    *,
    dry_run: bool,
    vault_url: str | None = None,
) -> StoreReport:
    """Remove the archived studies older than their organisation's period."""
    report = StoreReport("archive", policy.archive / _DAY)
    if not policy.archive and not policy.organisations:
        return report
    engine = make_engine(index_url)
    try:
        with map_index_errors("finding expired studies"), write_transaction(engine) as connection:
            expired, unstamped = _expired(connection, policy, now, stamp=not dry_run)
    finally:
        engine.dispose()
    report.add_ages([age for _uid, age in expired])
    report.ids = sorted(uid for uid, _age in expired)
    report.extra["unstamped"] = unstamped
    if not expired:
        return report
    objects, rows, vault_rows = 0, Counter[str](), Counter[str]()
    for start in range(0, len(report.ids), _CHUNK):  # bound each statement's parameters
        chunk = report.ids[start : start + _CHUNK]
        erased = erase_archive(index_url, storage_url, chunk, [], dry_run=dry_run)
        objects += erased.objects
        rows.update(erased.rows)
        if policy.vault:
            vault_rows.update(_erase_vault(vault_url, chunk, dry_run))
    report.extra["objects"] = objects
    report.extra["rows"] = dict(rows)
    if policy.vault:
        report.extra["vault_rows"] = dict(vault_rows)
    return report


def _erase_vault(vault_url: str | None, study_uids: list[str], dry_run: bool) -> dict[str, int]:
    """Remove (or count) the vault rows of ``study_uids``: they can no longer be re-identified."""
    from dicomveil.vault import open_vault
    from dicomveil.vault.erasure import erase_studies

    with open_vault(vault_url, create=False) as vault:
        return erase_studies(vault, study_uids, dry_run=dry_run).rows


def quarantine_store(
    policy: RetentionPolicy, root: Path, now: float, *, dry_run: bool
) -> StoreReport:
    """Remove the quarantined runs older than their period: their organisation's
    (``[retention.organisations.CODE] quarantine_days``), else the default one."""
    report = StoreReport("quarantine", policy.quarantine / _DAY)
    runs = []
    for run in list_quarantine(root):
        period = policy.quarantine_period(run.organisation)
        if period and now - run.created > period:
            runs.append(run)
    report.add_ages([now - r.created for r in runs])
    report.ids = [r.run_id for r in runs]
    report.extra["files"] = sum(r.copies for r in runs)
    if not dry_run and runs:
        remove_runs(root, report.ids)
    return report


def spool_store(policy: RetentionPolicy, spool: Path, now: float, *, dry_run: bool) -> StoreReport:
    """Remove what stopped servers left in the spool, older than the period."""
    report = StoreReport("spool", policy.spool / _DAY)
    if policy.spool:
        report.add_ages(stale_spool(spool, policy.spool, now, remove=not dry_run))
    return report


def audit_store(
    policy: RetentionPolicy, log: AuditLog, now: float, *, dry_run: bool
) -> StoreReport:
    """Seal the audit entries older than the period into a segment (the chain stays whole).

    The chain in a shared database (:class:`~dicomveil.audit.sql.SqlAuditLog`) is not sealed
    (sealing rewrites the file log): its old entries are counted and reported as kept
    (``not_sealed``), and the rest of the run goes on, audited as usual.
    """
    from dicomveil.audit.sql import SqlAuditLog

    report = StoreReport("audit", policy.audit / _DAY)
    if not policy.audit:
        return report
    cutoff = datetime.fromtimestamp(now - policy.audit, tz=UTC)
    if dry_run or isinstance(log, SqlAuditLog):
        report.items = count_older_than(log, cutoff)
        if isinstance(log, SqlAuditLog):
            report.extra["not_sealed"] = "the shared database's chain is not sealed"
        return report
    export = policy.audit_export or log.directory / "sealed"
    sealed = seal_older_than(log, cutoff, export)
    report.items = sealed.entries
    if sealed.entries:
        report.extra |= {
            "segment": sealed.segment,
            "first_seq": sealed.first_seq,
            "last_seq": sealed.last_seq,
            "segment_sha256": sealed.sha256,
            "last_hash": sealed.last_hash,
        }
    return report
