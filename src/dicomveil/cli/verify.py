"""``dicomveil verify``: prove that no identifying value survived de-identification."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from dicomveil.cli.common import EXIT_FAILED, EXIT_OK, err_console, fail, out_console, show
from dicomveil.cli.progress import file_progress
from dicomveil.errors import ConfigError, ProfileError
from dicomveil.pipeline.verify import Leak, VerifyResult, verify_folders
from dicomveil.profile.policy import Policy, load_policy

__all__ = ["register"]


def verify(
    originals: Path = typer.Argument(..., help="The original files (file or folder)."),
    deidentified: Path = typer.Argument(..., help="The de-identified output (file or folder)."),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Options that were applied (default: read from the outputs)."
    ),
    policy_file: Path | None = typer.Option(None, "--policy", help="The policy file applied."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    pixels: bool = typer.Option(
        False,
        "--pixels",
        help="Also read the text in the outputs' pixels (OCR; needs dicomveil[redaction]).",
    ),
    safe_harbor: bool = typer.Option(
        False,
        "--safe-harbor",
        help="Also check every output against the HIPAA Safe Harbor identifier categories "
        "(dates beyond the year, ages over 89, geography, direct identifiers, non-pseudonymous "
        "ids; see docs/safe-harbor.md).",
    ),
) -> None:
    """Search every byte of the de-identified files for identifying values of the originals.

    Every value the applied policy should have removed or replaced, at any depth and in
    private elements too, is searched in every character set the file could use, person name
    components separately, and dates in common written forms. Exit 1 with a leak report
    (attribute keywords and file names, never the values) if anything survived.

    With --pixels, the text burned into every output image is read (OCR) and compared,
    fuzzily, with the same values; an image whose pixels cannot be decoded also fails.

    With --safe-harbor, every output is also checked against the HIPAA Safe Harbor
    categories a program can check (category and keyword reported, never the value).
    """
    for path in (originals, deidentified):
        if not path.exists():
            fail(f"{path}: no such file or folder")
    policy: Policy | None = None
    if option or policy_file:
        try:
            policy = (load_policy(policy_file) if policy_file else Policy()).with_options(option)
        except ProfileError as exc:
            fail(str(exc))
    if pixels:
        try:
            from dicomveil.redaction.verify import require_ocr

            require_ocr()
        except ConfigError as exc:
            fail(str(exc))  # plain text: "dicomveil[redaction]" is printed as it is
    bar: dict[str, Any] = {}

    def on_progress(done: int, total: int) -> None:
        if not bar:  # the first file: now the total is known
            bar["advance"], progress = file_progress(err_console, total, "verifying")
            bar["shown"] = shown.enter_context(progress)
        bar["advance"]()

    with contextlib.ExitStack() as shown:
        result = verify_folders(
            originals, deidentified, policy, pixels=pixels, on_progress=on_progress
        )
    harbor = safe_harbor_report(deidentified) if safe_harbor else {}
    failed = bool(result.leaks or result.pixel_leaks or result.pixels_unread or harbor)
    if as_json:
        out_console.print_json(
            data={
                "originals": result.originals,
                "outputs": result.outputs,
                "needles": result.needles,
                "leaks": [_leak_json(leak) for leak in result.leaks],
                **(_pixel_json(result) if pixels else {}),
                **({"safe_harbor": harbor} if safe_harbor else {}),
            }
        )
    else:
        for output, findings in harbor.items():
            for finding in findings:
                err_console.print(f"[bold red]not Safe Harbor:[/] {show(output)}: {show(finding)}")
        for leak in result.leaks:
            err_console.print(
                f"[bold red]leak:[/] {show(leak.output)}: value of {show(leak.attribute)} "
                f"from {show(leak.original)}"
            )
        for leak in result.pixel_leaks:
            err_console.print(
                f"[bold red]leak in pixels:[/] {show(leak.output)}: value of "
                f"{show(leak.attribute)} from {show(leak.original)} is readable in the image"
            )
        for path in result.pixels_unread:
            err_console.print(f"[bold red]not examined:[/] {show(path)}: pixels cannot be decoded")
        verdict = "LEAKS FOUND" if failed else "no leak found"
        err_console.print(
            f"{verdict}: searched {result.outputs} output file(s) for {result.needles} "
            f"identifying value(s) of {result.originals} original(s)"
            + (f"; read the pixels of {result.images} image(s)" if pixels else "")
        )
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def safe_harbor_report(deidentified: Path) -> dict[str, list[str]]:
    """Each output (its path) with what Safe Harbor does not allow in it (category: keyword)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from dicomveil.engine.safe_harbor import safe_harbor_findings

    files = [deidentified] if deidentified.is_file() else sorted(deidentified.rglob("*"))
    report: dict[str, list[str]] = {}
    for path in files:
        if not path.is_file():
            continue
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue  # not DICOM (a report, a manifest): the byte search covers it
        findings = safe_harbor_findings(dataset)
        if findings:
            report[str(path)] = findings
    return report


def _leak_json(leak: Leak) -> dict[str, str]:
    """A leak as JSON: output, attribute keyword and original (never the value)."""
    return {"output": str(leak.output), "attribute": leak.attribute, "original": str(leak.original)}


def _pixel_json(result: VerifyResult) -> dict[str, object]:
    """The ``--pixels`` part of the JSON result (keywords and paths, never values)."""
    return {
        "images": result.images,
        "pixel_leaks": [_leak_json(leak) for leak in result.pixel_leaks],
        "pixels_unread": [str(path) for path in result.pixels_unread],
    }


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""
    app.command("verify")(verify)
