"""CloudEvents 1.0 envelopes (structured JSON mode) for dicomveil's events.

Every event has ``specversion`` 1.0, a unique ``id`` (the receiver's de-duplication key: a
retried delivery carries the same id), ``source`` (``/dicomveil/<organization or host>``),
``type`` (one of :data:`TYPES`), ``time`` (RFC 3339, UTC), ``subject`` (a pseudonymous
study UID or an opaque id) and ``datacontenttype`` ``application/json``. ``data`` holds
pseudonymous ids and counts only (``docs/events.md`` lists each type's fields).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["CONTENT_TYPE", "TYPES", "envelope", "serialize"]

CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
INSTANCE_STORED: Final = "org.dicomveil.instance.stored"
STUDY_COMPLETE: Final = "org.dicomveil.study.complete"
BATCH_SHIPPED: Final = "org.dicomveil.batch.shipped"
FILE_QUARANTINED: Final = "org.dicomveil.file.quarantined"
TYPES: Final = frozenset({INSTANCE_STORED, STUDY_COMPLETE, BATCH_SHIPPED, FILE_QUARANTINED})


def envelope(
    kind: str,
    subject: str,
    data: Mapping[str, Any],
    *,
    source: str,
    event_id: str | None = None,
    when: float | None = None,
) -> dict[str, Any]:
    """Build one CloudEvent (``kind`` must be one of :data:`TYPES`)."""
    if kind not in TYPES:
        raise ValueError("unknown event type")
    moment = dt.datetime.now(dt.UTC) if when is None else dt.datetime.fromtimestamp(when, dt.UTC)
    return {
        "specversion": "1.0",
        "id": event_id or uuid.uuid4().hex,
        "source": source,
        "type": kind,
        "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": dict(data),
    }


def serialize(event: Mapping[str, Any]) -> bytes:
    """The body sent (compact, keys sorted: the bytes the signature covers)."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
