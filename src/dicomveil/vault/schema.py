"""The vault's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Pseudonymous values (UIDs, ids, accession) are stored in clear: they are not secret and are
what lookups search. Original values exist only inside the ``sealed`` columns, and the
original patient identity additionally as a keyed blind index (``patient_index``).

Every row carries the id of the pseudonym key that produced its pseudonyms
(``pseudonym_key_id``) and of the vault key that sealed it (``vault_key_id``).

The tables are created and upgraded by the Alembic revisions in ``migrations/versions``;
a change here needs a new revision there.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

__all__ = [
    "SEALED_TABLES",
    "frames_of_reference",
    "instances",
    "keys",
    "metadata",
    "series",
    "studies",
]

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")
_UID = String(64)
_KEY_ID = String(32)

keys = Table(
    "vault_key",
    metadata,
    Column("key_id", _KEY_ID, primary_key=True),
    Column("state", String(16), nullable=False),  # "active" or "pending" (rotation)
    Column("check_value", LargeBinary, nullable=False),
    Column("wrapped", LargeBinary, nullable=True),
    Column("wrapped_by", _KEY_ID, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

studies = Table(
    "vault_study",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("pseudonym_key_id", _KEY_ID, nullable=False),
    Column("pseudo_study_uid", _UID, nullable=False),
    Column("pseudo_study_id", String(64), nullable=False),
    Column("pseudo_patient_id", String(64), nullable=False),
    Column("pseudo_accession", String(64), nullable=False),
    Column("patient_index", String(64), nullable=False),
    Column("run_id", String(128), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("vault_key_id", _KEY_ID, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    UniqueConstraint("pseudo_study_uid", "pseudonym_key_id", name="uq_vault_study_pseudo"),
    Index("ix_vault_study_patient", "pseudo_patient_id"),
    Index("ix_vault_study_study_id", "pseudo_study_id"),
    Index("ix_vault_study_accession", "pseudo_accession"),
    Index("ix_vault_study_patient_index", "patient_index"),
    Index("ix_vault_study_vault_key", "vault_key_id"),
)

series = Table(
    "vault_series",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("pseudonym_key_id", _KEY_ID, nullable=False),
    Column("pseudo_series_uid", _UID, nullable=False),
    Column("pseudo_study_uid", _UID, nullable=False),
    Column("vault_key_id", _KEY_ID, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    UniqueConstraint("pseudo_series_uid", "pseudonym_key_id", name="uq_vault_series_pseudo"),
    Index("ix_vault_series_study", "pseudo_study_uid"),
    Index("ix_vault_series_vault_key", "vault_key_id"),
)

instances = Table(
    "vault_instance",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("pseudonym_key_id", _KEY_ID, nullable=False),
    Column("pseudo_sop_instance_uid", _UID, nullable=False),
    Column("pseudo_series_uid", _UID, nullable=False),
    Column("pseudo_study_uid", _UID, nullable=False),
    Column("run_id", String(128), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("vault_key_id", _KEY_ID, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    UniqueConstraint(
        "pseudo_sop_instance_uid", "pseudonym_key_id", name="uq_vault_instance_pseudo"
    ),
    Index("ix_vault_instance_series", "pseudo_series_uid"),
    Index("ix_vault_instance_study", "pseudo_study_uid"),
    Index("ix_vault_instance_vault_key", "vault_key_id"),
)

frames_of_reference = Table(
    "vault_frame_of_reference",
    metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("pseudonym_key_id", _KEY_ID, nullable=False),
    Column("pseudo_frame_of_reference_uid", _UID, nullable=False),
    Column("pseudo_study_uid", _UID, nullable=False),
    Column("vault_key_id", _KEY_ID, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    UniqueConstraint(
        "pseudo_frame_of_reference_uid",
        "pseudonym_key_id",
        name="uq_vault_frame_of_reference_pseudo",
    ),
    Index("ix_vault_frame_of_reference_study", "pseudo_study_uid"),
    Index("ix_vault_frame_of_reference_vault_key", "vault_key_id"),
)
"""Frames of reference (the study of first sight): a returned segmentation or registration
refers to its images' frame of reference, which must map back for it to overlay them."""

#: The tables holding sealed values, parents first.
SEALED_TABLES: tuple[Table, ...] = (studies, series, instances, frames_of_reference)
