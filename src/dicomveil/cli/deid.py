"""``dicomveil deid``: de-identify a file or folder into a destination folder."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dicomveil.cli.common import EXIT_FAILED, EXIT_OK, err_console, fail, get_key, out_console
from dicomveil.cli.runs import build_policy, inside, open_recorder
from dicomveil.home import state_home
from dicomveil.pipeline.run import RunSummary, default_workers, discover, run_deidentification

if TYPE_CHECKING:  # the engine and the vault are imported by whoever runs them, not here
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.pipeline.recording import RunRecorder
    from dicomveil.profile.policy import Policy

__all__ = ["register"]

REPORT_NAME = "dicomveil-report.json"

HELP = """De-identify DICOM files per PS3.15 Annex E (Basic Profile plus options).

SOURCE is a file or a folder (searched recursively; DICOM is recognised by content). DEST
receives only de-identified files, laid out as PATIENT/STUDY/SERIES/INSTANCE.dcm by
pseudonym, and a PHI-free report (dicomveil-report.json). Files that cannot be made safe are
named with a reason and copied to a quarantine folder; the others are still processed.

Pseudonyms, UIDs and date shifts are keyed: the same key gives the same output on any machine.

Examples:

  dicomveil deid ./incoming ./deidentified

  dicomveil deid study/ out/ -o retain-longitudinal-modified-dates -o clean-descriptors

  dicomveil deid study/ out/ --policy teleradiology.toml --key-file /secure/pseudonym.key

Exit codes: 0 all files done, 1 some files failed, 2 usage error.
"""


def summary_dict(
    summary: RunSummary, policy: Policy, key_id: str, seconds: float
) -> dict[str, Any]:
    """Return the PHI-free run summary (what goes into DEST and to ``--json``)."""
    from dicomveil import __ps315_edition__, __version__
    from dicomveil.pipeline.quarantine import input_sha256

    return {
        "tool": f"dicomveil {__version__}",
        "ps315_edition": __ps315_edition__,
        "run_id": summary.run_id,
        "policy": policy.name,
        "options": sorted(o.value for o in policy.options),
        "key_id": key_id,
        "files": {
            "total": summary.total,
            "ok": summary.ok,
            "failed": summary.failed,
            "skipped": summary.skipped,
        },
        "duplicates": summary.duplicates,
        "bytes_written": summary.bytes_written,
        "seconds": round(seconds, 3),
        "operations": dict(sorted(summary.operations.items())),
        "flags": dict(sorted(summary.flags.items())),
        "failures": [
            {"input_sha256": input_sha256(o.source), "reason": o.reason} for o in summary.failures
        ],
    }


def deid(
    source: Path = typer.Argument(
        ..., help="A DICOM file or a folder of them.", show_default=False
    ),
    dest: Path = typer.Argument(..., help="Destination folder for de-identified files."),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-o",
        help="A PS3.15 option, repeatable: retain-safe-private, retain-uids, "
        "retain-device-identity, retain-institution-identity, retain-patient-characteristics, "
        "retain-longitudinal-full-dates, retain-longitudinal-modified-dates, clean-descriptors, "
        "clean-structured-content, clean-graphics, clean-pixel-data.",
    ),
    policy_file: Path | None = typer.Option(
        None, "--policy", help="TOML policy file (options, per-tag overrides, private rules)."
    ),
    key_file: Path | None = typer.Option(
        None,
        "--key-file",
        help="Pseudonym key file (one line). Default: $DICOMVEIL_KEY, else the state folder's key.",
    ),
    workers: int = typer.Option(
        0, "--workers", "-j", min=0, help="Worker processes (0 = one per core)."
    ),
    quarantine: Path | None = typer.Option(
        None,
        "--quarantine",
        help="Where failed inputs are copied (default: $DICOMVEIL_HOME/quarantine/RUN_ID).",
    ),
    organization: str | None = typer.Option(
        None, "--org", help="Prefix of patient pseudonyms, e.g. an organisation code."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    fsync: bool = typer.Option(False, "--fsync", help="fsync every output file (slower)."),
    no_vault: bool = typer.Option(
        False,
        "--no-vault",
        help="Do not record the way back in the re-identification vault (one-way export).",
    ),
) -> None:
    if not source.exists():
        fail(f"{source}: no such file or folder")
    if inside(dest, source) and source.is_dir():
        fail("DEST must not be inside SOURCE")
    if quarantine is not None and inside(quarantine, dest):
        fail("the quarantine folder must not be inside DEST (it holds originals)")
    policy = build_policy(option, policy_file, organization)
    key = get_key("pseudonym", key_file)
    n_workers = workers or default_workers()

    paths = list(discover(source))
    started = time.perf_counter()
    run_id = uuid.uuid4().hex
    recorder: RunRecorder | None = None
    advance, progress = _progress(len(paths))
    shown = contextlib.ExitStack()

    def open_records() -> None:  # runs while the workers start (nothing is processed yet)
        nonlocal recorder
        recorder = open_recorder(run_id, policy, key.id, len(paths), use_vault=not no_vault)
        shown.enter_context(progress)  # its refresh thread starts after the workers fork

    def on_outcome(outcome: FileOutcome) -> None:
        advance()
        assert recorder is not None
        recorder.add(outcome)
        if outcome.status == "failed":
            err_console.print(f"[red]failed:[/] {outcome.source}: {outcome.reason}")

    with shown:
        try:
            summary = run_deidentification(
                paths,
                dest,
                policy,
                key.secret,
                workers=n_workers,
                fsync=fsync,
                on_outcome=on_outcome,
                run_id=run_id,
                before=open_records,
            )
        except BaseException as exc:  # an interrupted run still records what it finished
            if recorder is not None:
                recorder.__exit__(type(exc), exc, exc.__traceback__)
            raise
        assert recorder is not None
        counts = {"ok": summary.ok, "failed": summary.failed, "skipped": summary.skipped}
        counts["duplicates"] = summary.duplicates
        recorder.finish(counts, failed=bool(summary.failed))
    seconds = time.perf_counter() - started
    if summary.failures:
        from dicomveil.pipeline.quarantine import quarantine_failures

        folder = quarantine or state_home() / "quarantine" / summary.run_id
        quarantine_failures(summary.failures, folder)
        err_console.print(f"{summary.failed} failed file(s) copied to {folder}")
    info = summary_dict(summary, policy, key.id, seconds)
    (dest / REPORT_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if as_json:
        out_console.print_json(data=info)
    else:
        rate = summary.total / seconds if seconds else 0.0
        err_console.print(
            f"{summary.ok} de-identified, {summary.failed} failed, {summary.skipped} skipped"
            + (f", {summary.duplicates} duplicate(s)" if summary.duplicates else "")
            + f" of {summary.total} file(s) in {seconds:.1f} s ({rate:.0f} files/s) -> {dest}"
        )
        for flag, count in sorted(summary.flags.items()):
            err_console.print(f"[yellow]flag:[/] {flag}: {count} file(s)")
    raise typer.Exit(EXIT_FAILED if summary.failed else EXIT_OK)


def _progress(total: int) -> tuple[Callable[[], None], contextlib.AbstractContextManager[Any]]:
    """A progress bar on stderr when it is a terminal (rich is imported only then)."""
    if not err_console.is_terminal:
        return lambda: None, contextlib.nullcontext()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("de-identifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    task = progress.add_task("deid", total=total)
    return lambda: progress.update(task, advance=1), progress


def register(app: typer.Typer) -> None:
    """Add ``deid`` to ``app``."""
    app.command("deid", help=HELP)(deid)
