"""``dicomveil keys``: create and inspect the secret keys."""

from __future__ import annotations

from pathlib import Path

import typer

from dicomveil.cli.common import err_console, fail, out_console
from dicomveil.errors import ConfigError
from dicomveil.home import state_home
from dicomveil.keystore import KEY_NAMES, create_key_file, key_id, load_key

__all__ = ["keys_app", "register"]

keys_app = typer.Typer(
    help="Create and inspect the pseudonym, vault and audit keys.", no_args_is_help=True
)


@keys_app.command("init")
def init(
    folder: Path | None = typer.Option(
        None, "--dir", help="Where to write the key files (default: $DICOMVEIL_HOME/keys)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing key files."),
) -> None:
    """Write new random pseudonym, vault and audit keys (files with mode 0600).

    Back them up somewhere safe: without the pseudonym key the same pseudonyms cannot be
    produced again, and without the vault key nobody can re-identify.
    """
    target = folder or state_home() / "keys"
    for name in KEY_NAMES:
        path = target / f"{name}.key"
        try:
            secret = create_key_file(path, overwrite=force)
        except ConfigError as exc:
            fail(f"{exc} (use --force to replace it)")
        err_console.print(f"wrote {name} key {key_id(secret)} to {path}")


@keys_app.command("show")
def show() -> None:
    """Show which keys are in use and where they come from (never the secrets)."""
    for name in KEY_NAMES:
        try:
            key = load_key(name, create=False)
        except ConfigError as exc:
            out_console.print(f"{name}: {exc}")
            continue
        out_console.print(f"{name}: id {key.id}, from {key.origin}")


def register(app: typer.Typer) -> None:
    """Add ``keys`` to ``app``."""
    app.add_typer(keys_app, name="keys")
