"""The ``dicomveil`` command: one Typer app, one module per command group.

``main(argv)`` returns the exit code instead of exiting, so tests call it directly:
0 success, 1 some work failed, 2 usage error.

Command modules are imported on demand: ``dicomveil deid ...`` registers (and imports) only
``deid``, so a command pays for its own dependencies and nothing else (the batch machinery,
the vault's database layer or a web stack stay unimported). Help, ``--version`` and unknown
commands register every command.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import sys
import threading
from collections.abc import Sequence
from typing import Final, NoReturn

import typer

from dicomveil import __version__
from dicomveil.errors import DicomveilError
from dicomveil.quiet import quiet_pydicom

__all__ = ["COMMANDS", "app", "main", "register_commands", "run"]

COMMANDS: Final = (
    "deid",
    "batch",
    "verify",
    "reidentify",
    "audit",
    "vault",
    "keys",
    "profile",
    "demo",
    "serve",
    "scp",
    "tokens",
    "quarantine",
    "erase",
    "viewer",
    "routes",
    "worker",
    "export",
    "retention",
)
"""Command and group names, each registered by the module of the same name in ``cli``."""

app = typer.Typer(
    name="dicomveil",
    help=(
        "De-identify DICOM per PS3.15 Annex E, keep a secured way back, and ship studies "
        "to the cloud.\n\nStart with: dicomveil deid SOURCE DEST"
    ),
    no_args_is_help=True,
    add_completion=True,
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


def _registered() -> set[str]:
    commands = {info.name for info in app.registered_commands}
    groups = {info.name for info in app.registered_groups}
    return {name for name in commands | groups if name}


def register_commands(names: Sequence[str] = COMMANDS) -> None:
    """Register the commands ``names`` on :data:`app` (those not registered yet).

    Registering is idempotent, so code that registered a command itself (tests) can still
    call :func:`main`.
    """
    done = _registered()
    for name in names:
        if name in done:
            continue
        importlib.import_module(f"dicomveil.cli.{name}").register(app)
        done.add(name)
        if name == "keys":
            from dicomveil.cli import keys, vault

            if not any(info.name == "rotate-vault" for info in keys.keys_app.registered_commands):
                vault.register_key_commands(keys.keys_app)


def _command_of(argv: Sequence[str]) -> str | None:
    """Return the command ``argv`` runs when it names one directly, else ``None``."""
    if argv and argv[0] in COMMANDS:
        return argv[0]
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` and return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = _command_of(args)
    try:
        register_commands(COMMANDS if command is None else (command,))
        app(args=args, prog_name="dicomveil")
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
    """Console-script entry point (the process's: global settings are made here only, so
    calling :func:`main` in a test process leaves pydicom's settings alone)."""
    quiet_pydicom()
    _exit(main())


def _exit(code: int) -> NoReturn:
    """End the process without tearing the interpreter down.

    Everything a command writes is flushed and closed when it returns; what is left at exit
    is freeing every imported module, which costs a short command up to a fifth of its time
    (SQLAlchemy's alone takes 0.1 s). Exit handlers still run and the standard streams are
    flushed. While a non-daemon thread is alive (an executor someone did not shut down), the
    usual exit is taken, which waits for it.
    """
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(code)
