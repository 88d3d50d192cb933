"""Appenders run in separate processes by the audit concurrency test."""

from __future__ import annotations

from pathlib import Path

from dicomveil.audit import AuditEvent, AuditLog


def append_worker(directory: str, secret: bytes, worker: int, count: int) -> int:
    """Append ``count`` entries, one by one, some in small batches."""
    log = AuditLog(Path(directory), secret)
    written = 0
    while written < count:
        size = 1 if written % 3 else 2
        events = [
            AuditEvent("test.append", f"worker-{worker}", details={"n": written + i})
            for i in range(min(size, count - written))
        ]
        written += len(log.append_many(events))
    return written
