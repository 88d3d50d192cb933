"""``dicomveil deid --dry-run``: what a run would do, without writing anything it keeps.

Every input is de-identified as in a real run (same policy, same key, so the layout shown is
the one a run would write), into a private temporary folder whose files are removed as soon
as they are counted. Nothing is written to DEST, the vault, the audit log or the quarantine.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from dicomveil.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    err_console,
    fail,
    notice,
    out_console,
    show,
)
from dicomveil.cli.progress import file_progress
from dicomveil.keystore import LoadedKey
from dicomveil.pipeline.run import run_deidentification

if TYPE_CHECKING:
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.pipeline.sources import Inputs
    from dicomveil.profile.policy import Policy

__all__ = ["dry_run", "dry_run_key"]

SHOWN_PATIENTS = 20
"""Patients listed on the terminal (all are counted; ``--json`` lists every output)."""


def dry_run_key(key_file: Path | None, home: Path) -> LoadedKey:
    """The pseudonym key a run would use, without creating one: when there is none yet, a
    throwaway key (said so: the names shown then differ from those a real run gives)."""
    import secrets

    from dicomveil.errors import ConfigError
    from dicomveil.keystore import MissingKeyError, load_key

    try:
        return load_key("pseudonym", key_file=key_file, home=home, create=False)
    except MissingKeyError:
        notice(
            "no pseudonym key yet: this dry run uses a throwaway key, so the pseudonymous "
            "names shown are not those a real run (which creates the key) will write"
        )
        return LoadedKey("pseudonym", secrets.token_bytes(32), "throwaway key (dry run)")
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"pseudonym key: {exc.strerror or type(exc).__name__} ({exc.filename})")


def dry_run(
    inputs: Inputs, policy: Policy, key: LoadedKey, workers: int, *, as_json: bool
) -> NoReturn:
    """Report what ``deid`` would do with ``inputs``; exit 1 when files would fail."""
    from dicomveil.pipeline.quarantine import input_sha256, would_copy

    outputs: list[str] = []
    advance, progress = file_progress(err_console, len(inputs.files), "dry run")
    with tempfile.TemporaryDirectory(prefix="dicomveil-dry-run-") as folder:
        dest = Path(folder)

        def on_outcome(outcome: FileOutcome) -> None:
            advance()
            if outcome.status == "ok":
                outputs.append(outcome.output)
                with contextlib.suppress(OSError):
                    os.unlink(dest / outcome.output)
            elif outcome.status == "failed":
                err_console.print(
                    f"[red]would fail:[/] {show(outcome.source)}: {show(outcome.reason)}"
                )

        with progress:
            summary = run_deidentification(
                inputs.files, dest, policy, key.secret, workers=workers, on_outcome=on_outcome
            )
    failures = [
        {
            "input_sha256": input_sha256(o.source),
            "reason": o.reason,
            "copied": not (why := would_copy(o.source)),
            "not_copied": why,
        }
        for o in summary.failures
    ]
    patients = Counter(key.split("/", 1)[0] for key in outputs)
    studies = {tuple(key.split("/")[:2]) for key in outputs}
    series = {tuple(key.split("/")[:3]) for key in outputs}
    info: dict[str, Any] = {
        "dry_run": True,
        "files": {
            "total": summary.total,
            "ok": summary.ok,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "not_read": len(inputs.skipped),
        },
        "would_quarantine": failures,
        "not_read": sorted({s.reason for s in inputs.skipped}),
        "layout": {
            "pattern": "PATIENT/STUDY/SERIES/INSTANCE.dcm",
            "patients": len(patients),
            "studies": len(studies),
            "series": len(series),
            "instances": len(set(outputs)),
            "outputs": sorted(set(outputs)),
        },
    }
    if as_json:
        out_console.print_json(data=info)
    else:
        _print(info, patients, studies, series)
    bad = summary.failed or inputs.skipped
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


def _print(
    info: dict[str, Any],
    patients: Counter[str],
    studies: set[tuple[str, ...]],
    series: set[tuple[str, ...]],
) -> None:
    files, layout = info["files"], info["layout"]
    err_console.print(
        f"dry run: {files['ok']} would be de-identified, {files['failed']} would fail, "
        f"{files['skipped']} skipped, {files['not_read']} not read; nothing was written"
    )
    copied = sum(1 for f in info["would_quarantine"] if f["copied"])
    if files["failed"]:
        err_console.print(
            f"quarantine: {copied} file(s) would be copied, "
            f"{files['failed'] - copied} listed by hash only"
        )
    err_console.print(
        f"layout: DEST/{layout['pattern']}: {layout['patients']} patient(s), "
        f"{layout['studies']} study(ies), {layout['series']} series, "
        f"{layout['instances']} instance(s)"
    )
    for patient, count in sorted(patients.items())[:SHOWN_PATIENTS]:
        n_studies = sum(1 for s in studies if s[0] == patient)
        n_series = sum(1 for s in series if s[0] == patient)
        err_console.print(
            f"  {show(patient)}/  {n_studies} study(ies), {n_series} series, {count} instance(s)"
        )
    if len(patients) > SHOWN_PATIENTS:
        err_console.print(f"  ... and {len(patients) - SHOWN_PATIENTS} more patient(s)")
