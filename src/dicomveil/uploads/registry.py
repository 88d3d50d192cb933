"""The uploads database: each upload, its objects and their value-free outcomes.

Two tables (in the shared database when one is set, else SQLite; see
:func:`dicomveil.database.state_url`): ``dicomveil_uploads`` (id, owner, times, state) and
``dicomveil_upload_objects`` (one row per generated object
name: its state, size, PS3.4 status and failure kind). Nothing here is read from the
instances but sizes, statuses and failure kinds: no attribute value, no client file name.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    select,
    update,
)

from dicomveil.database import create_tables, make_engine, write_transaction

__all__ = ["ObjectRow", "UploadRegistry", "UploadRow"]

metadata = MetaData()

uploads = Table(
    "dicomveil_uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("actor", String(160), nullable=False),
    Column("organisation", String(32)),  # the token's tenant (NULL: none)
    Column("priority", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # open, completing, done, expiring, expired
    Column("completed_at", Float),
)

upload_objects = Table(
    "dicomveil_upload_objects",
    metadata,
    Column("upload_id", String(64), ForeignKey("dicomveil_uploads.id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("size", Integer),
    Column("status", Integer),
    Column("failure", String(64)),
)

#: Object states: waiting for the client, then what became of it.
PENDING: Final = "pending"
MISSING: Final = "missing"
TOO_LARGE: Final = "too_large"
QUEUED: Final = "queued"
STORED: Final = "stored"
FAILED: Final = "failed"
QUARANTINED: Final = "quarantined"
EXPIRED: Final = "expired"
"""Upload state (and the state of its objects never handed on): URLs expired, never
completed, its objects deleted. ``expiring``: marked, objects being deleted."""
EXPIRING: Final = "expiring"


@dataclass(frozen=True, slots=True)
class ObjectRow:
    """One object of an upload (value-free)."""

    name: str
    state: str
    size: int | None
    status: int | None
    failure: str | None


@dataclass(frozen=True, slots=True)
class UploadRow:
    """One upload and its objects."""

    id: str
    actor: str
    priority: str
    created_at: float
    expires_at: float
    state: str
    completed_at: float | None
    objects: tuple[ObjectRow, ...]
    organisation: str | None = None


class UploadRegistry:
    """Read and write the uploads database (thread-safe; one per process)."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url, what="uploads database")
        create_tables(self._engine, metadata)

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()

    def create(
        self,
        upload_id: str,
        actor: str,
        priority: str,
        names: Sequence[str],
        expires: float,
        organisation: str | None = None,
    ) -> None:
        """Record a new open upload of ``names`` (by ``actor`` of ``organisation``)."""
        now = time.time()
        with write_transaction(self._engine) as conn:
            conn.execute(
                uploads.insert().values(
                    id=upload_id, actor=actor, organisation=organisation,
                    priority=priority, created_at=now,
                    expires_at=now + expires, state="open",
                )
            )  # fmt: skip
            conn.execute(
                upload_objects.insert(),
                [{"upload_id": upload_id, "name": name, "state": PENDING} for name in names],
            )

    def get(self, upload_id: str) -> UploadRow | None:
        """The upload and its objects, or ``None``."""
        with self._engine.connect() as conn:
            row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).mappings()
            found = row.first()
            if found is None:
                return None
            objects = conn.execute(
                select(upload_objects)
                .where(upload_objects.c.upload_id == upload_id)
                .order_by(upload_objects.c.name)
            ).mappings()
            items = tuple(
                ObjectRow(o["name"], o["state"], o["size"], o["status"], o["failure"])
                for o in objects
            )
        return UploadRow(
            id=found["id"], actor=found["actor"], priority=found["priority"],
            created_at=found["created_at"], expires_at=found["expires_at"],
            state=found["state"], completed_at=found["completed_at"], objects=items,
            organisation=found["organisation"],
        )  # fmt: skip

    def start_completing(self, upload_id: str) -> bool:
        """Move an open upload to ``completing``; ``False`` when it was not open (idempotent
        ``complete``: only the first call does the work)."""
        with write_transaction(self._engine) as conn:
            changed = conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.state == "open")
                .values(state="completing")
            )
            return bool(changed.rowcount)

    def set_object(
        self,
        upload_id: str,
        name: str,
        state: str,
        *,
        size: int | None = None,
        status: int | None = None,
        failure: str | None = None,
    ) -> None:
        """Record what became of one object."""
        values: dict[str, object] = {"state": state}
        if size is not None:
            values["size"] = size
        if status is not None:
            values["status"] = status
        if failure is not None:
            values["failure"] = failure
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(upload_objects)
                .where(upload_objects.c.upload_id == upload_id, upload_objects.c.name == name)
                .values(**values)
            )

    def finish(self, upload_id: str) -> None:
        """Mark the upload done (every object has its outcome)."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(state="done", completed_at=time.time())
            )

    def stale(self, cutoff: float) -> list[str]:
        """Ids of uploads to expire: open ones whose URLs expired before ``cutoff``, and
        ones left ``expiring`` (their objects not all deleted yet)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(uploads.c.id).where(
                    ((uploads.c.state == "open") & (uploads.c.expires_at < cutoff))
                    | (uploads.c.state == EXPIRING)
                )
            )
            return [row[0] for row in rows]

    def start_expiring(self, upload_id: str) -> bool:
        """Move an open upload (or one left expiring) to ``expiring``; ``False`` when it
        is neither (completed meanwhile: ``complete`` takes only open uploads)."""
        with write_transaction(self._engine) as conn:
            changed = conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.state.in_(("open", EXPIRING)))
                .values(state=EXPIRING)
            )
            return bool(changed.rowcount)

    def expired(self, upload_id: str) -> None:
        """Mark the upload and its pending objects expired (its objects are deleted)."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(upload_objects)
                .where(upload_objects.c.upload_id == upload_id, upload_objects.c.state == PENDING)
                .values(state=EXPIRED)
            )
            conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(state=EXPIRED, completed_at=time.time())
            )

    def unfinished(self) -> list[str]:
        """Ids of uploads left ``completing`` (a restart resumes them)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(uploads.c.id).where(uploads.c.state == "completing"))
            return [row[0] for row in rows]
