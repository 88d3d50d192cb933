"""The ``dicomveil`` command: one Typer app, one module per command group.

``main(argv)`` returns the exit code instead of exiting, so tests call it directly:
0 success, 1 some work failed, 2 usage error.
"""

from __future__ import annotations

import sys

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
    from dicomveil.cli import (
        audit,
        batch,
        deid,
        demo,
        keys,
        profile,
        reidentify,
        vault,
        verify,
    )

    for module in (deid, batch, verify, reidentify, audit, vault, keys, profile, demo):
        module.register(app)
    vault.register_key_commands(keys.keys_app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` and return the exit code."""
    try:
        app(args=argv, prog_name="dicomveil")
    except SystemExit as exc:  # typer/click end every command this way
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except DicomveilError as exc:
        from dicomveil.cli.common import report_error

        return report_error(exc)
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
