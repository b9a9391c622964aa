"""Add memories.changed_version for incremental refresh of the in-process search cache.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column (0 for existing rows: caches built before the upgrade reload fully) and its index."""
    op.add_column("memories", sa.Column("changed_version", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.create_index("ix_memories_user_changed", "memories", ["user_id", "changed_version"])


def downgrade() -> None:
    """Drop the index and the column."""
    op.drop_index("ix_memories_user_changed", table_name="memories")
    with op.batch_alter_table("memories") as batch:
        batch.drop_column("changed_version")
