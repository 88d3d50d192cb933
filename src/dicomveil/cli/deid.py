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

from dicomveil.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    err_console,
    fail,
    get_key,
    notice,
    out_console,
    show,
    state_folder,
)
from dicomveil.cli.organisations import CONFIG_OPTION, organisation_of
from dicomveil.cli.runs import build_policy, check_folder, inside, open_recorder
from dicomveil.pipeline.quarantine import DEFAULT_LIMITS, QuarantineLimits, sweep_quarantine
from dicomveil.pipeline.run import RunSummary, default_workers, run_deidentification
from dicomveil.pipeline.sources import Inputs, find_inputs

if TYPE_CHECKING:  # the engine and the vault are imported by whoever runs them, not here
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.pipeline.recording import RunRecorder
    from dicomveil.profile.policy import Policy

__all__ = ["register"]

REPORT_NAME = "dicomveil-report.json"

HELP = """De-identify DICOM files per PS3.15 Annex E (Basic Profile plus options).

SOURCE is a file or a folder (searched recursively; DICOM is recognised by content). Only
regular files are read: FIFOs, devices, sockets, folders that cannot be listed and symbolic
links leading outside SOURCE (or to folders) are not read, and each is named. DEST receives
only de-identified files, laid out as PATIENT/STUDY/SERIES/INSTANCE.dcm by pseudonym, and a
PHI-free report (dicomveil-report.json). Files that cannot be made safe are named with a
reason and copied to a quarantine folder (named by content hash; non-DICOM files are listed,
not copied); the others are still processed. Quarantined runs older than --quarantine-days
are removed when a run starts; see `dicomveil quarantine list`.

Pseudonyms, UIDs and date shifts are keyed: the same key gives the same output on any machine.

Examples:

  dicomveil deid ./incoming ./deidentified

  dicomveil deid study/ out/ -o retain-longitudinal-modified-dates -o clean-descriptors

  dicomveil deid study/ out/ --policy teleradiology.toml --key-file /secure/pseudonym.key

Exit codes: 0 all files done, 1 some files failed or could not be read, 2 usage error
(checked before any work: missing SOURCE, DEST a file or not writable, ...).
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
        "fast_path_fallbacks": summary.fallbacks,
        "fast_path_errors": summary.fast_path_errors,
        "bytes_written": summary.bytes_written,
        "seconds": round(seconds, 3),
        "operations": dict(sorted(summary.operations.items())),
        "flags": dict(sorted(summary.flags.items())),
        "failures": [
            {"input_sha256": input_sha256(o.source), "reason": o.reason} for o in summary.failures
        ],
    }


def _setting(default: float, flag: str, text: str) -> Any:
    """A quarantine setting: a flag, or ``DICOMVEIL_<FLAG>`` in the environment."""
    envvar = "DICOMVEIL_" + flag.lstrip("-").replace("-", "_").upper()
    return typer.Option(default, flag, min=0, envvar=envvar, show_envvar=True, help=text)


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
        "clean-structured-content, clean-graphics, clean-pixel-data; safe-harbor (HIPAA).",
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
    quota_bytes: int = _setting(
        DEFAULT_LIMITS.max_bytes,
        "--quarantine-max-bytes",
        "Most bytes the quarantine holds; failed inputs past it are listed, not copied.",
    ),
    quota_files: int = _setting(
        DEFAULT_LIMITS.max_files, "--quarantine-max-files", "Most files the quarantine holds."
    ),
    retention_days: float = _setting(
        DEFAULT_LIMITS.retention_days,
        "--quarantine-days",
        "Quarantined runs older than this are removed when a run starts (0 = keep).",
    ),
    organization: str | None = typer.Option(
        None,
        "--org",
        metavar="CODE",
        help="Organisation: an organisation --config declares (\\[organisations.CODE]) brings "
        "its pseudonym prefix and its own key, and its quarantined inputs are its own; a code "
        "no configuration declares is only the patient pseudonym prefix (with a warning).",
    ),
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    fsync: bool = typer.Option(False, "--fsync", help="fsync every output file (slower)."),
    no_vault: bool = typer.Option(
        False,
        "--no-vault",
        help="Do not record the way back in the re-identification vault (one-way export).",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="De-identify in a temporary folder and report what a run would do (counts, what "
        "would be quarantined, the output layout); writes nothing to DEST, the vault, the "
        "audit log or the quarantine.",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Name every skipped and flagged file too."
    ),
) -> None:
    if not source.exists() and not source.is_symlink():
        fail(f"{source}: no such file or folder")
    if inside(dest, source) and source.is_dir():
        fail("DEST must not be inside SOURCE")
    if quarantine is not None and inside(quarantine, dest):
        fail("the quarantine folder must not be inside DEST (it holds originals)")
    home = state_folder(create=not dry_run)
    limits = QuarantineLimits(quota_bytes, quota_files, retention_days)
    root = home / "quarantine"
    if not dry_run:  # every folder the run writes to, before any work
        if quarantine is None:
            check_folder(root, "the quarantine folder")
            root.chmod(0o700)
        else:
            check_folder(quarantine, "the quarantine folder", create=False)
        check_folder(dest, "DEST")
    else:
        check_folder(dest, "DEST", create=False)
    org = organisation_of(organization, config) if organization is not None else None
    policy = build_policy(option, policy_file, org.prefix if org is not None else None)
    if dry_run:
        from dicomveil.cli.deid_dry import dry_run_key

        key = dry_run_key(key_file, home)
    else:
        key = get_key("pseudonym", key_file)
    if org is not None:
        key = org.key(key)
    if quarantine is None and retention_days > 0 and not dry_run:
        swept = sweep_quarantine(root, retention_days)
        if swept:
            notice(f"removed {len(swept)} quarantined run(s) older than {retention_days:g} days")

    inputs = find_inputs(source)
    for skipped in inputs.skipped:
        err_console.print(f"[yellow]not read:[/] {show(skipped.path)}: {show(skipped.reason)}")
    if dry_run:
        from dicomveil.cli.deid_dry import dry_run as run_dry

        run_dry(inputs, policy, key, workers or default_workers(), as_json=as_json)
    run = _Run(inputs, policy, key.id, verbose, use_vault=not no_vault)
    run.organisation = org.code if org is not None else None
    summary = run.process(dest, key.secret, workers or default_workers(), fsync)
    outcome = run.quarantine(summary, quarantine or root / summary.run_id, limits, root)
    info = summary_dict(summary, policy, key.id, run.seconds)
    info.update(run.extra(summary, outcome))
    try:
        (dest / REPORT_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"the report could not be written to DEST: {exc.strerror}", EXIT_FAILED)
    if as_json:
        out_console.print_json(data=info)
    else:
        _print_summary(summary, len(inputs.skipped), run.seconds, dest)
    bad = summary.failed or inputs.skipped or info["quarantine"]["error"]
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


def _print_summary(summary: RunSummary, not_read: int, seconds: float, dest: Path) -> None:
    rate = summary.total / seconds if seconds else 0.0
    line = f"{summary.ok} de-identified, {summary.failed} failed, {summary.skipped} skipped"
    if summary.duplicates:
        line += f", {summary.duplicates} duplicate(s)"
    if not_read:
        line += f", {not_read} not read"
    if summary.fallbacks:
        line += f", {summary.fallbacks} by the reference path"
        if summary.fast_path_errors:
            line += f" ({summary.fast_path_errors} after a fast-path error)"
    err_console.print(
        f"{line} of {summary.total + not_read} file(s) in {seconds:.1f} s "
        f"({rate:.0f} files/s) -> {show(dest)}"
    )
    for flag, count in sorted(summary.flags.items()):
        err_console.print(f"[yellow]flag:[/] {show(flag)}: {count} file(s)")


class _Run:
    """One ``deid`` run: records (vault, audit), the terminal, the quarantine."""

    def __init__(
        self, inputs: Inputs, policy: Policy, key_id: str, verbose: bool, *, use_vault: bool
    ) -> None:
        self.inputs, self.policy, self.key_id = inputs, policy, key_id
        self.verbose, self.use_vault = verbose, use_vault
        self.flagged: list[FileOutcome] = []
        self.seconds = 0.0
        self.organisation: str | None = None
        """The declared organisation the run is for (its start entry, its quarantine)."""

    def process(self, dest: Path, secret: bytes, workers: int, fsync: bool) -> RunSummary:
        """De-identify every input into ``dest``, recording and showing each outcome."""
        paths = self.inputs.files
        started = time.perf_counter()
        run_id = uuid.uuid4().hex
        recorder: RunRecorder | None = None
        advance, progress = _progress(len(paths), "de-identifying")
        shown = contextlib.ExitStack()

        def open_records() -> None:  # runs while the workers start (nothing is processed yet)
            nonlocal recorder
            recorder = open_recorder(
                run_id,
                self.policy,
                self.key_id,
                len(paths),
                use_vault=self.use_vault,
                organisation=self.organisation,
            )
            shown.enter_context(progress)  # its refresh thread starts after the workers fork

        def on_outcome(outcome: FileOutcome) -> None:
            advance()
            assert recorder is not None
            recorder.add(outcome)
            self.show(outcome)

        with shown:
            try:
                summary = run_deidentification(
                    paths,
                    dest,
                    self.policy,
                    secret,
                    workers=workers,
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
            if self.inputs.skipped:  # paths under SOURCE never read (special files, ...)
                counts["not_read"] = len(self.inputs.skipped)
            recorder.finish(counts, failed=bool(summary.failed or self.inputs.skipped))
        self.seconds = time.perf_counter() - started
        return summary

    def show(self, outcome: FileOutcome) -> None:
        """Name a failed file always, a skipped or flagged one with ``--verbose``."""
        if outcome.status == "failed":
            err_console.print(f"[red]failed:[/] {show(outcome.source)}: {show(outcome.reason)}")
        elif outcome.flags:
            self.flagged.append(outcome)
        if not self.verbose:
            return
        if outcome.status == "skipped":
            err_console.print(f"[yellow]skipped:[/] {show(outcome.source)}: {show(outcome.reason)}")
        elif outcome.status == "ok" and outcome.flags:
            err_console.print(
                f"[yellow]flagged:[/] {show(outcome.source)} -> {show(outcome.output)}: "
                f"{show(', '.join(outcome.flags))}"
            )

    def quarantine(
        self, summary: RunSummary, folder: Path, limits: QuarantineLimits, root: Path
    ) -> dict[str, Any]:
        """Quarantine the failed inputs; return the report's ``quarantine`` part.

        A quarantine that cannot be written is reported as such (the report is still
        written, and the run exits 1).
        """
        done: dict[str, Any] = {"copied": 0, "not_copied": {}, "error": ""}
        if not summary.failures and not self.inputs.skipped:
            return done
        from dicomveil.pipeline.quarantine import quarantine_run

        not_read = [(s.path, s.reason) for s in self.inputs.skipped]
        try:
            result = quarantine_run(
                summary.failures,
                folder,
                limits=limits,
                root=root if folder.parent == root else folder,
                not_read=not_read,
                organisation=self.organisation,
            )
        except OSError as exc:
            done["error"] = f"the quarantine could not be written ({exc.strerror})"
            err_console.print(f"[bold red]error:[/] {show(done['error'])}: {show(folder)}")
            return done
        done.update(copied=result.copied, not_copied=result.not_copied)
        if summary.failures:
            err_console.print(
                f"{summary.failed} failed file(s): {result.copied} copied to {show(folder)}"
            )
        for why, count in sorted(result.not_copied.items()):
            err_console.print(f"[yellow]not copied:[/] {count} file(s): {show(why)}")
        return done

    def extra(self, summary: RunSummary, quarantined: dict[str, Any]) -> dict[str, Any]:
        """The report's parts about skipped, flagged and not-read paths (PHI-free: inputs by
        content hash, outputs by their pseudonymous key, paths not read by reason only)."""
        from dicomveil.pipeline.quarantine import input_sha256

        reasons: dict[str, int] = {}
        for skipped in self.inputs.skipped:
            reasons[skipped.reason] = reasons.get(skipped.reason, 0) + 1
        return {
            "not_read": {"count": len(self.inputs.skipped), "reasons": reasons},
            "skipped": [
                {"input_sha256": input_sha256(o.source), "reason": o.reason} for o in summary.skips
            ],
            "flagged": [{"output": o.output, "flags": o.flags} for o in self.flagged],
            "quarantine": quarantined,
        }


def _progress(
    total: int, what: str
) -> tuple[Callable[[], None], contextlib.AbstractContextManager[Any]]:
    """A progress bar on stderr when it is a terminal (see :mod:`dicomveil.cli.progress`)."""
    from dicomveil.cli.progress import file_progress

    return file_progress(err_console, total, what)


def register(app: typer.Typer) -> None:
    """Add ``deid`` to ``app``."""
    app.command("deid", help=HELP)(deid)
