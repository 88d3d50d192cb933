"""``dicomveil audit verify`` and ``dicomveil audit export``."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated

import typer

from dicomveil.cli.common import visible
from dicomveil.cli.vault import cli_errors

__all__ = ["export", "register", "verify"]

AuditKeyFile = Annotated[
    Path | None,
    typer.Option("--audit-key-file", help="Audit key file (default: the key store's places)."),
]
Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="The shared database holding the audit chain (default: DICOMVEIL_DATABASE_URL, "
        "else the file log and the stores under the state folder).",
    ),
]


class ExportFormat(enum.StrEnum):
    """Export formats: RFC 5424 syslog lines, or DICOM PS3.15 A.5 (IHE ATNA) XML messages."""

    syslog = "syslog"
    atna = "atna"


def verify(key_file: AuditKeyFile = None, database: Database = None) -> None:
    """Verify the whole audit chain; exit 0 when it verifies, 1 naming the first bad entry."""
    from dicomveil.audit import AuditLog
    from dicomveil.home import shared_database_url

    with cli_errors():
        shared = shared_database_url(database)
        folder = AuditLog.location()
        if shared is None and not AuditLog.written_in(folder):
            typer.echo(f"no audit log yet in {visible(folder)}: nothing to verify")
            return
        log = AuditLog.open(key_file=key_file, create=False, database_url=shared)
        try:
            if not log.written():
                typer.echo("no audit entry yet in the shared database: nothing to verify")
                return
            result = log.verify()
        finally:
            log.close()
    typer.echo(str(result), err=not result.ok)
    if not result.ok:
        raise typer.Exit(1)


def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
    hostname: Annotated[
        str | None, typer.Option(help="HOSTNAME / AuditSourceID (default: this host).")
    ] = None,
    key_file: AuditKeyFile = None,
    database: Database = None,
) -> None:
    """Export every entry as syslog (RFC 5424) lines or ATNA XML messages, one per line."""
    from dicomveil.audit import AuditLog
    from dicomveil.audit import export as export_entries

    with cli_errors():
        log = AuditLog.open(key_file=key_file, create=False, database_url=database)
        lines = export_entries(log.entries(), fmt.value, hostname=hostname)
        if out is None:
            for line in lines:
                typer.echo(line)
            return
        temporary = out.with_name(out.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
        os.replace(temporary, out)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group (``verify``, ``export``) to ``app``."""
    audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
    audit_app.command("verify")(verify)
    audit_app.command("export")(export)
    app.add_typer(audit_app, name="audit")
