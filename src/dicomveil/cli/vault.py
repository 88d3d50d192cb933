"""``dicomveil vault stats`` and ``dicomveil keys rotate-vault``, plus helpers shared by the
vault, audit and reidentify command groups (options, one-line errors)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from dicomveil.cli.common import EXIT_FAILED, fail, notice, visible
from dicomveil.errors import DicomveilError
from dicomveil.keystore import LoadedKey

__all__ = [
    "cli_errors",
    "notice",
    "register",
    "register_key_commands",
    "rotate_vault",
    "stats",
]

VaultUrl = Annotated[
    str | None,
    typer.Option(
        "--vault",
        envvar="DICOMVEIL_VAULT_URL",
        show_envvar=True,
        help="Vault database URL (default: sqlite under $DICOMVEIL_HOME).",
    ),
]
VaultKeyFile = Annotated[
    Path | None,
    typer.Option("--vault-key-file", help="Vault key file (default: the key store's places)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@contextmanager
def cli_errors(
    code: int = EXIT_FAILED, on_error: Callable[[DicomveilError], None] | None = None
) -> Iterator[None]:
    """Turn a :class:`~dicomveil.errors.DicomveilError` into one line on stderr and exit ``code``.

    Our messages never carry PHI, so they are printed as they are; no traceback.
    ``on_error`` may print something more on stdout first (such as a JSON answer).
    """
    try:
        yield
    except DicomveilError as exc:
        if on_error is not None:
            on_error(exc)
        fail(str(exc), code)


def stats(vault: VaultUrl = None, key_file: VaultKeyFile = None, as_json: JsonFlag = False) -> None:
    """Show what the vault holds: counts, schema revision and key ids (no PHI)."""
    from dicomveil.vault import open_vault

    with cli_errors(), open_vault(vault, key_file=key_file, create=False) as opened:
        result = opened.stats()
    if as_json:
        typer.echo(json.dumps({**asdict(result), "rotating": result.rotating}, sort_keys=True))
        return
    lines = [
        f"vault:      {result.url}",
        f"schema:     revision {result.revision}",
        f"patients:   {result.patients}",
        f"studies:    {result.studies}",
        f"series:     {result.series}",
        f"instances:  {result.instances}",
        f"runs:       {result.runs}",
        "vault keys: " + ", ".join(f"{k} ({s})" for k, s in sorted(result.vault_keys.items())),
        "pseudonym keys: "
        + ", ".join(
            f"{k} ({n} studies)" for k, n in sorted(result.studies_by_pseudonym_key.items())
        ),
    ]
    if result.rotating:
        lines.append("a vault key rotation is in progress: run `dicomveil keys rotate-vault`")
    typer.echo("\n".join(lines))


def _staged_key(current: LoadedKey, new_key_file: Path | None) -> tuple[Path | None, Path]:
    """Return (file to replace after rotating or None, file holding the new key)."""
    from dicomveil.home import state_home

    origin = current.origin
    target = Path(origin.removeprefix("file ")) if origin.startswith("file ") else None
    if new_key_file is not None:
        return target, new_key_file
    if target is not None:
        return target, target.with_name(target.name + ".new")
    return None, state_home() / "keys" / "vault.key.new"


def rotate_vault(
    vault: VaultUrl = None,
    key_file: VaultKeyFile = None,
    new_key_file: Annotated[
        Path | None,
        typer.Option(
            "--new-key-file",
            help="Where the new key is staged (default: next to the current key file).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows re-sealed per transaction.")] = 500,
    actor: Annotated[str | None, typer.Option(help="Who rotates (default: OS user).")] = None,
) -> None:
    """Re-seal the whole vault under a new vault key; readers keep working meanwhile.

    The new key is staged next to the current one; running again resumes a rotation.

    When every row is re-sealed, the new key replaces the current key file.

    (Rotating the pseudonym key is different: new pseudonyms from then on.)
    """
    from dicomveil.audit import AuditLog
    from dicomveil.audit.events import KeyOperation, vault_key_operation
    from dicomveil.keystore import create_key_file, load_key
    from dicomveil.reid import default_actor
    from dicomveil.vault import Vault, default_vault_url, rotate_vault_key

    who = actor or default_actor()
    with cli_errors():
        old = load_key("vault", key_file=key_file, create=False)
        target, staged = _staged_key(old, new_key_file)
        resuming = [load_key("vault", key_file=staged).secret] if staged.exists() else []
        audit = AuditLog.open(notice=notice)
        with Vault.open(default_vault_url(vault), [old.secret, *resuming], create=False) as opened:
            if not resuming:  # a KMS-wrapped key is replaced by one wrapped the same way
                create_key_file(staged, kms_key_id=old.kms_key_id, name="vault")
            new = load_key("vault", key_file=staged)

            def record(operation: KeyOperation, **extra: Any) -> None:
                event = vault_key_operation(
                    actor=who, operation=operation, key_id=old.id, new_key_id=new.id, **extra
                )
                audit.append(event)

            record("rotate.start")
            try:
                done = opened.keyring.states == {new.id: "active"}  # only the file swap is left
                rows = (
                    0
                    if done
                    else rotate_vault_key(
                        opened, old.secret, new.secret, batch_size=batch_size
                    ).resealed
                )
            except DicomveilError:
                record("rotate.failed", outcome="failure")
                raise
            record("rotate.end", rows=rows)
    if target is not None:
        os.replace(staged, target)
        typer.echo(
            f"vault key rotated: {old.id} -> {new.id}, {rows} rows re-sealed; "
            f"{visible(target)} updated"
        )
    else:
        typer.echo(
            f"vault key rotated: {old.id} -> {new.id}, {rows} rows re-sealed; "
            f"install the new key from {visible(staged)} (e.g. in DICOMVEIL_VAULT_KEY) "
            "and delete that file"
        )


def register(app: typer.Typer) -> None:
    """Add the ``vault`` command group (``vault stats``) to ``app``."""
    vault_app = typer.Typer(help="The re-identification vault.", no_args_is_help=True)
    vault_app.command("stats")(stats)
    app.add_typer(vault_app, name="vault")


def register_key_commands(keys_app: typer.Typer) -> None:
    """Add this module's key commands (``rotate-vault``) to the ``keys`` group ``keys_app``."""
    keys_app.command("rotate-vault")(rotate_vault)
