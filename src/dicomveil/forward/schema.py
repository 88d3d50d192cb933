"""The routing queue's tables (SQLAlchemy Core): arrivals, instances, jobs, sent records.

Only pseudonymous values are stored: de-identified UIDs, archive keys, the calling AE title
(a device name, not a person) and de-identified attribute values for rule matching.

- ``forward_arrivals``: one row per (study, source): the current completion round, whether it
  is still open, the last arrival time and the attribute values seen (JSON, for the rules).
- ``forward_instances``: each instance a source delivered, with the round it arrived in.
- ``forward_jobs``: one forward per (rule, study, source, round): priority, state
  (``queued``, ``running``, ``done``, ``dead``), attempts, next attempt time, lease;
  ``complete`` (its round is closed: the forward may end once everything is acknowledged;
  an on-arrival forward is created before, with 0) and ``parked`` (an on-arrival forward
  waiting for more instances: not claimable until an arrival or the completion wakes it);
  ``total`` and ``sent`` are kept current while it streams.
- ``forward_sent``: (scope, SOP Instance UID) for every instance a destination acknowledged:
  nothing is sent twice to the same scope (a C-STORE or STOW-RS destination; one batch).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)

__all__ = ["arrivals", "instances", "jobs", "metadata", "sent", "upgrade"]

metadata = MetaData()

_UID: Final = String(64)
_NAME: Final = String(255)

arrivals = Table(
    "forward_arrivals",
    metadata,
    Column("study_uid", _UID, primary_key=True),
    Column("source", _NAME, primary_key=True),
    Column("round", Integer, nullable=False),
    Column("open", Integer, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("instances", Integer, nullable=False),
    Column("attributes", Text, nullable=False),
    Index("forward_arrivals_open", "open"),
)

instances = Table(
    "forward_instances",
    metadata,
    Column("study_uid", _UID, primary_key=True),
    Column("source", _NAME, primary_key=True),
    Column("sop_instance_uid", _UID, primary_key=True),
    Column("round", Integer, nullable=False),
    Column("series_uid", _UID, nullable=False),
    Column("sop_class_uid", _UID, nullable=False),
    Column("storage_key", String(1024), nullable=False),
    Column("modality", String(16)),
)

jobs = Table(
    "forward_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", _NAME, nullable=False),
    Column("action", String(16), nullable=False),
    Column("target", String(1024), nullable=False),
    Column("study_uid", _UID, nullable=False),
    Column("source", _NAME, nullable=False),
    Column("round", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", Float, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("total", Integer, nullable=False, default=0),
    Column("sent", Integer, nullable=False, default=0),
    Column("error", String(255)),
    Column("batch_id", String(32)),
    Column("complete", Integer, nullable=False, server_default="1"),
    Column("parked", Integer, nullable=False, server_default="0"),
    UniqueConstraint("rule", "study_uid", "source", "round", name="forward_jobs_once"),
    Index("forward_jobs_claim", "state", "priority", "id"),
    Index("forward_jobs_round", "study_uid", "source", "round"),
)

sent = Table(
    "forward_sent",
    metadata,
    Column("scope", String(1024), primary_key=True),
    Column("sop_instance_uid", _UID, primary_key=True),
    Column("job_id", Integer, nullable=False),
    Column("sent_at", Float, nullable=False),
    Index("forward_sent_job", "job_id"),
)

_ADDED: Final = (
    ("complete", "INTEGER NOT NULL DEFAULT 1"),
    ("parked", "INTEGER NOT NULL DEFAULT 0"),
)
"""Columns of ``forward_jobs`` newer than the table (a queue written before on-arrival
forwards): every job there was created at completion, hence ``complete`` 1."""


def upgrade(connection: Connection) -> None:
    """Bring a queue database written by an older dicomveil up to these tables, in place.

    Idempotent; run in the transaction that creates the tables. Only columns with defaults
    are added, so an older dicomveil still reads and writes the upgraded queue.
    """
    present = {column["name"] for column in inspect(connection).get_columns(jobs.name)}
    guard = "IF NOT EXISTS " if connection.dialect.name == "postgresql" else ""
    for name, definition in _ADDED:
        if name not in present:
            connection.exec_driver_sql(
                f"ALTER TABLE {jobs.name} ADD COLUMN {guard}{name} {definition}"
            )
    for index, table, columns in (
        ("forward_jobs_round", jobs.name, "study_uid, source, round"),
        ("forward_sent_job", sent.name, "job_id"),
    ):
        connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({columns})")
