"""What the shared-state tests run in separate processes (as on separate hosts)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dicomveil.audit import AuditEvent
from dicomveil.audit.sql import SqlAuditLog
from dicomveil.errors import AuditError


def append_worker(url: str, secret: bytes, worker: int, count: int) -> int:
    """Append ``count`` entries to the chain at ``url``, one by one and in pairs."""
    log = SqlAuditLog.connect(url, Path("/nonexistent-audit-folder"), secret)
    written = 0
    try:
        while written < count:
            size = 1 if written % 3 else 2
            events = [
                AuditEvent("test.append", f"worker-{worker}", details={"n": written + i})
                for i in range(min(size, count - written))
            ]
            written += len(log.append_many(events))
    finally:
        log.close()
    return written


def append_through_outage(
    url: str, secret: bytes, seconds: float, ready: Any, results: Any
) -> None:
    """Append for ``seconds`` (``ready`` set once connected); put (acknowledged, refused)."""
    log = SqlAuditLog.connect(url, Path("/nonexistent-audit-folder"), secret)
    done = refused = 0
    ready.set()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                log.append(AuditEvent("test.outage", "worker", details={"n": done}))
                done += 1
            except AuditError:
                refused += 1
                time.sleep(0.02)
    finally:
        log.close()
        results.put((done, refused))
