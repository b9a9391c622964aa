"""Plain frozen dataclasses returned by the store API.

Callers never see ORM objects or sessions; these records are detached snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


@dataclass(frozen=True)
class UserRecord:
    """A user (namespace) and the number of its live memories."""

    id: str
    created_at: datetime
    memory_count: int = 0


@dataclass(frozen=True)
class AdapterInfo:
    """Description of a memory's adapter; the bytes come from ``AdapterStore.get_adapter_bytes``."""

    id: str
    rank: int
    target_modules: tuple[str, ...]
    dtype: str
    size_bytes: int
    sha256: str
    base_model: str
    hypernet_sha: str
    storage: str  # "inline" (in the database row) or "blob" (file store)
    blob_uri: str | None
    created_at: datetime


@dataclass(frozen=True)
class MemoryRecord:
    """A snapshot of one memory. ``metadata`` is a private copy; changing it changes nothing stored."""

    id: str
    user_id: str
    kind: str
    content_sha256: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    deleted_at: datetime | None
    text: str | None = None
    title: str | None = None
    summary: str | None = None
    adapter: AdapterInfo | None = None
    embedding_models: tuple[str, ...] = ()

    @property
    def is_deleted(self) -> bool:
        """True when the memory was soft-deleted (or marked expired by ``expire()``)."""
        return self.deleted_at is not None


@dataclass(frozen=True)
class NewMemory:
    """Input of ``AdapterStore.add_many``: the same fields as ``add_memory`` takes."""

    kind: str
    adapter_bytes: bytes
    rank: int
    target_modules: list[str] | tuple[str, ...]
    dtype: str
    base_model: str
    hypernet_sha: str
    embedding: np.ndarray | None = None
    embedding_model: str | None = None
    text: str | None = None
    title: str | None = None
    summary: str | None = None
    metadata: dict[str, Any] | None = None
    ttl_seconds: float | None = None
    parents: list[str] | tuple[str, ...] | None = None


@dataclass(frozen=True)
class HistoryEvent:
    """One entry of a memory's change log (never contains source text)."""

    id: int
    user_id: str
    memory_id: str
    event: str  # add | update | delete | purge | expire
    at: datetime
    old_metadata: dict[str, Any] | None
    new_metadata: dict[str, Any] | None
    details: dict[str, Any] | None


@dataclass(frozen=True)
class LineageRecord:
    """Where a memory came from (``parents``) and what was merged from it (``children``)."""

    memory_id: str
    parents: tuple[str, ...]
    children: tuple[str, ...]


@dataclass(frozen=True)
class PurgeReport:
    """What ``purge`` removed."""

    memories: int = 0
    blob_files: int = 0
    orphan_blob_files: int = 0
    memory_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ImportReport:
    """What ``import_user`` added (``skipped`` already existed with the same content)."""

    user_id: str
    imported: int
    skipped: int
    memory_ids: tuple[str, ...] = ()
