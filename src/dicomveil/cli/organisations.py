"""``--org CODE [--config FILE]`` of the commands that de-identify locally (``deid``,
``batch``): the organisation the settings declare brings its pseudonym prefix and its own
key, exactly as the gateway gives them to that organisation's uploads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from dicomveil.cli.common import err_console, fail, show
from dicomveil.errors import ConfigError
from dicomveil.keystore import LoadedKey
from dicomveil.tenants import TenantKey

__all__ = ["CONFIG_OPTION", "OrgOption", "organisation_of"]

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    exists=True,
    dir_okay=False,
    help="Settings TOML whose \\[organisations] table declares the --org organisations.",
)


@dataclass(frozen=True)
class OrgOption:
    """What ``--org CODE`` resolved to: the pseudonym prefix, and the organisation's code and
    own key when the settings declare it (``declared``); otherwise the code is the prefix
    only, under the server's key."""

    prefix: str
    declared: tuple[str, TenantKey] | None

    @property
    def code(self) -> str | None:
        """The declared organisation's code (``None``: a prefix only)."""
        return self.declared[0] if self.declared is not None else None

    def key(self, server_key: LoadedKey) -> LoadedKey:
        """The pseudonym key to use: the organisation's own, else ``server_key``."""
        own = self.secret(server_key.secret)
        if own == server_key.secret:
            return server_key
        assert self.declared is not None
        return LoadedKey("pseudonym", own, f"organisation {self.declared[0]}'s key")

    def secret(self, server_secret: bytes) -> bytes:
        """The pseudonym secret to use: the organisation's own key, else the server's."""
        if self.declared is not None and self.declared[1].secret:
            return self.declared[1].secret
        return server_secret


def organisation_of(code: str, config: Path | None) -> OrgOption:
    """Resolve ``--org CODE`` against the settings ``config`` declares.

    Exits 2 when the settings declare organisations but not ``CODE`` (a mistyped code would
    otherwise de-identify under the server's key), or a key cannot be read. When they declare
    none, ``CODE`` is only the pseudonym prefix, as before tenants, with a one-line warning.
    """
    declared = declared_organisation(code, config)
    return OrgOption(declared[1].prefix if declared is not None else code, declared)


def declared_organisation(code: str, config: Path | None) -> tuple[str, TenantKey] | None:
    """``(CODE, its prefix and own key)`` when ``config`` declares ``CODE``; ``None`` (with a
    warning) when it declares no organisation at all; exits 2 otherwise (see
    :func:`organisation_of`)."""
    from dicomveil.tenants import load_tenant_keys, organisations_from_file

    try:
        declared = organisations_from_file(config)
        if code in declared:
            return code, load_tenant_keys({code: declared[code]})[code]
    except ConfigError as exc:
        fail(str(exc))
    if declared:
        fail(
            f"--org {code}: not an organisation of {config} "
            f"(it declares {', '.join(sorted(declared))})"
        )
    err_console.print(
        f"[yellow]warning:[/] --org {show(code)} is no declared organisation (--config "
        "\\[organisations]): it is only the pseudonym prefix, under the server's key"
    )
    return None
