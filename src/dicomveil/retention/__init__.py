"""Retention: removing what is older than the policy allows, per store and per organisation.

:mod:`~dicomveil.retention.policy` reads the ``[retention]`` table; :mod:`.stores` finds and
removes what has expired in each store (archive, quarantine, spool, audit);
``dicomveil retention run [--dry-run]`` (:mod:`dicomveil.cli.retention`) runs it and audits it.
"""

from __future__ import annotations

from dicomveil.retention.policy import RetentionPolicy, StorePolicy, load_retention

__all__ = ["RetentionPolicy", "StorePolicy", "load_retention"]
