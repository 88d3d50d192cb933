"""Who may associate with the node, and what each caller may do (pure: no sockets).

The decision is taken once per association, at A-ASSOCIATE-RQ, from the calling and called
AE titles and the peer's address; a refusal becomes an A-ASSOCIATE-RJ (permanent, calling
AE title not recognised, or called AE title not recognised). An accepted caller carries its
roles; each service checks its own (:data:`SERVICE_ROLES`) and answers 0124H (Refused: Not
Authorized) when the role is missing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final, Literal

from dicomveil.dimse.settings import DimseSettings, Network, Role

__all__ = ["NOT_AUTHORIZED", "SERVICE_ROLES", "Admission", "Refusal", "admit"]

NOT_AUTHORIZED: Final = 0x0124
"""PS3.7 Annex C: Refused: Not Authorized."""

SERVICE_ROLES: Final[dict[str, Role]] = {
    "C-STORE": Role.INGEST,
    "C-FIND": Role.READ,
    "C-GET": Role.READ,
    "C-MOVE": Role.READ,
}
"""The role each service needs (C-ECHO needs none)."""

Reason = Literal["calling-ae", "called-ae", "network", "no-role", "busy"]


@dataclass(frozen=True, slots=True)
class Admission:
    """An accepted association: who called, what it may do, and for which organisation
    (``None``: none; see :mod:`dicomveil.tenants`)."""

    calling_ae: str
    roles: frozenset[Role]
    organisation: str | None = None

    def may(self, service: str) -> bool:
        """Whether the caller may use ``service`` (``"C-STORE"``, ``"C-FIND"`` ...)."""
        role = SERVICE_ROLES.get(service)
        return role is None or role in self.roles


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused association and why (a fixed word: safe to log and audit)."""

    reason: Reason

    @property
    def diagnostic(self) -> int:
        """The A-ASSOCIATE-RJ diagnostic (source: service user; PS3.8 §9.3.4)."""
        return 0x07 if self.reason == "called-ae" else 0x03


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def admit(
    settings: DimseSettings, calling_ae: str, called_ae: str, address: str
) -> Admission | Refusal:
    """Decide whether an association request is accepted.

    Parameters
    ----------
    settings:
        The node's settings (allowed AE titles, callers, networks).
    calling_ae, called_ae:
        The AE titles of the A-ASSOCIATE-RQ.
    address:
        The peer's IP address.
    """
    if settings.require_called_ae_title and called_ae.strip() != settings.ae_title.strip():
        return Refusal("called-ae")
    caller = settings.caller(calling_ae)
    if caller is None:
        return Refusal("calling-ae")
    networks = caller.networks or settings.networks
    if networks and not _within(address, networks):
        return Refusal("network")
    if not caller.roles:
        return Refusal("no-role")
    return Admission(calling_ae.strip(), caller.roles, caller.organisation)
