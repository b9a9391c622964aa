"""SQL building blocks shared by the store: liveness and metadata filters, row-to-record mapping."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, cast, false, func, literal, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, defer

from .models import Adapter, Embedding, Memory
from .records import AdapterInfo, MemoryRecord

T = TypeVar("T")
IN_CHUNK = 500  # ids per IN (...) list


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def live(now: datetime) -> ColumnElement[bool]:
    """Not deleted and not expired at ``now``."""
    return and_(Memory.deleted_at.is_(None), or_(Memory.expires_at.is_(None), Memory.expires_at > now))


def is_live(m: Memory, now: datetime) -> bool:
    """Python twin of :func:`live` for rows fetched by primary key."""
    return m.deleted_at is None and (m.expires_at is None or m.expires_at > now)


def expired_or_deleted(now: datetime) -> ColumnElement[bool]:
    return or_(Memory.deleted_at.is_not(None), Memory.expires_at <= now)


def metadata_equals(dialect: str, key: str, value: Any) -> ColumnElement[bool]:
    """``metadata[key] == value`` for a scalar JSON value, with JSON type semantics on both backends
    (``True`` does not match ``1``; ``None`` matches a stored null but not a missing key)."""
    if dialect == "postgresql":
        return cast(Memory.meta, JSONB)[key] == cast(literal(json.dumps(value)), JSONB)
    path = f'$."{key}"'
    jtype = func.json_type(Memory.meta, path)
    jval = func.json_extract(Memory.meta, path)
    if value is None:
        return jtype == "null"
    if isinstance(value, bool):
        return jtype == ("true" if value else "false")
    if isinstance(value, (int, float)):
        return and_(jtype.in_(("integer", "real")), jval == value)
    if isinstance(value, str):
        return and_(jtype == "text", jval == value)
    return false()


def memory_filter(dialect: str, user_id: str, now: datetime, kinds: Sequence[str] | None = None,
                  metadata: dict[str, Any] | None = None, include_deleted: bool = False) -> ColumnElement[bool]:
    """The WHERE clause of ``list_memories`` / ``count``."""
    clauses = [Memory.user_id == user_id]
    if not include_deleted:
        clauses.append(live(now))
    if kinds:
        clauses.append(Memory.kind.in_(list(kinds)))
    for key, value in (metadata or {}).items():
        clauses.append(metadata_equals(dialect, key, value))
    return and_(true(), *clauses)


def adapter_info(a: Adapter) -> AdapterInfo:
    return AdapterInfo(
        id=a.id,
        rank=a.rank,
        target_modules=tuple(a.target_modules),
        dtype=a.dtype,
        size_bytes=a.size_bytes,
        sha256=a.sha256,
        base_model=a.base_model,
        hypernet_sha=a.hypernet_sha,
        storage="blob" if a.blob_uri else "inline",
        blob_uri=a.blob_uri,
        created_at=a.created_at,
    )


def to_record(m: Memory, a: Adapter | None, models: Iterable[str] = ()) -> MemoryRecord:
    return MemoryRecord(
        id=m.id,
        user_id=m.user_id,
        kind=m.kind,
        content_sha256=m.content_sha256,
        metadata=json.loads(json.dumps(m.meta or {})),
        created_at=m.created_at,
        updated_at=m.updated_at,
        expires_at=m.expires_at,
        deleted_at=m.deleted_at,
        text=m.source_text,
        title=m.title,
        summary=m.summary,
        adapter=adapter_info(a) if a is not None else None,
        embedding_models=tuple(sorted(models)),
    )


MODEL_SEP = "\x1f"  # ASCII unit separator: joins embedding model names in one column


def memories_with_adapters(where: ColumnElement[bool]):  # noqa: ANN201
    """``SELECT memory, adapter (without payload), embedding model names`` for the given filter.

    The model names come from a correlated subquery (``string_agg`` / ``group_concat``), so a
    record costs one round trip to the database.
    """
    models = (
        select(func.aggregate_strings(Embedding.model, MODEL_SEP))
        .where(Embedding.memory_id == Memory.id)
        .scalar_subquery()
    )
    return (
        select(Memory, Adapter, models)
        .outerjoin(Adapter, Adapter.memory_id == Memory.id)
        .options(defer(Adapter.payload))
        .where(where)
    )


def _models(joined: str | None) -> list[str]:
    return joined.split(MODEL_SEP) if joined else []


def records_by_id(s: Session, user_id: str, ids: Sequence[str], now: datetime, *,
                  live_only: bool = True) -> dict[str, MemoryRecord]:
    """Records of the given ids that belong to ``user_id`` (and are live, by default).

    The query filters on the primary key only and the owner and liveness are checked here:
    with ``user_id = ?`` in the WHERE clause, planners without table statistics (a fresh SQLite
    or PostgreSQL table) pick the user index and scan every row of the user.
    """
    out: dict[str, MemoryRecord] = {}
    for part in chunks(list(dict.fromkeys(ids))):
        for m, a, models in s.execute(memories_with_adapters(Memory.id.in_(part))).all():
            if m.user_id == user_id and (not live_only or is_live(m, now)):
                out[m.id] = to_record(m, a, _models(models))
    return out


def load_records(s: Session, stmt) -> list[MemoryRecord]:  # noqa: ANN001
    """Run a :func:`memories_with_adapters` statement and build the records, in row order."""
    return [to_record(m, a, _models(models)) for m, a, models in s.execute(stmt).all()]
