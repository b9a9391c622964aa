"""Initial schema of the adapter store: users, memories, adapters, embeddings, lineage, history.

Revision ID: 0001
Revises:
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of the store."""
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "memories",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("source_text", sa.Text(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("deleted_at", TS, nullable=True),
        sa.CheckConstraint(
            "kind IN ('document', 'conversation', 'consolidated')", name=op.f("ck_memories_kind")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memories_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memories")),
    )
    op.create_index("ix_memories_deleted_at", "memories", ["deleted_at"])
    op.create_index("ix_memories_expires_at", "memories", ["expires_at"])
    op.create_index("ix_memories_user_created", "memories", ["user_id", "created_at"])
    op.create_index("ix_memories_user_kind", "memories", ["user_id", "kind"])
    op.create_index("ix_memories_user_sha", "memories", ["user_id", "content_sha256"])

    op.create_table(
        "adapters",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("memory_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("target_modules", sa.JSON(), nullable=False),
        sa.Column("dtype", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("base_model", sa.String(length=512), nullable=False),
        sa.Column("hypernet_sha", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("blob_uri", sa.String(length=1024), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "(payload IS NOT NULL) OR (blob_uri IS NOT NULL)", name=op.f("ck_adapters_payload_or_blob")
        ),
        sa.CheckConstraint("rank > 0", name=op.f("ck_adapters_rank_positive")),
        sa.ForeignKeyConstraint(
            ["memory_id"], ["memories.id"], name=op.f("fk_adapters_memory_id_memories"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapters")),
        sa.UniqueConstraint("memory_id", name=op.f("uq_adapters_memory_id")),
    )

    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("memory_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("dim > 0", name=op.f("ck_embeddings_dim_positive")),
        sa.ForeignKeyConstraint(
            ["memory_id"], ["memories.id"], name=op.f("fk_embeddings_memory_id_memories"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_embeddings_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings")),
        sa.UniqueConstraint("memory_id", "model", name="uq_embeddings_memory_model"),
    )
    op.create_index("ix_embeddings_user_model", "embeddings", ["user_id", "model"])

    op.create_table(
        "lineage",
        sa.Column("child_id", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("parent_adapter_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"], ["memories.id"], name=op.f("fk_lineage_child_id_memories"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_lineage_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("child_id", "parent_id", name=op.f("pk_lineage")),
    )
    op.create_index(op.f("ix_lineage_user_id"), "lineage", ["user_id"])

    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("memory_id", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("old_metadata", sa.JSON(), nullable=True),
        sa.Column("new_metadata", sa.JSON(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "event IN ('add', 'update', 'delete', 'purge', 'expire')", name=op.f("ck_history_event")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history")),
    )
    op.create_index("ix_history_user_memory", "history", ["user_id", "memory_id"])


def downgrade() -> None:
    """Drop every table of the store (and the optional pgvector side table)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS embedding_vectors")
    op.drop_index("ix_history_user_memory", table_name="history")
    op.drop_table("history")
    op.drop_index(op.f("ix_lineage_user_id"), table_name="lineage")
    op.drop_table("lineage")
    op.drop_index("ix_embeddings_user_model", table_name="embeddings")
    op.drop_table("embeddings")
    op.drop_table("adapters")
    for ix in (
        "ix_memories_user_sha",
        "ix_memories_user_kind",
        "ix_memories_user_created",
        "ix_memories_expires_at",
        "ix_memories_deleted_at",
    ):
        op.drop_index(ix, table_name="memories")
    op.drop_table("memories")
    op.drop_table("users")
