"""What the audit log records: events to append, entries read back, verification results."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["GENESIS", "AuditEntry", "AuditEvent", "Outcome", "VerifyResult", "canonical", "sha256"]

Outcome = Literal["success", "not-found", "denied", "failure"]
GENESIS = "0" * 64
FIELDS = ("seq", "time", "event", "actor", "outcome", "details", "key_id", "prev", "mac")


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces, UTF-8): what MACs are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Something to record: what happened, who did it, how it ended, PHI-free details."""

    event: str
    actor: str
    outcome: Outcome = "success"
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded entry, as read back from the log."""

    seq: int
    time: str
    event: str
    actor: str
    outcome: str
    details: Mapping[str, Any]
    key_id: str
    prev: str
    mac: str
    hash: str

    @classmethod
    def parse(cls, line: bytes) -> AuditEntry:
        """Parse one line (without its newline); raise :class:`ValueError` if malformed."""
        obj = json.loads(line)
        if not isinstance(obj, dict) or sorted(obj) != sorted(FIELDS):
            raise ValueError("not an audit entry (wrong fields)")
        if not isinstance(obj["seq"], int) or not isinstance(obj["details"], dict):
            raise ValueError("not an audit entry (wrong field types)")
        return cls(**{name: obj[name] for name in FIELDS}, hash=sha256(line))

    def body(self) -> dict[str, Any]:
        """The authenticated content: every field but ``mac`` (and the computed hash)."""
        return {name: getattr(self, name) for name in FIELDS if name != "mac"}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`.

    Attributes
    ----------
    entries:
        How many entries verified (all of them when ``ok``).
    first_bad_seq, first_bad_line:
        The first entry that does not verify (by expected sequence number, and line number).
    reason:
        Why it does not verify.
    """

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    first_bad_line: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit log OK: {self.entries} entries verified"
        return (
            f"audit log does NOT verify: entry {self.first_bad_seq} (line {self.first_bad_line})"
            f": {self.reason}; {self.entries} entries before it verify"
        )
