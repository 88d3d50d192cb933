"""The routing queue's forwards as plain values: what ``routes status`` prints and the
console's routes page shows (pseudonymous study UIDs, destination labels without
credentials, value-free reasons)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dicomveil.forward.queue import Job

__all__ = ["describe", "utc"]


def utc(seconds: float | None) -> str | None:
    """A POSIX time as ``YYYY-MM-DDTHH:MM:SSZ`` (``None`` stays ``None``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(job: Job) -> dict[str, Any]:
    """One forward, with stable keys (the ``routes status --json`` format, version 1).

    ``study_complete`` is ``false`` while the study of an on-arrival forward is still
    arriving: ``sent`` and ``instances`` then grow as it streams, and a ``queued`` forward
    with no ``next_attempt_at`` is parked, waiting for more instances or the completion.
    """
    return {
        "id": job.id,
        "state": job.state,
        "rule": job.rule,
        "action": job.action,
        "destination": job.target,
        "study_uid": job.study_uid,
        "source": job.source,
        "round": job.round,
        "priority": job.rank.name,
        "attempts": job.attempts,
        "instances": job.total,
        "sent": job.sent,
        "error": job.error,
        "next_attempt_at": (
            utc(job.not_before) if job.state == "queued" and not job.parked else None
        ),
        "study_complete": job.complete,
        "created_at": utc(job.created_at),
        "updated_at": utc(job.updated_at),
    }
