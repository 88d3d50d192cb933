"""``dicomveil tokens``: bearer tokens for the gateway (``dicomveil serve``).

``tokens create --role ROLE [--name NAME]`` prints the new token alone on the last line of
stdout; it is shown once and stored only as its SHA-256 under ``$DICOMVEIL_HOME``.
"""

from __future__ import annotations

import json

import typer

from dicomveil.cli.common import err_console, fail, out_console, show, state_folder
from dicomveil.errors import ConfigError
from dicomveil.web.tokens import ROLES, token_store

__all__ = ["register", "tokens_app"]

tokens_app = typer.Typer(
    help="Create, list and revoke bearer tokens for the gateway.", no_args_is_help=True
)


@tokens_app.command("create")
def create(
    role: str = typer.Option(
        ..., "--role", help=f"What the token may do: {', '.join(ROLES)}.", show_default=False
    ),
    name: str = typer.Option("", "--name", help="A label (who or what uses the token)."),
) -> None:
    """Create a token and print it (last line of stdout). It is shown only this once.

    Roles: ingest (de-identify, STOW-RS, batches), read (QIDO-RS, WADO-RS), reidentify
    (the way back, audited), admin (ingest, read and metrics).
    """
    try:
        token, secret = token_store(state_folder()).create(role, name)
    except ConfigError as exc:
        fail(str(exc))
    err_console.print(
        f"created token {token.id} (role {token.role}); it is shown once: store it safely"
    )
    typer.echo(secret)


@tokens_app.command("list")
def list_tokens(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the tokens (ids, names, roles, creation times; never the tokens)."""
    try:
        tokens = token_store(state_folder()).list()
    except ConfigError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([_row(token) for token in tokens]))
        return
    for token in tokens:
        out_console.print(
            f"{show(token.id)}  {show(token.role):<10}  {show(token.created)}  {show(token.name)}"
        )


def _row(token: object) -> dict[str, str]:
    return {name: str(getattr(token, name)) for name in ("id", "name", "role", "created")}


@tokens_app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="The token's id (see `tokens list`).")) -> None:
    """Revoke a token: a running server refuses it from its next request on."""
    try:
        found = token_store(state_folder()).revoke(token_id)
    except ConfigError as exc:
        fail(str(exc))
    if not found:
        fail(f"no token with id {token_id}", code=1)
    err_console.print(f"revoked token {show(token_id)}")


def register(app: typer.Typer) -> None:
    """Add ``tokens`` to ``app``."""
    app.add_typer(tokens_app, name="tokens")
