"""Frames of reference: the way back for Frame of Reference UIDs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

A returned segmentation, registration or structure set refers to the frame of reference of
the images it was made on; mapping it back lets it overlay the original images. Existing
vaults get an empty table (instances recorded before have no frame of reference to go back
to).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "vault_frame_of_reference"


def upgrade() -> None:
    """Create the frame-of-reference table and its indexes."""
    op.create_table(
        _TABLE,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("pseudonym_key_id", sa.String(32), nullable=False),
        sa.Column("pseudo_frame_of_reference_uid", sa.String(64), nullable=False),
        sa.Column("pseudo_study_uid", sa.String(64), nullable=False),
        sa.Column("vault_key_id", sa.String(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint(
            "pseudo_frame_of_reference_uid", "pseudonym_key_id", name=f"uq_{_TABLE}_pseudo"
        ),
    )
    op.create_index(f"ix_{_TABLE}_study", _TABLE, ["pseudo_study_uid"])
    op.create_index(f"ix_{_TABLE}_vault_key", _TABLE, ["vault_key_id"])


def downgrade() -> None:
    """Drop the frame-of-reference table (its way back is lost)."""
    op.drop_table(_TABLE)
