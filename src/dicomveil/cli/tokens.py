"""``dicomveil tokens``: bearer tokens for the gateway (``dicomveil serve``).

``tokens create --role ROLE [--org CODE] [--expires DURATION] [--name NAME]`` prints the new
token alone on the last line of stdout; it is shown once and stored only as its SHA-256 under
``$DICOMVEIL_HOME``. ``tokens list`` prints a header and one row per token (full id, role,
organisation, creation, expiry and last-use times, name); ``tokens revoke`` takes an id or a
name.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import typer

from dicomveil.cli.common import err_console, fail, out_console, show, state_folder
from dicomveil.errors import ConfigError
from dicomveil.tokens import ROLES, Token, token_store

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
    org: str = typer.Option(
        "", "--org", help="The organisation (tenant) code the token is bound to."
    ),
    expires: str = typer.Option(
        "",
        "--expires",
        help="Lifetime: a number and a unit, s, m, h, d or w (30d, 12h). Default: none.",
        show_default=False,
    ),
) -> None:
    """Create a token and print it (last line of stdout). It is shown only this once.

    Roles: ingest (de-identify, STOW-RS, batches), read (QIDO-RS, WADO-RS), reidentify
    (the way back, audited), admin (ingest, read and metrics).
    """
    try:
        lifetime = parse_duration(expires) if expires else None
        token, secret = token_store(state_folder()).create(role, name, expires=lifetime, org=org)
    except ConfigError as exc:
        fail(str(exc))
    until = f", expires {token.expires}" if token.expires else ""
    err_console.print(
        f"created token {token.id} (role {token.role}{until}); it is shown once: store it safely"
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
    rows = [_columns(token) for token in tokens]
    widths = [max(len(cell) for cell in column) for column in zip(_HEADER, *rows, strict=True)]
    for cells in (_HEADER, *rows):
        line = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        out_console.print(show(line.rstrip()), highlight=False)


_FIELDS = ("id", "name", "role", "org", "created", "expires", "last_used")
_HEADER = ("ID", "ROLE", "ORG", "CREATED", "EXPIRES", "LAST USED", "NAME")


def _columns(token: Token) -> tuple[str, ...]:
    status = " (expired)" if token.expired() else ""
    return (
        token.id,
        token.role,
        token.org or "-",
        token.created,
        (token.expires or "never") + status,
        token.last_used or "never",
        token.name,
    )


def _row(token: Token) -> dict[str, str]:
    return {name: str(getattr(token, name)) for name in _FIELDS}


_DURATION = re.compile(r"(\d{1,6})\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Parse a lifetime such as ``30d``, ``12h``, ``90m``, ``2w`` or ``45s``.

    Raises
    ------
    ConfigError
        Not a positive number followed by one unit.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(
            "a lifetime is a positive number and a unit: s, m, h, d or w (e.g. 30d, 12h)"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@tokens_app.command("revoke")
def revoke(
    ref: str = typer.Argument(..., help="The token's id or name (see `tokens list`)."),
) -> None:
    """Revoke a token by id or name: a running server refuses it from its next request on.

    A name shared by several tokens is refused: revoke those by id.
    """
    store = token_store(state_folder())
    try:
        found = store.find(ref)
        if len(found) > 1:
            fail(f"{len(found)} tokens are named {ref}: revoke them by id", code=1)
        if not found or not store.revoke(found[0].id):
            fail(f"no token with id or name {ref}", code=1)
    except ConfigError as exc:
        fail(str(exc))
    err_console.print(f"revoked token {show(found[0].id)}")


def register(app: typer.Typer) -> None:
    """Add ``tokens`` to ``app``."""
    app.add_typer(tokens_app, name="tokens")
