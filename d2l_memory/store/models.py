"""SQLAlchemy 2 ORM models of the adapter store.

These models are the single source of truth for the schema; the Alembic
migrations in ``d2l_memory.migrations`` must agree with them (a test runs
Alembic's ``compare_metadata`` on every backend). Nothing outside the store
package should hold these objects: the public API returns the frozen
dataclasses of :mod:`d2l_memory.store.records`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

MEMORY_KINDS = ("document", "conversation", "consolidated")
HISTORY_EVENTS = ("add", "update", "delete", "purge", "expire")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime passed to the store; use datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def new_id() -> str:
    """A fresh random 32-hex-digit id (memories and adapters)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention shared with the migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A namespace. ``version`` increases on every write to the user's memories; other
    processes compare it to invalidate their in-memory embedding caches."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    memories: Mapped[list[Memory]] = relationship(back_populates="user", passive_deletes=True)


class Memory(Base):
    """One memory of one user: its text (optional), metadata and lifecycle timestamps."""

    __tablename__ = "memories"
    __table_args__ = (
        CheckConstraint("kind IN ('document', 'conversation', 'consolidated')", name="kind"),
        Index("ix_memories_user_sha", "user_id", "content_sha256"),
        Index("ix_memories_user_kind", "user_id", "kind"),
        Index("ix_memories_user_created", "user_id", "created_at"),
        Index("ix_memories_expires_at", "expires_at"),
        Index("ix_memories_user_changed", "user_id", "changed_version"),
        # No index on deleted_at: almost every row is NULL there, and planners without statistics
        # chose it for "deleted_at IS NULL" (a scan of every live row); migration 0003 dropped it.
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    source_text: Mapped[str | None] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The user's version after the last write that changed this memory's searchable state
    # (added, deleted, expired, TTL changed): other processes refresh their search cache
    # with the rows whose changed_version is above the version they cached.
    changed_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    user: Mapped[User] = relationship(back_populates="memories")
    adapter: Mapped[Adapter | None] = relationship(
        back_populates="memory", uselist=False, cascade="all, delete-orphan", passive_deletes=True
    )
    embeddings: Mapped[list[Embedding]] = relationship(
        back_populates="memory", cascade="all, delete-orphan", passive_deletes=True
    )


class Adapter(Base):
    """The LoRA adapter of a memory: safetensors bytes inline, or a blob URI in the file store."""

    __tablename__ = "adapters"
    __table_args__ = (
        CheckConstraint("(payload IS NOT NULL) OR (blob_uri IS NOT NULL)", name="payload_or_blob"),
        CheckConstraint("rank > 0", name="rank_positive"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    memory_id: Mapped[str] = mapped_column(
        ForeignKey("memories.id", ondelete="CASCADE"), unique=True
    )
    rank: Mapped[int] = mapped_column(Integer)
    target_modules: Mapped[list[str]] = mapped_column(JSON)
    dtype: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    base_model: Mapped[str] = mapped_column(String(512))
    hypernet_sha: Mapped[str] = mapped_column(String(128))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    blob_uri: Mapped[str | None] = mapped_column(String(1024), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    memory: Mapped[Memory] = relationship(back_populates="adapter")


class Embedding(Base):
    """An embedding vector of a memory (float32 little-endian bytes). ``user_id`` is
    denormalised so that one indexed query loads a user's whole matrix."""

    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("memory_id", "model", name="uq_embeddings_memory_model"),
        Index("ix_embeddings_user_model", "user_id", "model"),
        CheckConstraint("dim > 0", name="dim_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    memory_id: Mapped[str] = mapped_column(ForeignKey("memories.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(255))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)

    memory: Mapped[Memory] = relationship(back_populates="embeddings")


class Lineage(Base):
    """``child_id`` (a merged/consolidated memory) was made from ``parent_id``.

    ``parent_id`` is deliberately not a foreign key: lineage survives the purge of a parent.
    """

    __tablename__ = "lineage"

    child_id: Mapped[str] = mapped_column(
        ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True
    )
    parent_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    parent_adapter_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class History(Base):
    """An append-only log of changes. Never holds source text.

    ``memory_id`` is not a foreign key, so the log outlives purged memories.
    """

    __tablename__ = "history"
    __table_args__ = (
        CheckConstraint("event IN ('add', 'update', 'delete', 'purge', 'expire')", name="event"),
        Index("ix_history_user_memory", "user_id", "memory_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(255))
    memory_id: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    old_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
