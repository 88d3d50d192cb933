"""Shared pieces of the command line: consoles, key loading, error reporting."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from dicomveil.errors import ConfigError, DicomveilError
from dicomveil.keystore import KeyName, LoadedKey, load_key

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "err_console",
    "fail",
    "get_key",
    "out_console",
    "show",
    "state_folder",
    "visible",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Progress, notices and errors go to stderr; stdout is for results (``--json``).
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
"""Unicode categories shown as escapes: controls (ESC, newline, ...), formatting characters
(bidirectional overrides), undecodable bytes of a file name, line and paragraph separators."""


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: object) -> str:
    """Return ``text`` with every control or invisible character written as an escape.

    A file name may hold an escape sequence that would rewrite the terminal, a newline that
    forges another output line, or bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which a terminal cannot encode): each is shown as ``\\xNN`` or ``\\uNNNN``.
    """
    value = str(text)
    if value.isprintable():
        return value
    out = []
    for char in value:
        if char == " " or unicodedata.category(char) not in _INVISIBLE:
            out.append(char)
        elif char in _SHORT:
            out.append(_SHORT[char])
        elif 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)


def show(text: object) -> str:
    """Return ``text`` (a path, a name, a reason) ready for a rich console line with markup.

    Square brackets are escaped (a file called ``q[/bold]x.dcm`` is printed as it is, not
    taken for markup) and control characters made visible (:func:`visible`). Every command
    prints every value it did not write itself through this.
    """
    return escape(visible(text))


def _line(label: str, style: str, message: object) -> Text:
    return Text.assemble((label, style), " ", visible(message))


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line (never a traceback) and exit with ``code``.

    ``message`` is plain text: it is printed as it is, control characters made visible.
    """
    import typer

    err_console.print(_line("error:", "bold red", message))
    raise typer.Exit(code)


def notice(message: str) -> None:
    """Print a one-line notice (plain text) to stderr."""
    err_console.print(_line("notice:", "yellow", message))


def state_folder(*, create: bool = True) -> Path:
    """Return the state folder (``$DICOMVEIL_HOME``), or exit 2 when it cannot be created."""
    from dicomveil.home import ENV_HOME, state_home

    try:
        return state_home(create=create)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else "the state folder"
        fail(
            f"{ENV_HOME} ({where}) cannot be created or used: {exc.strerror or type(exc).__name__}"
        )


def get_key(name: KeyName, key_file: Path | None = None) -> LoadedKey:
    """Load a key as the commands do (file, environment, state folder), or exit 2."""
    try:
        return load_key(name, key_file=key_file, notice=notice)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:  # the state folder or its keys folder cannot be made
        fail(f"{name} key: {exc.strerror or type(exc).__name__} ({exc.filename})")


def report_error(exc: DicomveilError) -> int:
    """Print a dicomveil error and return the exit code it deserves."""
    err_console.print(_line("error:", "bold red", exc))
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def is_tty() -> bool:
    """Tell whether stderr is a terminal (progress bars only then)."""
    return sys.stderr.isatty()
