"""The durable outbox: events wait in a SQL table until each endpoint has taken them.

One row per (event, endpoint): the serialized CloudEvent (the exact bytes signed and sent,
pseudonymous values only), its state (``pending``, ``delivered``, ``dead``), the attempts
made and when the next one is due. Writers (the ingest listener, the completion sweep) add
rows in their own short transaction; the sender takes due rows, and records each outcome.
The table (``dicomveil_events_outbox``) lives in the shared database when one is set
(``--database``, :func:`dicomveil.database.state_url`), else in ``<home>/events.sqlite``, so
events survive a restart and every node writes to one outbox.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    func,
    select,
    update,
)
from sqlalchemy import Table as SqlTable

from dicomveil.database import create_tables, make_engine, write_transaction

__all__ = ["DEAD", "DELIVERED", "PENDING", "Outbox", "Pending"]

metadata = MetaData()
outbox = SqlTable(
    "dicomveil_events_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("endpoint", String(2048), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_error", String(64)),
    Index("dicomveil_events_outbox_due", "state", "next_at"),
)

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"


@dataclass(frozen=True, slots=True)
class Pending:
    """One delivery to make."""

    id: int
    event_id: str
    type: str
    endpoint: str
    body: bytes
    attempts: int


class Outbox:
    """Read and write the outbox table (thread-safe)."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url, what="events outbox")
        create_tables(self._engine, metadata)

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()

    def add(self, items: Sequence[tuple[str, str, bytes]], endpoints: Sequence[str]) -> None:
        """Queue ``(event_id, type, body)`` items for every endpoint, in one transaction."""
        if not items or not endpoints:
            return
        now = time.time()
        rows = [
            {
                "event_id": event_id, "type": kind, "endpoint": endpoint, "body": body,
                "state": PENDING, "attempts": 0, "next_at": now, "created_at": now,
            }
            for event_id, kind, body in items
            for endpoint in endpoints
        ]  # fmt: skip
        with write_transaction(self._engine) as conn:
            conn.execute(outbox.insert(), rows)

    def due(self, now: float, limit: int = 50) -> list[Pending]:
        """Pending deliveries whose time has come, oldest first."""
        query = (
            select(outbox)
            .where(outbox.c.state == PENDING, outbox.c.next_at <= now)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Pending(r["id"], r["event_id"], r["type"], r["endpoint"], r["body"], r["attempts"])
            for r in rows
        ]

    def claim(self, now: float, lease: float, limit: int = 50) -> list[Pending]:
        """Take due deliveries for ``lease`` seconds (another sender sharing the outbox
        skips them meanwhile; a sender that dies lets them fall due again)."""
        taken: list[Pending] = []
        for item in self.due(now, limit):
            with write_transaction(self._engine) as conn:
                changed = conn.execute(
                    update(outbox)
                    .where(
                        outbox.c.id == item.id,
                        outbox.c.state == PENDING,
                        outbox.c.next_at <= now,
                    )
                    .values(next_at=now + lease)
                )
            if changed.rowcount == 1:
                taken.append(item)
        return taken

    def next_due(self) -> float | None:
        """When the next pending delivery is due (``None``: none pending)."""
        query = select(func.min(outbox.c.next_at)).where(outbox.c.state == PENDING)
        with self._engine.connect() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else float(value)

    def delivered(self, row_id: int) -> None:
        """Record a delivery the endpoint acknowledged."""
        self._set(row_id, state=DELIVERED, attempts=outbox.c.attempts + 1, last_error=None)

    def failed(self, row_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt: retry at ``retry_at``, or dead (``None``)."""
        state = PENDING if retry_at is not None else DEAD
        self._set(
            row_id,
            state=state,
            attempts=outbox.c.attempts + 1,
            next_at=retry_at if retry_at is not None else time.time(),
            last_error=error[:64],
        )

    def counts(self) -> dict[str, int]:
        """Rows by state (for status pages and tests)."""
        query = select(outbox.c.state, func.count()).group_by(outbox.c.state)
        with self._engine.connect() as conn:
            return {str(state): int(n) for state, n in conn.execute(query)}

    def _set(self, row_id: int, **values: object) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))
