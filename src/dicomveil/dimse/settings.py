"""The DICOM node's settings: the ``[dimse]`` table of the same TOML file as the gateway.

Example::

    [dimse]
    ae_title = "DICOMVEIL"
    port = 11112
    allowed_ae_titles = ["CT01", "PACS", "READER"]   # empty or absent: any caller (warned)
    networks = ["10.0.0.0/8"]                        # optional: where callers may come from
    max_associations = 8
    max_pdu_size = 65536

    [dimse.callers.CT01]        # roles per calling AE (default: default_roles)
    roles = ["ingest"]          # ingest: C-STORE; read: C-FIND, C-GET, C-MOVE

    [dimse.callers.READER]
    roles = ["read"]
    networks = ["10.1.2.0/24"]
    organisation = "NORTH"      # optional: sends and reads for this tenant only

    [dimse.destinations.READER] # where C-MOVE sends (MoveDestination = the table's name)
    host = "10.1.2.3"
    port = 104

    [dimse.tls]                 # optional DICOM TLS (PS3.15 Annex B.1)
    certificate = "/etc/dicomveil/node.pem"
    private_key = "/etc/dicomveil/node.key"
    ca_certificates = "/etc/dicomveil/ca.pem"
    require_client_certificate = true

Every key is described in ``docs/dimse.md``. Unknown keys, malformed values and roles for an
AE title that may not call are :class:`~dicomveil.errors.ConfigError`s that name the key
(never a value from elsewhere in the file).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from dicomveil.errors import ConfigError
from dicomveil.tenants import check_code

__all__ = [
    "DEFAULT_AE_TITLE",
    "DEFAULT_PORT",
    "Caller",
    "Destination",
    "DimseSettings",
    "Network",
    "Role",
    "TlsSettings",
    "load_dimse_settings",
]

DEFAULT_AE_TITLE: Final = "DICOMVEIL"
DEFAULT_PORT: Final = 11112
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# PS3.5 §6.2 (AE VR): up to 16 characters of the default repertoire, no backslash, no
# control characters; leading/trailing spaces are not significant.
_AE_TITLE: Final = re.compile(r"[ -\[\]-~]{1,16}")


class Role(StrEnum):
    """What a calling AE may do (kept separable: a modality ingests, a workstation reads)."""

    INGEST = "ingest"  #: C-STORE into the node (de-identified on the way in)
    READ = "read"  #: C-FIND, C-GET and C-MOVE on the de-identified archive


@dataclass(frozen=True, slots=True)
class Caller:
    """What one calling AE title may do, and from where.

    Attributes
    ----------
    roles:
        The services it may use.
    networks:
        The source networks it may call from (empty: the node's ``networks``).
    organisation:
        The organisation (tenant) it sends and reads for (``None``: none, the
        single-tenant default; see :mod:`dicomveil.tenants`).
    """

    roles: frozenset[Role]
    networks: tuple[Network, ...] = ()
    organisation: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """A C-MOVE destination: the AE title (its table's name) listens at ``host:port``."""

    host: str
    port: int
    tls: bool = False


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """DICOM TLS for the node's listener (and C-MOVE associations to TLS destinations).

    Attributes
    ----------
    certificate, private_key:
        The node's certificate chain and key (PEM).
    ca_certificates:
        The CA bundle client (and destination) certificates are checked against.
    require_client_certificate:
        Refuse a TLS handshake without a client certificate signed by ``ca_certificates``.
    """

    certificate: Path
    private_key: Path
    ca_certificates: Path | None = None
    require_client_certificate: bool = False


@dataclass(frozen=True, slots=True)
class DimseSettings:
    """Everything the DICOM node is configured with.

    Attributes
    ----------
    ae_title:
        The node's own AE title (the called AE title callers use).
    host, port:
        Where the node listens.
    allowed_ae_titles:
        The calling AE titles accepted; empty means any caller (a warning at start-up).
    default_roles:
        The roles of an accepted caller that has no ``[dimse.callers.<AET>]`` table.
    callers:
        Roles (and networks) per calling AE title.
    networks:
        Source networks any caller may call from (empty: anywhere).
    require_called_ae_title:
        Reject associations whose called AE title is not :attr:`ae_title`.
    max_associations:
        Associations served at once; beyond, new ones are rejected (transient, local limit
        exceeded).
    max_pdu_size:
        Largest P-DATA PDU the node receives (bytes; ``0``: unlimited).
    acse_timeout, dimse_timeout, network_timeout:
        Seconds to wait for association messages, for DIMSE messages, and on an idle
        connection.
    max_find_results:
        Most C-FIND matches returned for one query (more are cut off with a warning
        status).
    destinations:
        C-MOVE destinations by AE title.
    tls:
        DICOM TLS, when configured.
    """

    ae_title: str = DEFAULT_AE_TITLE
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allowed_ae_titles: frozenset[str] = frozenset()
    default_roles: frozenset[Role] = frozenset({Role.INGEST, Role.READ})
    callers: Mapping[str, Caller] = field(default_factory=dict)
    networks: tuple[Network, ...] = ()
    require_called_ae_title: bool = False
    max_associations: int = 8
    max_pdu_size: int = 65536
    acse_timeout: float = 30.0
    dimse_timeout: float = 120.0
    network_timeout: float = 120.0
    max_find_results: int = 10_000
    destinations: Mapping[str, Destination] = field(default_factory=dict)
    tls: TlsSettings | None = None

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title, "ae_title")
        for title in self.allowed_ae_titles:
            check_ae_title(title, "allowed_ae_titles")
        if not 0 <= self.port <= 65535:
            raise ConfigError("dimse port must be between 0 and 65535")
        if self.max_associations < 1:
            raise ConfigError("dimse max_associations must be 1 or more")
        if self.max_pdu_size != 0 and self.max_pdu_size < 4096:
            raise ConfigError("dimse max_pdu_size must be 0 (unlimited) or at least 4096")
        if min(self.acse_timeout, self.dimse_timeout, self.network_timeout) <= 0:
            raise ConfigError("dimse timeouts must be positive")
        if self.max_find_results < 1:
            raise ConfigError("dimse max_find_results must be 1 or more")
        if self.allowed_ae_titles:
            strangers = sorted(set(self.callers) - self.allowed_ae_titles)
            if strangers:
                raise ConfigError(
                    "[dimse.callers] names AE titles missing from allowed_ae_titles: "
                    + ", ".join(strangers)
                )

    @property
    def any_caller(self) -> bool:
        """Whether any calling AE title is accepted (no ``allowed_ae_titles``)."""
        return not self.allowed_ae_titles

    def caller(self, ae_title: str) -> Caller | None:
        """What ``ae_title`` may do, or ``None`` when it may not call at all."""
        title = ae_title.strip()
        if not self.any_caller and title not in self.allowed_ae_titles:
            return None
        return self.callers.get(title) or Caller(self.default_roles)

    def with_overrides(self, **overrides: Any) -> DimseSettings:
        """A copy with ``overrides`` (``None`` values ignored), checked again."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return DimseSettings(**values)


def check_ae_title(title: str, what: str) -> str:
    """Return ``title`` stripped, or raise :class:`ConfigError` when it is no valid AE title."""
    if not isinstance(title, str) or not _AE_TITLE.fullmatch(title) or not title.strip():
        raise ConfigError(f"dimse {what}: not a valid AE title (1-16 printable ASCII, no '\\')")
    return title.strip()


_SCALARS: Final = {
    "ae_title": str,
    "host": str,
    "port": int,
    "require_called_ae_title": bool,
    "max_associations": int,
    "max_pdu_size": int,
    "acse_timeout": float,
    "dimse_timeout": float,
    "network_timeout": float,
    "max_find_results": int,
}
_TABLES: Final = frozenset(
    {"allowed_ae_titles", "default_roles", "networks", "callers", "destinations", "tls"}
)


def load_dimse_settings(config: Path | None = None, **overrides: Any) -> DimseSettings:
    """Read the ``[dimse]`` table of the TOML file ``config`` (defaults when absent).

    Parameters
    ----------
    config:
        The settings file shared with the gateway (``None``: defaults only).
    **overrides:
        Field values that win over the file (command-line flags; ``None`` ignored).

    Raises
    ------
    ConfigError
        Unreadable file, unknown key, or a malformed value.
    """
    table = _read_table(config) if config is not None else {}
    return from_table(table).with_overrides(**overrides)


def from_table(table: Mapping[str, Any]) -> DimseSettings:
    """Build settings from a parsed ``[dimse]`` table."""
    unknown = sorted(set(table) - set(_SCALARS) - _TABLES)
    if unknown:
        raise ConfigError(f"unknown [dimse] setting(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, kind in _SCALARS.items():
        if name in table:
            values[name] = _scalar(table[name], kind, name)
    if "allowed_ae_titles" in table:
        titles = _strings(table["allowed_ae_titles"], "allowed_ae_titles")
        values["allowed_ae_titles"] = frozenset(
            check_ae_title(t, "allowed_ae_titles") for t in titles
        )
    if "default_roles" in table:
        values["default_roles"] = _roles(table["default_roles"], "default_roles")
    if "networks" in table:
        values["networks"] = _networks(table["networks"], "networks")
    values["callers"] = {
        check_ae_title(title, "callers"): _caller(item, title)
        for title, item in _subtables(table.get("callers", {}), "callers").items()
    }
    values["destinations"] = {
        check_ae_title(title, "destinations"): _destination(item, title)
        for title, item in _subtables(table.get("destinations", {}), "destinations").items()
    }
    if "tls" in table:
        values["tls"] = _tls(table["tls"])
    return DimseSettings(**values)


def _read_table(path: Path) -> dict[str, Any]:
    from dicomveil.settings import read_section

    return read_section(path, "dimse")


def _scalar(value: Any, kind: type, name: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"dimse {name} must be true or false")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"dimse {name} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"dimse {name} must be a number")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"dimse {name} must be an integer")
    return kind(value)


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"dimse {name} must be a list of strings")
    return list(value)


def _roles(value: Any, name: str) -> frozenset[Role]:
    names = _strings(value, name)
    try:
        return frozenset(Role(n) for n in names)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise ConfigError(f"dimse {name}: roles are {known}") from None


def _networks(value: Any, name: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(n, strict=False) for n in _strings(value, name))
    except ValueError:
        raise ConfigError(f"dimse {name}: not a network (e.g. 10.0.0.0/8 or ::1/128)") from None


def _subtables(value: Any, name: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"[dimse.{name}] must hold one table per AE title")
    return value


def _caller(item: Mapping[str, Any], title: str) -> Caller:
    unknown = sorted(set(item) - {"roles", "networks", "organisation"})
    if unknown:
        raise ConfigError(f"unknown [dimse.callers.{title}] setting(s): {', '.join(unknown)}")
    if "roles" not in item:
        raise ConfigError(f"[dimse.callers.{title}] needs roles (ingest, read)")
    organisation = item.get("organisation")
    if organisation is not None:
        if not isinstance(organisation, str):
            raise ConfigError(f"[dimse.callers.{title}] organisation is an organisation code")
        check_code(organisation)
    return Caller(
        _roles(item["roles"], f"callers.{title}.roles"),
        _networks(item.get("networks", []), f"callers.{title}.networks"),
        organisation,
    )


def _destination(item: Mapping[str, Any], title: str) -> Destination:
    unknown = sorted(set(item) - {"host", "port", "tls"})
    if unknown:
        raise ConfigError(f"unknown [dimse.destinations.{title}] setting(s): {', '.join(unknown)}")
    host, port = item.get("host"), item.get("port")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"[dimse.destinations.{title}] needs host (a string)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise ConfigError(f"[dimse.destinations.{title}] needs port (1-65535)")
    tls = _scalar(item.get("tls", False), bool, f"destinations.{title}.tls")
    return Destination(host, port, tls)


def _tls(item: Any) -> TlsSettings:
    if not isinstance(item, dict):
        raise ConfigError("[dimse.tls] must be a table")
    known = {"certificate", "private_key", "ca_certificates", "require_client_certificate"}
    unknown = sorted(set(item) - known)
    if unknown:
        raise ConfigError(f"unknown [dimse.tls] setting(s): {', '.join(unknown)}")
    for name in ("certificate", "private_key"):
        if not isinstance(item.get(name), str):
            raise ConfigError(f"[dimse.tls] needs {name} (a PEM file)")
    ca = item.get("ca_certificates")
    if ca is not None and not isinstance(ca, str):
        raise ConfigError("[dimse.tls] ca_certificates must be a PEM file")
    require = _scalar(item.get("require_client_certificate", False), bool, "tls")
    if require and ca is None:
        raise ConfigError("[dimse.tls] require_client_certificate needs ca_certificates")
    return TlsSettings(
        Path(item["certificate"]).expanduser(),
        Path(item["private_key"]).expanduser(),
        Path(ca).expanduser() if ca else None,
        require,
    )
