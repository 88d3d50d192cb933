"""``dicomveil verify``: prove that no identifying value survived de-identification."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from dicomveil.cli.common import EXIT_FAILED, EXIT_OK, err_console, fail, out_console, show
from dicomveil.cli.progress import file_progress
from dicomveil.errors import ProfileError
from dicomveil.pipeline.verify import verify_folders
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
) -> None:
    """Search every byte of the de-identified files for identifying values of the originals.

    Every value the applied policy should have removed or replaced, at any depth and in
    private elements too, is searched in every character set the file could use, person name
    components separately, and dates in common written forms. Exit 1 with a leak report
    (attribute keywords and file names, never the values) if anything survived.
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
    bar: dict[str, Any] = {}

    def on_progress(done: int, total: int) -> None:
        if not bar:  # the first file: now the total is known
            bar["advance"], progress = file_progress(err_console, total, "verifying")
            bar["shown"] = shown.enter_context(progress)
        bar["advance"]()

    with contextlib.ExitStack() as shown:
        result = verify_folders(originals, deidentified, policy, on_progress=on_progress)
    if as_json:
        out_console.print_json(
            data={
                "originals": result.originals,
                "outputs": result.outputs,
                "needles": result.needles,
                "leaks": [
                    {
                        "output": str(leak.output),
                        "attribute": leak.attribute,
                        "original": str(leak.original),
                    }
                    for leak in result.leaks
                ],
            }
        )
    else:
        for leak in result.leaks:
            err_console.print(
                f"[bold red]leak:[/] {show(leak.output)}: value of {show(leak.attribute)} "
                f"from {show(leak.original)}"
            )
        verdict = "LEAKS FOUND" if result.leaks else "no leak found"
        err_console.print(
            f"{verdict}: searched {result.outputs} output file(s) for {result.needles} "
            f"identifying value(s) of {result.originals} original(s)"
        )
    raise typer.Exit(EXIT_FAILED if result.leaks else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""
    app.command("verify")(verify)
