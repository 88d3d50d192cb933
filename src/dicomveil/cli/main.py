"""The ``dicomveil`` command: one Typer app, one module per command group.

``main(argv)`` returns the exit code instead of exiting, so tests call it directly:
0 success, 1 some work failed, 2 usage error.
"""

from __future__ import annotations

import sys

import click
import typer

from dicomveil import __version__
from dicomveil.errors import DicomveilError

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="dicomveil",
    help=(
        "De-identify DICOM per PS3.15 Annex E, keep a secured way back, and ship studies "
        "to the cloud.\n\nStart with: dicomveil deid SOURCE DEST"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dicomveil {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """dicomveil: de-identification for DICOM."""


def _register() -> None:
    from dicomveil.cli import deid, demo, keys, profile, verify

    for module in (deid, verify, keys, profile, demo):
        module.register(app)
    for name in ("reidentify", "audit", "vault"):
        try:
            module = __import__(f"dicomveil.cli.{name}", fromlist=["register"])
        except ImportError:  # pragma: no cover - optional command group not present
            continue
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` and return the exit code."""
    try:
        result = app(args=argv, prog_name="dicomveil", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except DicomveilError as exc:
        from dicomveil.cli.common import report_error

        return report_error(exc)
    return int(result) if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
