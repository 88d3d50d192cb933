"""Shared pieces of the command line: consoles, key loading, error reporting."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from dicomveil.errors import ConfigError, DicomveilError
from dicomveil.keystore import KeyName, LoadedKey, load_key

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "err_console", "fail", "get_key", "out_console"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Progress, notices and errors go to stderr; stdout is for results (``--json``).
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line (never a traceback) and exit with ``code``."""
    import typer

    err_console.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


def notice(message: str) -> None:
    """Print a one-line notice to stderr."""
    err_console.print(f"[yellow]notice:[/] {message}", markup=True)


def get_key(name: KeyName, key_file: Path | None = None) -> LoadedKey:
    """Load a key as the commands do (file, environment, state folder), or exit 2."""
    try:
        return load_key(name, key_file=key_file, notice=notice)
    except ConfigError as exc:
        fail(str(exc))


def report_error(exc: DicomveilError) -> int:
    """Print a dicomveil error and return the exit code it deserves."""
    err_console.print(f"[bold red]error:[/] {exc}", markup=True)
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def is_tty() -> bool:
    """Tell whether stderr is a terminal (progress bars only then)."""
    return sys.stderr.isatty()
