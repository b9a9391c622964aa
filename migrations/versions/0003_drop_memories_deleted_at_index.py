"""Drop ix_memories_deleted_at.

Nearly every row has deleted_at NULL, so the index never narrows a "live rows" query, and
planners without table statistics (a fresh SQLite or PostgreSQL table) chose it anyway,
turning per-memory lookups into scans of all live rows. purge() scans the table instead.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop ix_memories_deleted_at."""
    op.drop_index("ix_memories_deleted_at", table_name="memories")


def downgrade() -> None:
    """Recreate ix_memories_deleted_at."""
    op.create_index("ix_memories_deleted_at", "memories", ["deleted_at"])
