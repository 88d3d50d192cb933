"""Initial vault schema: keys, studies, series and instances.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

A revision is a frozen snapshot: it spells out its columns instead of importing
:mod:`dicomveil.vault.schema`, so replaying history always builds the same database.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _key(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(32), nullable=nullable)


def _text(name: str, length: int = 64) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=False)


def _sealed_row(table: str, unique: str, *columns: sa.Column[Any]) -> None:
    """Create a table with id, pseudonym key, ``columns``, vault key and sealed value."""
    op.create_table(
        table,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _key("pseudonym_key_id"),
        *columns,
        _key("vault_key_id"),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint(unique, "pseudonym_key_id", name=f"uq_{table}_pseudo"),
    )
    op.create_index(f"ix_{table}_vault_key", table, ["vault_key_id"])


def upgrade() -> None:
    """Create the four vault tables and their indexes."""
    op.create_table(
        "vault_key",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("check_value", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        _key("wrapped_by", nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    recorded = sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False)
    _sealed_row(
        "vault_study",
        "pseudo_study_uid",
        _text("pseudo_study_uid"),
        _text("pseudo_study_id"),
        _text("pseudo_patient_id"),
        _text("pseudo_accession"),
        _text("patient_index"),
        _text("run_id", 128),
        recorded,
    )
    for column, name in (
        ("pseudo_patient_id", "patient"),
        ("pseudo_study_id", "study_id"),
        ("pseudo_accession", "accession"),
        ("patient_index", "patient_index"),
    ):
        op.create_index(f"ix_vault_study_{name}", "vault_study", [column])
    _sealed_row(
        "vault_series",
        "pseudo_series_uid",
        _text("pseudo_series_uid"),
        _text("pseudo_study_uid"),
    )
    op.create_index("ix_vault_series_study", "vault_series", ["pseudo_study_uid"])
    _sealed_row(
        "vault_instance",
        "pseudo_sop_instance_uid",
        _text("pseudo_sop_instance_uid"),
        _text("pseudo_series_uid"),
        _text("pseudo_study_uid"),
        _text("run_id", 128),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_vault_instance_series", "vault_instance", ["pseudo_series_uid"])
    op.create_index("ix_vault_instance_study", "vault_instance", ["pseudo_study_uid"])


def downgrade() -> None:
    """Drop every vault table (destroys the way back: only for tests and fresh installs)."""
    for table in ("vault_instance", "vault_series", "vault_study", "vault_key"):
        op.drop_table(table)
