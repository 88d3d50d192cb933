"""The routing queue's tables (SQLAlchemy Core): arrivals, instances, jobs, sent records.

Only pseudonymous values are stored: de-identified UIDs, archive keys, the calling AE title
(a device name, not a person) and de-identified attribute values for rule matching.

- ``forward_arrivals``: one row per (study, source): the current completion round, whether it
  is still open, the last arrival time and the attribute values seen (JSON, for the rules).
- ``forward_instances``: each instance a source delivered, with the round it arrived in.
- ``forward_jobs``: one forward per (rule, study, source, round): priority, state
  (``queued``, ``running``, ``done``, ``dead``), attempts, next attempt time, lease.
- ``forward_sent``: (scope, SOP Instance UID) for every instance a destination acknowledged:
  nothing is sent twice to the same scope (a C-STORE or STOW-RS destination; one batch).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["arrivals", "instances", "jobs", "metadata", "sent"]

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
    UniqueConstraint("rule", "study_uid", "source", "round", name="forward_jobs_once"),
    Index("forward_jobs_claim", "state", "priority", "id"),
)

sent = Table(
    "forward_sent",
    metadata,
    Column("scope", String(1024), primary_key=True),
    Column("sop_instance_uid", _UID, primary_key=True),
    Column("job_id", Integer, nullable=False),
    Column("sent_at", Float, nullable=False),
)
