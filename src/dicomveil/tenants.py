"""Organisations (tenants): who a token or a DICOM calling AE sends and reads for.

One server can serve several organisations (a teleradiology company's hospitals). Each is
declared in the configuration file::

    [organisations.NORTH]
    pseudonym_prefix = "NRT"                 # default: the code itself
    key_file = "/etc/dicomveil/north.key"    # optional: the organisation's own pseudonym key

A token created with ``--org NORTH`` (or a ``[dimse]`` calling AE with
``organisation = "NORTH"``) is bound to it:

- what it sends is recorded on the index as NORTH's, its patient pseudonyms carry NORTH's
  prefix, and with an own key its pseudonyms, UIDs and date shifts come from that key (two
  organisations sending the same hospital number get unlinkable pseudonyms);
- what it reads (QIDO-RS, WADO-RS, C-FIND, C-GET, C-MOVE, the console) is NORTH's studies only;
  another organisation's study is answered as absent.

A token or AE bound to no organisation behaves as a single-tenant server always did. A token
bound to an organisation the file does not declare is still scoped to it, with the server's
key and the policy's prefix.

This module is the pure part (codes, the table's validation); :func:`load_tenant_keys` reads
the key files through :mod:`dicomveil.keystore` (local files or KMS-wrapped, like the others).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dicomveil.errors import ConfigError

__all__ = [
    "CODE_PATTERN",
    "Organisation",
    "TenantKey",
    "check_code",
    "load_tenant_keys",
    "organisations_from_file",
    "parse_organisations",
]

CODE_PATTERN: Final = re.compile(r"[A-Z][A-Z0-9-]{0,15}")
"""An organisation code: 1 to 16 upper-case letters, digits or ``-``, starting with a letter
(never a path separator, a dot or a space: codes name folders and audit fields)."""

_PREFIX: Final = re.compile(r"[A-Za-z0-9-]{1,16}")
"""A pseudonym prefix: what the policy's ``organization`` accepts, not empty."""

_KEYS: Final = frozenset({"pseudonym_prefix", "key_file", "name"})


def check_code(code: str) -> str:
    """Return ``code`` when it is a valid organisation code.

    Raises
    ------
    ConfigError
        It is not (the message does not repeat it: it may be anything).
    """
    if not CODE_PATTERN.fullmatch(code):
        raise ConfigError(
            "an organisation code is 1 to 16 upper-case letters, digits or '-', "
            "starting with a letter"
        )
    return code


@dataclass(frozen=True, slots=True)
class Organisation:
    """One declared organisation.

    Attributes
    ----------
    code:
        Its code (:data:`CODE_PATTERN`), as tokens and AEs name it.
    pseudonym_prefix:
        Put before its patient pseudonyms (``PREFIX-XXXXXXXX``); default the code.
    key_file:
        Its own pseudonym key (a key file, possibly KMS-wrapped); ``None``: the server's.
    name:
        A display name (free text, for the console; never a path).
    """

    code: str
    pseudonym_prefix: str
    key_file: Path | None = None
    name: str = ""


def _organisation(code: str, table: Any, base: Path | None) -> Organisation:
    check_code(code)
    if not isinstance(table, dict):
        raise ConfigError(f"[organisations.{code}] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"[organisations.{code}]: unknown settings {', '.join(unknown)}")
    prefix = table.get("pseudonym_prefix", code)
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"[organisations.{code}]: pseudonym_prefix is 1 to 16 letters, digits or '-'"
        )
    key_file = table.get("key_file")
    path: Path | None = None
    if key_file is not None:
        if not isinstance(key_file, str) or not key_file:
            raise ConfigError(f"[organisations.{code}]: key_file is a path")
        path = Path(key_file).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
    name = table.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"[organisations.{code}]: name is text")
    return Organisation(code, prefix, path, name)


def parse_organisations(
    table: Mapping[str, Any], base: Path | None = None
) -> dict[str, Organisation]:
    """The organisations of an ``[organisations]`` table, by code.

    ``base``: the folder relative key file paths are read from (the configuration file's).

    Raises
    ------
    ConfigError
        A code, a prefix or a key path is invalid, or a setting is unknown.
    """
    found = {code: _organisation(code, value, base) for code, value in table.items()}
    prefixes = [org.pseudonym_prefix for org in found.values()]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError("two organisations have the same pseudonym_prefix")
    return found


def organisations_from_file(config_file: Path | None) -> dict[str, Organisation]:
    """The organisations declared in ``config_file`` (none without a file)."""
    if config_file is None:
        return {}
    from dicomveil.settings import read_section

    return parse_organisations(read_section(config_file, "organisations"), config_file.parent)


@dataclass(frozen=True, slots=True)
class TenantKey:
    """What the de-identification engine needs of one organisation (picklable: it travels to
    the worker processes once, like the server's own secret).

    Attributes
    ----------
    prefix:
        Its pseudonym prefix.
    secret:
        Its own pseudonym secret; ``None``: the server's.
    """

    prefix: str
    secret: bytes | None = None

    def __repr__(self) -> str:
        return f"TenantKey(prefix={self.prefix!r}, own_key={self.secret is not None})"


def load_tenant_keys(
    organisations: Mapping[str, Organisation], environ: Mapping[str, str] | None = None
) -> dict[str, TenantKey]:
    """Read each organisation's key (local or KMS-wrapped key file) into a :class:`TenantKey`.

    Raises
    ------
    ConfigError
        A key file is missing, unreadable, or its KMS key cannot be reached (fail closed:
        an organisation never falls back to the server's key).
    """
    from dicomveil.keystore import load_key

    keys: dict[str, TenantKey] = {}
    for code, org in organisations.items():
        secret = None
        if org.key_file is not None:
            secret = load_key("pseudonym", key_file=org.key_file, environ=environ).secret
        keys[code] = TenantKey(org.pseudonym_prefix, secret)
    return keys
