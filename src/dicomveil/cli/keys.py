"""``dicomveil keys``: create and inspect the secret keys."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dicomveil.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    err_console,
    fail,
    notice,
    out_console,
    show,
    state_folder,
)
from dicomveil.errors import ConfigError
from dicomveil.keystore import (
    ENV_VARS,
    KEY_NAMES,
    KeyName,
    create_key_file,
    default_key_path,
    key_id,
    load_key,
)

__all__ = ["keys_app", "register"]

keys_app = typer.Typer(
    help="Create and inspect the pseudonym, vault and audit keys.", no_args_is_help=True
)


@keys_app.command("init")
def init(
    folder: Path | None = typer.Option(
        None,
        "--dir",
        help="Where to write the key files (default: $DICOMVEIL_KEYS_HOME, else the "
        "pseudonym and vault keys in $DICOMVEIL_HOME/keys and the audit key in "
        "$DICOMVEIL_HOME.keys, beside the state folder).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing key files."),
    kms_key: str = typer.Option(
        "",
        "--kms",
        help="Wrap the keys with this AWS KMS key (id, ARN or alias): the files hold only "
        "the wrapped keys. Needs dicomveil[kms] and AWS credentials.",
        show_default=False,
    ),
) -> None:
    """Write new random pseudonym, vault and audit keys (files with mode 0600).

    Back them up somewhere safe: without the pseudonym key the same pseudonyms cannot be
    produced again, and without the vault key nobody can re-identify. With --kms the files
    hold keys wrapped by AWS KMS (envelope encryption): they are useless without the KMS.

    Warns when clear keys are written into $DICOMVEIL_HOME, beside the vault and audit log
    they protect: a copy of that folder would re-identify offline.
    """
    home = state_folder()

    def where(name: KeyName) -> Path:
        if folder is not None:
            return folder / f"{name}.key"
        return default_key_path(name, home)

    for name in KEY_NAMES:
        path = where(name)
        if path.exists() and not force:
            fail(f"key file {path} already exists (use --force to replace it)")
    for name in KEY_NAMES:
        path = where(name)
        try:
            secret = create_key_file(path, overwrite=force, kms_key_id=kms_key, name=name)
        except ConfigError as exc:
            fail(str(exc), code=EXIT_FAILED if kms_key else EXIT_USAGE)
        wrapped = " (wrapped by KMS)" if kms_key else ""
        err_console.print(f"wrote {name} key {key_id(secret)}{wrapped} to {show(path)}")
    inside = sorted({str(where(n).parent) for n in KEY_NAMES if _inside(where(n), home)})
    if not kms_key and inside:
        notice(
            f"warning: keys are in {', '.join(inside)}, inside {home} which also holds the vault "
            "and the audit log they protect: a copy of that folder re-identifies. Keep the "
            "keys elsewhere (--dir, DICOMVEIL_*_KEY_FILE) or wrap them with --kms."
        )


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (symbolic links resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


def _origin(name: KeyName) -> str | None:
    """Where ``load_key`` takes the ``name`` key from, when it is given at all."""
    var = ENV_VARS[name]
    if os.environ.get(var):
        return f"environment {var}"
    if os.environ.get(f"{var}_FILE"):
        return f"environment {var}_FILE ({os.environ[f'{var}_FILE']})"
    path = default_key_path(name, state_folder())
    return f"file {path}" if path.exists() else None


@keys_app.command("show")
def show_keys() -> None:
    """Show which keys are in use and where they come from (never the secrets).

    Exit 1 when a key that is given (in the environment, or a key file) is invalid: the
    commands that need it would refuse to run.
    """
    invalid = 0
    for name in KEY_NAMES:
        try:
            key = load_key(name, create=False)
        except ConfigError as exc:
            origin = _origin(name)
            if origin is None:  # none given: created on first use
                out_console.print(f"{name}: {show(exc)}")
                continue
            invalid += 1
            out_console.print(f"{name}: [bold red]INVALID[/], from {show(origin)}: {show(exc)}")
            continue
        wrapped = f", wrapped by KMS key {show(key.kms_key_id)}" if key.kms_key_id else ""
        out_console.print(f"{name}: id {key.id}, from {show(key.origin)}{wrapped}")
    if invalid:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``keys`` to ``app``."""
    app.add_typer(keys_app, name="keys")
