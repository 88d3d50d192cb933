"""``dicomveil retention run [--dry-run]``: remove what the ``[retention]`` policy expires.

``retention run --config FILE`` reads the ``[retention]`` table of FILE (periods per store,
per organisation for the archive; see :mod:`dicomveil.retention.policy`) and its ``[server]``
table for where the archive, index and vault are (as ``serve`` does; ``--database URL`` or
``DICOMVEIL_DATABASE_URL`` names the shared database, whose audit chain then records the
run). It removes expired
archive studies (objects and index rows, vault rows when ``vault = true``), quarantined runs,
stale spool folders, and seals old audit entries into a segment. ``--dry-run`` lists what would
go and changes nothing. Every run, dry or not, is audited (``retention.run``) with the same
value-free report: pseudonymous study UIDs, run ids, counts and ages.

Exit status: 0 done (or listed), 1 a store failed, 2 usage error.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from dicomveil.cli.audit import Database
from dicomveil.cli.common import EXIT_FAILED, out_console, show
from dicomveil.cli.vault import JsonFlag, cli_errors, notice

if TYPE_CHECKING:
    from dicomveil.audit import AuditLog
    from dicomveil.retention import RetentionPolicy
    from dicomveil.retention.stores import StoreReport
    from dicomveil.settings import CoreSettings

__all__ = ["RETENTION_EVENT", "register", "retention_app"]

RETENTION_EVENT: Final = "retention.run"

retention_app = typer.Typer(
    help="Remove what the [retention] policy of --config expires: archive studies, "
    "quarantined runs, stale spool folders; seal old audit entries. Audited.",
    no_args_is_help=True,
)


@retention_app.command("run")
def run(
    config: Annotated[
        Path,
        typer.Option(
            "--config", exists=True, dir_okay=False, help="TOML file with a \\[retention] table."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go; change nothing.")
    ] = False,
    actor: Annotated[str | None, typer.Option(help="Who runs it (default: the OS user).")] = None,
    database: Database = None,
    as_json: JsonFlag = False,
) -> None:
    """Apply the retention policy once (a cron job or a systemd timer runs it daily)."""
    from dicomveil.audit import AuditLog
    from dicomveil.audit.entry import AuditEvent
    from dicomveil.reid import default_actor
    from dicomveil.retention import load_retention
    from dicomveil.settings import CoreSettings

    who = actor if actor is not None else default_actor()
    with cli_errors(EXIT_FAILED):
        policy = load_retention(config)
        settings = CoreSettings.load(config=config, database_url=database)
        audit = AuditLog.open(settings.home, notice=notice, database_url=settings.database_url)
        try:
            reports = _apply(policy, settings, audit, dry_run)
            details: dict[str, Any] = {"dry_run": dry_run}
            details |= {report.store: report.as_dict() for report in reports}
            audit.append(AuditEvent(RETENTION_EVENT, who, "success", details))
        finally:
            audit.close()
    if as_json:
        typer.echo(json.dumps(details))
        return
    _print(reports, dry_run)


def _apply(
    policy: RetentionPolicy, settings: CoreSettings, audit: AuditLog, dry_run: bool
) -> list[StoreReport]:
    """Run every store's retention; the value-free report of each."""
    from dicomveil.retention.stores import archive_store, audit_store, quarantine_store, spool_store

    now = time.time()
    return [
        archive_store(
            policy,
            settings.index_database,
            settings.archive_url,
            now,
            dry_run=dry_run,
            vault_url=settings.vault_database,
        ),
        quarantine_store(policy, settings.home / "quarantine", now, dry_run=dry_run),
        spool_store(policy, settings.home / "spool", now, dry_run=dry_run),
        audit_store(policy, audit, now, dry_run=dry_run),
    ]


def _print(reports: list[StoreReport], dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for report in reports:
        if not report.period_days:
            out_console.print(f"{report.store}: kept (no period)", highlight=False)
            continue
        what = "entries sealed" if report.store == "audit" else "item(s)"
        if "not_sealed" in report.extra:
            out_console.print(
                f"{report.store}: kept {report.items} entries older than "
                f"{report.period_days:g} days ({report.extra['not_sealed']})",
                highlight=False,
            )
            continue
        out_console.print(
            f"{report.store}: {verb} {report.items} {what} older than "
            f"{report.period_days:g} days (oldest {report.oldest_days:g} days)",
            highlight=False,
        )
        for item in report.ids:
            out_console.print(f"  {show(item)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``retention`` command group to ``app``."""
    app.add_typer(retention_app, name="retention")
