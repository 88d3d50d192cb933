"""The de-identification engine of each organisation: its keys and its compiled policy.

An organisation's uploads are de-identified with the policy's pseudonym prefix replaced by
the organisation's, and with its own pseudonym key when it has one (see
:mod:`dicomveil.tenants`). Built once per process (each worker, the server), never per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from dicomveil.engine.keys import PseudonymKeys

if TYPE_CHECKING:
    from dicomveil.engine.rules import CompiledPolicy
    from dicomveil.profile.policy import Policy
    from dicomveil.tenants import TenantKey

__all__ = ["Engine", "TenantEngines", "build_engines", "engine_for"]

Engine = tuple[PseudonymKeys, "CompiledPolicy"]
TenantEngines = Mapping[str, Engine]


def build_engines(
    tenants: Mapping[str, TenantKey], keys: PseudonymKeys, policy: Policy
) -> dict[str, Engine]:
    """Each organisation's keys (its own, else ``keys``) and policy (with its prefix)."""
    from dicomveil.engine.rules import compile_policy

    engines: dict[str, Engine] = {}
    for code, tenant in tenants.items():
        own = PseudonymKeys(tenant.secret) if tenant.secret is not None else keys
        engines[code] = (own, compile_policy(replace(policy, organization=tenant.prefix)))
    return engines


def engine_for(
    engines: TenantEngines,
    organisation: str | None,
    keys: PseudonymKeys,
    compiled: CompiledPolicy,
) -> Engine:
    """The engine of ``organisation``; the server's (``keys``, ``compiled``) for none, or
    for an organisation the configuration does not declare."""
    if organisation:
        found = engines.get(organisation)
        if found is not None:
            return found
    return keys, compiled
