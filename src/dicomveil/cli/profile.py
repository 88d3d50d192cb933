"""``dicomveil profile show``: what the policy does to each attribute."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dicomveil.cli.common import fail, out_console
from dicomveil.errors import ProfileError
from dicomveil.profile.policy import Policy, load_policy
from dicomveil.profile.resolved import resolved_rows
from dicomveil.profile.table import EDITION

__all__ = ["register"]

profile_app = typer.Typer(help="Inspect de-identification profiles.", no_args_is_help=True)


@profile_app.command("show")
def show(
    option: list[str] = typer.Option([], "--option", "-o", help="A PS3.15 option (repeatable)."),
    policy_file: Path | None = typer.Option(None, "--policy", help="TOML policy file."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per attribute."),
) -> None:
    """Print the resolved action for every attribute of PS3.15 Table E.1-1.

    Columns: tag, keyword, the Basic Profile code, the code once options apply, and the
    operation dicomveil performs (with the rule it comes from).
    """
    try:
        policy = (load_policy(policy_file) if policy_file else Policy()).with_options(option)
    except ProfileError as exc:
        fail(str(exc))
    records = resolved_rows(policy)
    if as_json:
        for record in records:
            out_console.print(json.dumps(record), markup=False)
        return
    from rich.table import Table

    table = Table(
        title=f"PS3.15 {EDITION} - policy {policy.name!r}, options: "
        f"{', '.join(sorted(o.value for o in policy.options)) or 'none'}"
    )
    for column in ("tag", "keyword", "basic", "effective", "operation"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r["tag"], r["keyword"] or r["name"], r["basic"], r["effective"], r["operation"]
        )
    out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``profile`` to ``app``."""
    app.add_typer(profile_app, name="profile")
