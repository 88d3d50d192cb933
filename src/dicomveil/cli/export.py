"""``dicomveil export parquet DEST_URL [--since TIMESTAMP] [--org CODE]``: the index for
analytics.

Writes the de-identified index (patients, studies, series, instances; pseudonymous values
only) as Parquet files partitioned by study date to a folder or any storage URL, only the
instances indexed since the last export to the same destination (its watermark is kept there,
in ``_dicomveil_export.json``); ``--since`` exports those indexed at or after an instant
instead. ``--org CODE`` exports only the studies of that organisation (tenant), with its own
watermark (``_dicomveil_export.CODE.json``). The index is the one the settings name
(``[server] index_url``, ``DICOMVEIL_INDEX_URL``, else ``$DICOMVEIL_HOME/index.sqlite``).
Layout and rules: :mod:`dicomveil.export.parquet`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import typer

from dicomveil.cli.common import err_console, fail, out_console, state_folder

__all__ = ["export_app", "parse_since", "register"]

#: On a server database, rows written in the last seconds wait for the next run (concurrent
#: transactions may commit out of timestamp order); SQLite serialises its writers.
_SETTLE_S: Final = 30

export_app = typer.Typer(
    help="Export the de-identified index for analytics (Parquet).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the ``export`` group to ``app``."""
    app.add_typer(export_app, name="export")


def parse_since(text: str) -> int:
    """Return an ISO 8601 date or date-time as µs since the epoch (naive means UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail("--since: not an ISO 8601 date or date-time (e.g. 2026-03-01T00:00:00Z)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


@contextlib.contextmanager
def _bar() -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (instances exported of all) when it is a terminal."""
    if not err_console.is_terminal:
        yield lambda _done, _total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "export",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _check_org(code: str) -> None:
    """Exit 2 (usage) when ``code`` is not an organisation code."""
    from dicomveil.errors import ConfigError
    from dicomveil.tenants import check_code

    try:
        check_code(code)
    except ConfigError as error:
        fail(f"--org: {error}")


@export_app.command("parquet")
def parquet(
    dest_url: str = typer.Argument(
        ..., metavar="DEST_URL", help="A folder or storage URL (file://, s3://, gs://, az://)."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="TIMESTAMP",
        help="Export instances indexed at or after this ISO 8601 instant (UTC when naive), "
        "instead of those since the last export to DEST_URL.",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="The settings TOML (\\[server] index_url).",
        exists=True,
        dir_okay=False,
    ),
    organisation: str | None = typer.Option(
        None,
        "--org",
        metavar="CODE",
        help="Export only this organisation's (tenant's) studies; its own watermark.",
    ),
) -> None:
    """Write the index as Parquet (partitioned by study date), only what is new."""
    from dicomveil.database import sqlite_path
    from dicomveil.export import export_parquet
    from dicomveil.settings import CoreSettings
    from dicomveil.storage import open_store, parse_store_url

    lower = parse_since(since) if since is not None else None
    if organisation is not None:
        _check_org(organisation)
    settings = CoreSettings.load(home=state_folder(), config=config)
    index_url = settings.index_database
    local = sqlite_path(index_url) is not None or index_url.startswith("sqlite")
    options = {"sidecars": False} if parse_store_url(dest_url).scheme == "file" else {}
    with open_store(dest_url, **options) as store, _bar() as progress:
        result = export_parquet(
            index_url,
            store,
            since=lower,
            settle_us=0 if local else _SETTLE_S * 1_000_000,
            progress=progress,
            organisation=organisation,
        )
    until = datetime.fromtimestamp(result.watermark / 1_000_000, UTC)
    whose = f" of {organisation}" if organisation is not None else ""
    out_console.print(
        f"exported {result.instances} instances, {result.series} series, {result.studies} "
        f"studies, {result.patients} patients{whose} in {result.files} files to {store.url} "
        f"(up to {until.isoformat(timespec='seconds')})",
        highlight=False,
    )
