"""Index adapters.blob_uri (orphan blob collection looks files up by URI).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ix_adapters_blob_uri."""
    op.create_index(op.f("ix_adapters_blob_uri"), "adapters", ["blob_uri"])


def downgrade() -> None:
    """Drop ix_adapters_blob_uri."""
    op.drop_index(op.f("ix_adapters_blob_uri"), table_name="adapters")
