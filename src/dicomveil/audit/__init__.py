"""The tamper-evident audit log (hash chain + HMAC) and its export to syslog and ATNA.

Lives under ``$DICOMVEIL_HOME/audit/``; see :mod:`dicomveil.audit.log` for the format,
locking and crash recovery, :mod:`dicomveil.audit.events` for what is recorded.
"""

from __future__ import annotations

from dicomveil.audit.entry import AuditEntry, AuditEvent, Outcome, VerifyResult
from dicomveil.audit.export import export, to_atna, to_syslog
from dicomveil.audit.log import AuditLog

__all__ = [
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "Outcome",
    "VerifyResult",
    "export",
    "to_atna",
    "to_syslog",
]
