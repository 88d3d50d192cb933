"""``dicomveil quarantine``: the quarantined runs (list, show one, release one, purge old ones).

Everything printed is PHI-free: runs by id, copies by content hash, reasons as the run
recorded them. Source paths (which may hold a patient's name) are shown only on request,
with ``show --paths``, on this side's terminal.
"""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import typer

from dicomveil.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    err_console,
    fail,
    out_console,
    show,
    state_folder,
)
from dicomveil.pipeline.quarantine import (
    DEFAULT_LIMITS,
    list_quarantine,
    read_reasons,
    sweep_quarantine,
)

__all__ = ["quarantine_app", "register"]

quarantine_app = typer.Typer(
    help="List, show, release and purge the quarantine: inputs that could not be made safe, kept "
    "under $DICOMVEIL_HOME/quarantine/RUN_ID with their reasons (copies named by content "
    "hash; non-DICOM inputs listed, not copied). Runs older than the retention period "
    f"({DEFAULT_LIMITS.retention_days:g} days by default, --quarantine-days of deid) are "
    "removed when a deid run starts.",
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print JSON on stdout.")


def _root() -> Path:
    return state_folder() / "quarantine"


def _date(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


@quarantine_app.command("list")
def list_(as_json: bool = _JSON) -> None:
    """List the quarantined runs, oldest first: id, organisation (tenant; "-": none), date,
    inputs, copies and their size."""
    runs = list_quarantine(_root())
    if as_json:
        data = [
            {
                "run_id": r.run_id,
                "organisation": r.organisation,
                "created": _date(r.created),
                "inputs": r.inputs,
                "copies": r.copies,
                "bytes": r.bytes,
            }
            for r in runs
        ]
        out_console.print_json(data=data)
        return
    if not runs:
        err_console.print("the quarantine is empty")
        return
    width = max(len("ORG"), *(len(r.organisation or "-") for r in runs))
    out_console.print(
        f"{'RUN':{max(len(r.run_id) for r in runs)}}  {'ORG':{width}}  {'CREATED':20}  "
        f"{'INPUTS':>15}  {'COPIES':>13}  {'SIZE':>13}",
        highlight=False,
    )
    for run in runs:
        out_console.print(
            f"{show(run.run_id)}  {show(run.organisation or '-'):{width}}  {_date(run.created)}  "
            f"{run.inputs:>6} input(s)  {run.copies:>6} copied  {run.bytes / 1e6:10.1f} MB",
            highlight=False,
        )
    total = sum(r.bytes for r in runs)
    err_console.print(f"{len(runs)} run(s), {total / 1e6:.1f} MB in {show(_root())}")


@quarantine_app.command("show")
def show_run(
    run_id: str = typer.Argument(..., help="The run (or batch) id.", show_default=False),
    paths: bool = typer.Option(
        False, "--paths", help="Show the source paths too (they may hold names: not PHI-free)."
    ),
    as_json: bool = _JSON,
) -> None:
    """Show one run's quarantined inputs: copy (by content hash), size and reason."""
    found = {r.run_id: r for r in list_quarantine(_root())}
    if run_id not in found:
        fail(f"no quarantined run {run_id} (see: dicomveil quarantine list)")
    entries = read_reasons(_root() / run_id)
    keys = ("file", "sha256", "size", "reason", "not_copied") + (("source",) if paths else ())
    rows = [{k: e.get(k, "") for k in keys} for e in entries]
    if as_json:
        whose = found[run_id].organisation
        out_console.print_json(data={"run_id": run_id, "organisation": whose, "inputs": rows})
        return
    for row in rows:
        copy = row["file"] or f"(not copied: {row['not_copied']})"
        line = f"{show(row['sha256'][:16] or '-'):16}  {row['size']:>10}  {show(copy)}"
        out_console.print(f"{line}  {show(row['reason'])}")
        if paths:
            out_console.print(f"    source: {show(row['source'])}")
    whose = f" of organisation {show(found[run_id].organisation)}"
    err_console.print(
        f"{len(rows)} input(s){whose if found[run_id].organisation else ''} in "
        f"{show(_root() / run_id)}"
    )


@quarantine_app.command("purge")
def purge(
    older_than: float = typer.Option(
        DEFAULT_LIMITS.retention_days,
        "--older-than",
        min=0,
        help="Remove the runs older than this many days (0: every run).",
    ),
) -> None:
    """Remove quarantined runs older than --older-than days (what deid does at start-up)."""
    removed = sweep_quarantine(_root(), older_than)
    err_console.print(f"removed {len(removed)} quarantined run(s) older than {older_than:g} days")
    raise typer.Exit(EXIT_OK)


@quarantine_app.command("release")
def release(
    run_id: str = typer.Argument(..., help="The run (or batch) id.", show_default=False),
    config: Path | None = typer.Option(
        None,
        "--config",
        exists=True,
        dir_okay=False,
        help="TOML file whose [server] table names the archive, index, vault and policy.",
    ),
    actor: str | None = typer.Option(None, help="Who releases (default: the OS user)."),
    as_json: bool = _JSON,
) -> None:
    """Submit a run's quarantined originals again, under the current policy, to the archive.

    A run recorded as an organisation's (tenant's) is released for it: its pseudonym prefix
    and own key, as --config's [organisations] table declares them. Copies now archived
    leave the quarantine; the others stay with this attempt's reason. Audited
    (quarantine.release) with counts and pseudonymous study UIDs only.
    """
    from dicomveil.errors import ConfigError, DicomveilError
    from dicomveil.pipeline.quarantine_release import release_origin, release_run
    from dicomveil.reid import default_actor
    from dicomveil.runtime import Runtime
    from dicomveil.settings import CoreSettings

    if run_id not in {r.run_id for r in list_quarantine(_root())}:
        fail(f"no quarantined run {run_id} (see: dicomveil quarantine list)")
    who = f"cli:{actor if actor is not None else default_actor()}"
    try:
        origin = release_origin(_root() / run_id, "release", who)
        with Runtime.open(CoreSettings.load(config=config)) as runtime:
            workspace = runtime.workspace()
            try:
                done = release_run(runtime.ingest, _root() / run_id, workspace, origin)
            finally:
                shutil.rmtree(workspace, ignore_errors=True)
            runtime.audit.append(done.event(who))
    except ConfigError as exc:  # the settings (an undeclared organisation, a bad file)
        fail(str(exc))
    except DicomveilError as exc:
        fail(str(exc), EXIT_FAILED)
    if as_json:
        out_console.print_json(data=done.details())
    else:
        out_console.print(
            f"released {done.released} of {done.submitted} quarantined copies of "
            f"{show(run_id)} into {len(done.pseudo_study_uids)} studies",
            highlight=False,
        )
        for reason, count in done.still_failing.items():
            out_console.print(f"  still failing: {show(reason)} ({count})", highlight=False)
    if done.submitted and not done.released:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the ``quarantine`` command group to ``app``."""
    app.add_typer(quarantine_app, name="quarantine")
