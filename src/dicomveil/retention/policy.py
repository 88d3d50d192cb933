"""The retention policy: how long each store keeps things, per organisation.

From the ``[retention]`` table of the configuration file::

    [retention]
    archive_days = 3650        # de-identified studies (objects + index rows), since last received
    vault = false              # also remove their vault rows (no re-identification then)
    quarantine_days = 30       # quarantined originals
    spool_hours = 24           # upload folders no live server holds
    audit_days = 2190          # audit entries: sealed into segments (see dicomveil.audit.seal)
    audit_export = "/mnt/worm/dicomveil-audit"   # where segments go (default: audit/sealed)

    [retention.organisations.ACME]
    archive_days = 365         # ACME's studies go sooner
    quarantine_days = 7        # and its quarantined runs

A missing or ``0`` period keeps everything of that store. Per-organisation periods apply to
the stores whose records carry an organisation: archived studies and quarantined runs; a
period an organisation's table leaves out is the default one. The spool and the audit log
are the server's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dicomveil.errors import ConfigError
from dicomveil.settings import read_section

__all__ = ["RetentionPolicy", "StorePolicy", "load_retention"]

_DAY: Final = 86400.0
_PERIODS: Final = {"archive_days": _DAY, "quarantine_days": _DAY, "audit_days": _DAY}


@dataclass(frozen=True, slots=True)
class StorePolicy:
    """One organisation's periods (seconds; ``0``: kept forever; ``None``: the default)."""

    archive: float | None = None
    quarantine: float | None = None


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Retention periods, in seconds (``0``: kept forever)."""

    archive: float = 0.0
    vault: bool = False
    """Remove the vault rows of the expired studies too (they can no longer be re-identified)."""
    quarantine: float = 0.0
    spool: float = 0.0
    audit: float = 0.0
    audit_export: Path | None = None
    organisations: Mapping[str, StorePolicy] = field(default_factory=dict)

    def archive_period(self, organisation: str) -> float:
        """The archive period of ``organisation`` (``""``: the default one)."""
        found = self.organisations.get(organisation)
        own = found.archive if found is not None else None
        return self.archive if own is None else own

    def quarantine_period(self, organisation: str | None) -> float:
        """The quarantine period of ``organisation``'s runs (``None``: the default one)."""
        found = self.organisations.get(organisation or "")
        own = found.quarantine if found is not None else None
        return self.quarantine if own is None else own

    @property
    def empty(self) -> bool:
        """Whether nothing is ever removed."""
        periods = [self.archive, self.quarantine, self.spool, self.audit]
        for own in self.organisations.values():
            periods += [own.archive or 0.0, own.quarantine or 0.0]
        return not any(periods)


def _seconds(table: Mapping[str, Any], name: str, unit: float, where: str) -> float:
    value = table.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}.{name} must be a number of {name.rsplit('_', 1)[-1]} >= 0")
    return float(value) * unit


def from_table(table: Mapping[str, Any]) -> RetentionPolicy:
    """Build the policy from the ``[retention]`` table's values.

    Raises
    ------
    ConfigError
        An unknown key or a bad value.
    """
    known = {*_PERIODS, "spool_hours", "vault", "audit_export", "organisations"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown [retention] setting(s): {', '.join(unknown)}")
    orgs = table.get("organisations", {})
    if not isinstance(orgs, dict):
        raise ConfigError("[retention.organisations] must be a table of tables")
    organisations: dict[str, StorePolicy] = {}
    for code, values in orgs.items():
        where = f"[retention.organisations.{code}]"
        if not isinstance(values, dict) or set(values) - {"archive_days", "quarantine_days"}:
            raise ConfigError(f"{where} takes archive_days and quarantine_days only")
        periods = {
            name: _seconds(values, name, _DAY, where) if name in values else None
            for name in ("archive_days", "quarantine_days")
        }
        organisations[str(code)] = StorePolicy(periods["archive_days"], periods["quarantine_days"])
    vault = table.get("vault", False)
    if not isinstance(vault, bool):
        raise ConfigError("[retention].vault must be true or false")
    export = table.get("audit_export")
    if export is not None and not isinstance(export, str):
        raise ConfigError("[retention].audit_export must be a folder path")
    return RetentionPolicy(
        archive=_seconds(table, "archive_days", _DAY, "[retention]"),
        vault=vault,
        quarantine=_seconds(table, "quarantine_days", _DAY, "[retention]"),
        spool=_seconds(table, "spool_hours", 3600.0, "[retention]"),
        audit=_seconds(table, "audit_days", _DAY, "[retention]"),
        audit_export=Path(export).expanduser() if export else None,
        organisations=organisations,
    )


def load_retention(config: Path) -> RetentionPolicy:
    """The ``[retention]`` table of the TOML file ``config``."""
    return from_table(read_section(config, "retention"))
