"""``dicomveil routes``: the routing queue (forwards on study completion).

``routes status [--json] [--state S] [--limit N] [--config F]`` lists queued, running, done
and dead-lettered forwards, most urgent first (STAT, URGENT, ROUTINE), newest first within a
priority; ``routes retry ID`` puts a dead-lettered forward back in the queue with fresh
attempts. Both read the queue database named by ``[routing] queue_url`` in the settings
file (default ``$DICOMVEIL_HOME/routing.sqlite``). Everything shown is pseudonymous: study
UIDs as de-identified, destination labels without credentials, value-free error reasons.

``--json`` prints one object (``format_version`` 1)::

    {"format_version": 1,
     "counts": {"queued": 0, "running": 0, "done": 2, "dead": 1},
     "forwards": [{"id": 3, "state": "dead", "rule": "pacs", "action": "cstore",
                   "destination": "PACS@10.0.0.5:104", "study_uid": "2.25....",
                   "source": "CT01", "round": 1, "priority": "STAT", "attempts": 8,
                   "instances": 500, "sent": 120, "error": "no association with ...",
                   "next_attempt_at": "...Z", "created_at": "...Z", "updated_at": "...Z"}]}
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import typer

from dicomveil.cli.common import EXIT_FAILED, fail, out_console, show, state_folder
from dicomveil.errors import ConfigError

__all__ = ["register", "routes_app"]

routes_app = typer.Typer(
    help="The routing queue: forwards of completed studies (C-STORE, STOW-RS, webhook, batch).",
    no_args_is_help=True,
)

_CONFIG = typer.Option(
    None,
    "--config",
    help="The settings TOML ([routing] queue_url; [server] home).",
    exists=True,
    dir_okay=False,
)


def register(app: typer.Typer) -> None:
    """Add the ``routes`` group to ``app``."""
    app.add_typer(routes_app, name="routes")


def _queue(config: Path | None) -> Any:
    from dicomveil.database import shared_database_url
    from dicomveil.forward.queue import ForwardQueue
    from dicomveil.forward.settings import RoutingSettings

    home, shared = state_folder(), shared_database_url()
    if config is not None:
        try:
            server = tomllib.loads(config.read_text(encoding="utf-8")).get("server", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {config}: {type(exc).__name__}") from None
        if isinstance(server, dict) and server.get("home"):
            home = Path(str(server["home"])).expanduser()
        if isinstance(server, dict) and server.get("database_url") and not shared:
            shared = str(server["database_url"])  # the environment wins, as for CoreSettings
    settings = RoutingSettings.load(config, home=home, database_url=shared)
    return ForwardQueue.open(settings.queue_url)


@routes_app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (stable keys)."),
    state: list[str] = typer.Option(
        [], "--state", help="Only forwards in this state (queued, running, done, dead)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many forwards."),
    config: Path | None = _CONFIG,
) -> None:
    """List queued, running, done and dead-lettered forwards (most urgent first)."""
    from dicomveil.forward.queue import STATES
    from dicomveil.forward.report import describe

    unknown = sorted(set(state) - set(STATES))
    if unknown:
        fail(f"unknown state {unknown[0]!r} (known: {', '.join(STATES)})")
    queue = _queue(config)
    try:
        counts = queue.counts()
        rows = [describe(job) for job in queue.jobs(state or STATES, limit)]
    finally:
        queue.close()
    if as_json:
        typer.echo(json.dumps({"format_version": 1, "counts": counts, "forwards": rows}))
        return
    from rich.table import Column, Table

    summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    names = ("id", "state", "priority", "rule", "action", "destination", "study", "sent",
             "attempts", "error")  # fmt: skip
    # folded, never cut with an ellipsis: UIDs and destinations must stay whole on a narrow
    # terminal
    columns = [Column(name, overflow="fold") for name in names]
    table = Table(*columns, title=f"forwards: {summary}")
    for row in rows:
        table.add_row(
            str(row["id"]), row["state"] + ("" if row["study_complete"] else " (streaming)"),
            row["priority"], show(row["rule"]), row["action"],
            show(row["destination"]), show(row["study_uid"]),
            f"{row['sent']}/{row['instances']}", str(row["attempts"]), show(row["error"] or ""),
        )  # fmt: skip
    out_console.print(table)


@routes_app.command("retry")
def retry(
    job_id: int = typer.Argument(..., help="The id of a dead-lettered forward."),
    config: Path | None = _CONFIG,
) -> None:
    """Put a dead-lettered forward back in the queue (fresh attempts, due now)."""
    queue = _queue(config)
    try:
        requeued = queue.retry(job_id, time.time())
    finally:
        queue.close()
    if not requeued:
        fail(f"forward {job_id} is not in the dead letters", EXIT_FAILED)
    out_console.print(f"forward {job_id} queued again")
