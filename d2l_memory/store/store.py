"""The :class:`AdapterStore`: per-user memories, their LoRA adapters and embeddings in SQL.

Every public method opens and closes its own transaction and returns plain frozen
dataclasses; callers never hold a session. Every method that takes a ``user_id``
only ever sees that user's rows: an id of another user is reported exactly like a
missing id (:class:`~d2l_memory.store.errors.MemoryNotFound`).

Writes are atomic. A large adapter is written to the blob store *before* the
database transaction commits; if anything fails the transaction is rolled back and
the blob files it wrote are removed, so no memory exists without its adapter and
no blob exists without its memory. (A process killed between the two leaves an
orphan file, which ``purge()`` collects after a grace period.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import index_sync, migrate, pgvector, queries
from . import validate as v
from .blobs import BlobStore
from .config import StoreConfig
from .engine import Engines, describe, make_engines
from .errors import (
    ConfigError,
    CorruptAdapterError,
    EmbeddingDimMismatch,
    MemoryNotFound,
    MigrationError,
    StoreError,
    UserNotFound,
    ValidationError,
)
from .models import Adapter, Embedding, History, Lineage, Memory, User, new_id, utcnow
from .records import (
    HistoryEvent,
    ImportReport,
    LineageRecord,
    MemoryRecord,
    NewMemory,
    PurgeReport,
    UserRecord,
)
from .search import CacheOp, EmbeddingCache

log = logging.getLogger(__name__)


class AdapterStore:
    """Per-user store of memories (text, metadata, LoRA adapter, embeddings, lineage, history).

    Args:
        url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``); ``None`` uses
            ``$D2L_MEMORY_DB_URL`` or ``<data home>/memory.db``.
        config: a full :class:`StoreConfig`; keyword ``overrides`` replace its fields.

    The schema is upgraded to the newest migration on open (``auto_upgrade=True``).
    Use as a context manager or call :meth:`close` to release connections.
    """

    def __init__(self, url: str | None = None, *, config: StoreConfig | None = None, **overrides: Any):
        if config is None:
            config = StoreConfig(url=url, **overrides)
        elif url is not None or overrides:
            config = replace(config, **({"url": url} if url is not None else {}), **overrides)
        self.config = config
        self._engines: Engines = make_engines(config)
        self._blobs = BlobStore(Path(config.blob_dir))  # type: ignore[arg-type]
        self._cache = EmbeddingCache() if config.embedding_cache else None
        try:
            self._open_schema()
            self._pgvector_schema = self._detect_pgvector()
        except BaseException:
            self._engines.dispose()
            raise
        log.debug("opened store %s (blobs in %s)", describe(config.url or ""), config.blob_dir)

    # ----------------------------------------------------------------- plumbing

    def _open_schema(self) -> None:
        if self.config.auto_upgrade:
            migrate.ensure_head(self._engines.write)
            return
        with self._engines.read.connect() as conn:
            rev = migrate.current_on(conn)
        if rev != migrate.head():
            raise MigrationError(
                f"database schema is at {rev!r}, the store needs {migrate.head()!r}. Fix: run "
                f"'d2l-memory db upgrade' or open the store with auto_upgrade=True"
            )

    def _detect_pgvector(self) -> str | None:
        mode = self.config.search_backend
        if self.config.backend != "postgresql" or mode == "numpy":
            if mode == "pgvector":
                raise ConfigError("invalid search_backend 'pgvector' for SQLite. Fix: use 'auto' or 'numpy'")
            return None
        ok = pgvector.enable(self._engines.write)
        if mode == "pgvector" and ok is None:
            raise ConfigError(
                "invalid search_backend 'pgvector': the vector extension is not available on this server. "
                "Fix: install pgvector on the server, or use search_backend='auto'"
            )
        return ok

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engines.write.dialect.name

    @property
    def uses_pgvector(self) -> bool:
        """True when searches run in PostgreSQL through pgvector."""
        return self._pgvector_schema is not None

    @property
    def blob_store(self) -> BlobStore:
        """The file store of large adapters."""
        return self._blobs

    @property
    def cache(self) -> EmbeddingCache | None:
        """The in-process embedding cache (None when disabled)."""
        return self._cache

    def close(self) -> None:
        """Release database connections. The store cannot be used afterwards."""
        self._engines.dispose()

    def __enter__(self) -> AdapterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        with Session(self._engines.write, expire_on_commit=False) as s, s.begin():
            yield s

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A read-only session (SQLite: one snapshot; PostgreSQL: autocommit, each query its own)."""
        with Session(self._engines.read) as s:
            yield s

    @contextmanager
    def _snapshot(self) -> Iterator[Session]:
        """A read-only transaction that sees one consistent state across several queries."""
        engine = self._engines.read
        if self.dialect == "postgresql":
            engine = self._engines.write.execution_options(isolation_level="REPEATABLE READ")
        with Session(engine) as s:
            yield s

    def _insert_user(self, s: Session, user_id: str, created_at: datetime) -> None:
        ins = pg_insert(User) if self.dialect == "postgresql" else sqlite_insert(User)
        s.execute(ins.values(id=user_id, created_at=created_at, version=0).on_conflict_do_nothing(
            index_elements=["id"]))

    @staticmethod
    def _bump(s: Session, user_id: str) -> tuple[int, int] | None:
        """Increase the user's version; returns (before, after), or None for an unknown user.

        Every write transaction calls this *first*: on PostgreSQL it locks the user's row, so
        writers of one user are serialised and always take their locks in the same order
        (user row, then memory rows), which rules out deadlocks between them. Rows whose
        searchable state the write changes get ``changed_version = after``, which lets other
        processes refresh their cached search index with only the changed rows.
        """
        after = s.execute(
            update(User).where(User.id == user_id).values(version=User.version + 1).returning(User.version),
            execution_options={"synchronize_session": False},
        ).scalar_one_or_none()
        return None if after is None else (after - 1, after)

    def _cache_apply(self, user_id: str, versions: tuple[int, int], ops: Sequence[CacheOp]) -> None:
        if self._cache is not None:
            self._cache.apply(user_id, versions[0], versions[1], ops)

    def _get_live(self, s: Session, user_id: str, memory_id: str, now: datetime, *,
                  for_update: bool = False) -> Memory:
        stmt = select(Memory).where(Memory.id == memory_id)  # by primary key only: see queries.records_by_id
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        mem = s.execute(stmt).scalar_one_or_none()
        if mem is None or mem.user_id != user_id or not queries.is_live(mem, now):
            raise MemoryNotFound(user_id, memory_id)
        return mem

    def _history(self, s: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Append history rows (``user_id, memory_id, event, at, old/new_metadata, details``)."""
        if rows:
            s.execute(insert(History), [
                {"old_metadata": None, "new_metadata": None, "details": None, **r} for r in rows
            ])

    # ----------------------------------------------------------------- users

    def create_user(self, user_id: str) -> UserRecord:
        """Create a user (namespace) explicitly; returns the existing one if present."""
        user_id = v.check_user_id(user_id)
        with self._write() as s:
            self._insert_user(s, user_id, utcnow())
        return self.get_user(user_id)

    def get_user(self, user_id: str) -> UserRecord:
        """The user and its number of live memories; :class:`UserNotFound` if absent."""
        user_id = v.check_user_id(user_id)
        with self._read() as s:
            user = s.get(User, user_id)
            if user is None:
                raise UserNotFound(user_id)
            n = s.execute(
                select(func.count()).select_from(Memory).where(
                    Memory.user_id == user_id, queries.live(utcnow()))
            ).scalar_one()
            return UserRecord(id=user.id, created_at=user.created_at, memory_count=n)

    def list_users(self) -> list[UserRecord]:
        """All users, sorted by id, with their live memory counts."""
        now = utcnow()
        with self._read() as s:
            counts = dict(s.execute(
                select(Memory.user_id, func.count()).where(queries.live(now)).group_by(Memory.user_id)
            ).all())
            users = s.execute(select(User.id, User.created_at).order_by(User.id)).all()
        return [UserRecord(id=u, created_at=c, memory_count=counts.get(u, 0)) for u, c in users]

    # ----------------------------------------------------------------- writes

    def add_memory(self, user_id: str, kind: str, *, adapter_bytes: bytes, rank: int,
                   target_modules: Sequence[str], dtype: str, base_model: str, hypernet_sha: str,
                   embedding: np.ndarray | None = None, embedding_model: str | None = None,
                   text: str | None = None, title: str | None = None, summary: str | None = None,
                   metadata: dict[str, Any] | None = None, ttl_seconds: float | None = None,
                   parents: Sequence[str] | None = None, dedup: bool = True) -> MemoryRecord:
        """Store one memory with its adapter (and optionally its embedding); creates the user if needed.

        ``adapter_bytes`` are the bytes of a safetensors file, stored inline or in the blob store
        (above ``inline_blob_max_bytes``). The content sha256 is computed from ``text`` when given,
        else from the adapter bytes; with ``dedup`` a live memory of this user with the same content
        sha256 is returned instead of inserting a new one. ``parents`` are ids of this user's live
        memories this one was merged from (recorded as lineage). ``ttl_seconds`` makes it expire.
        Raises :class:`ValidationError` (nothing stored) for bad input,
        :class:`EmbeddingDimMismatch` when the embedding's dimension differs from this user's other
        embeddings of ``embedding_model``, :class:`MemoryNotFound` for an unknown parent.
        """
        item = NewMemory(kind=kind, adapter_bytes=adapter_bytes, rank=rank, target_modules=target_modules,
                         dtype=dtype, base_model=base_model, hypernet_sha=hypernet_sha, embedding=embedding,
                         embedding_model=embedding_model, text=text, title=title, summary=summary,
                         metadata=metadata, ttl_seconds=ttl_seconds, parents=parents)
        return self.add_many(user_id, [item], dedup=dedup)[0]

    def add_many(self, user_id: str, items: Sequence[NewMemory], *, dedup: bool = True) -> list[MemoryRecord]:
        """Store several memories of one user in one transaction (all or nothing).

        Same semantics as :meth:`add_memory` for each item; duplicates within the batch are
        deduplicated too. Returns one record per item, in order.
        """
        user_id = v.check_user_id(user_id)
        if isinstance(items, NewMemory) or not isinstance(items, Sequence):
            raise ValidationError("items", "expected a list of NewMemory", "pass [NewMemory(...), ...]")
        prepared = []
        for i, it in enumerate(items):
            if not isinstance(it, NewMemory):
                raise ValidationError(f"items[{i}]", f"got {type(it).__name__}", "pass NewMemory objects")
            prepared.append(v.prepare(**{f: getattr(it, f) for f in it.__dataclass_fields__}))
        if not prepared:
            return []
        dims: dict[str, int] = {}
        for p in prepared:
            if p.embedding is not None:
                want = dims.setdefault(p.embedding_model, p.embedding.shape[0])  # type: ignore[arg-type]
                if want != p.embedding.shape[0]:
                    raise EmbeddingDimMismatch(p.embedding_model, want, p.embedding.shape[0])  # type: ignore[arg-type]

        written: list[str] = []
        try:
            with self._write() as s:
                result_ids, new_records, ops, versions = self._add_in_txn(s, user_id, prepared, dims, dedup,
                                                                          written)
        except BaseException:
            for uri in written:
                self._blobs.delete(uri)
            raise
        self._cache_apply(user_id, versions, ops)
        missing = [i for i in dict.fromkeys(result_ids) if i not in new_records]
        if missing:
            with self._read() as s:
                new_records.update(queries.records_by_id(s, user_id, missing, utcnow(), live_only=False))
        for i in result_ids:
            if i not in new_records:  # a deduplicated-to memory purged by another process meanwhile
                raise MemoryNotFound(user_id, i)
        return [new_records[i] for i in result_ids]

    def _add_in_txn(self, s: Session, user_id: str, prepared: list[v.PreparedMemory], dims: dict[str, int],
                    dedup: bool, written: list[str]):  # noqa: ANN202
        now = utcnow()
        self._insert_user(s, user_id, now)
        versions = self._bump(s, user_id)
        assert versions is not None  # the user row was just ensured

        existing: dict[str, str] = {}
        if dedup:
            shas = list({p.content_sha256 for p in prepared})
            found = []
            for part in queries.chunks(shas):
                # no ORDER BY: it made SQLite walk ix_memories_user_created instead of ix_memories_user_sha
                found += s.execute(
                    select(Memory.created_at, Memory.id, Memory.content_sha256)
                    .where(Memory.user_id == user_id, Memory.content_sha256.in_(part), queries.live(now))
                ).all()
            for _, mid, sha in sorted(found):
                existing.setdefault(sha, mid)  # the oldest live memory with this content
        for model, dim in dims.items():
            have = s.execute(
                select(Embedding.dim).where(Embedding.user_id == user_id, Embedding.model == model).limit(1)
            ).scalar_one_or_none()
            if have is not None and have != dim:
                raise EmbeddingDimMismatch(model, have, dim)
        parent_ids = list({pid for p in prepared for pid in p.parents})
        parent_sha: dict[str, str | None] = {}
        for part in queries.chunks(parent_ids):
            for m, sha in s.execute(
                select(Memory, Adapter.sha256).outerjoin(Adapter, Adapter.memory_id == Memory.id)
                .where(Memory.id.in_(part))
            ):
                if m.user_id == user_id and queries.is_live(m, now):
                    parent_sha[m.id] = sha
        for pid in parent_ids:
            if pid not in parent_sha:
                raise MemoryNotFound(user_id, pid)

        result_ids: list[str] = []
        records: dict[str, MemoryRecord] = {}
        rows: dict[str, list[dict[str, Any]]] = {"mem": [], "ad": [], "emb": [], "lin": [], "hist": []}
        ops: list[CacheOp] = []
        vectors: list[tuple[str, str, str, np.ndarray]] = []
        for p in prepared:
            if dedup and p.content_sha256 in existing:
                result_ids.append(existing[p.content_sha256])
                continue
            mid, aid = new_id(), new_id()
            expires = now + timedelta(seconds=p.ttl_seconds) if p.ttl_seconds is not None else None
            inline = len(p.adapter_bytes) <= self.config.inline_blob_max_bytes
            blob_uri = None
            if not inline:
                blob_uri = self._blobs.uri_for(aid)
                written.append(blob_uri)  # registered first: removed even if the write fails halfway
                self._blobs.write(aid, p.adapter_bytes)
            mem = dict(id=mid, user_id=user_id, kind=p.kind, title=p.title, summary=p.summary,
                       source_text=p.text, content_sha256=p.content_sha256, meta=p.metadata, created_at=now,
                       updated_at=now, expires_at=expires, deleted_at=None, changed_version=versions[1])
            ad = dict(id=aid, memory_id=mid, rank=p.rank, target_modules=p.target_modules, dtype=p.dtype,
                      size_bytes=len(p.adapter_bytes), sha256=p.adapter_sha256, base_model=p.base_model,
                      hypernet_sha=p.hypernet_sha, payload=p.adapter_bytes if inline else None,
                      blob_uri=blob_uri, created_at=now)
            rows["mem"].append(mem)
            rows["ad"].append(ad)
            if p.embedding is not None:
                rows["emb"].append(dict(memory_id=mid, user_id=user_id, model=p.embedding_model,
                                        dim=p.embedding.shape[0], vector=p.embedding.tobytes()))
                ops.append(CacheOp("add", mid, p.embedding_model, p.embedding, p.kind, expires))
                vectors.append((mid, p.embedding_model, user_id, p.embedding))  # type: ignore[arg-type]
            for pid in p.parents:
                rows["lin"].append(dict(child_id=mid, parent_id=pid, user_id=user_id,
                                        parent_adapter_sha256=parent_sha[pid], created_at=now))
            rows["hist"].append(dict(
                user_id=user_id, memory_id=mid, event="add", at=now, new_metadata=p.metadata,
                details={"kind": p.kind, "content_sha256": p.content_sha256, "adapter_sha256": p.adapter_sha256,
                         "size_bytes": len(p.adapter_bytes), "storage": "inline" if inline else "blob",
                         "expires_at": expires.isoformat() if expires else None, "parents": p.parents}))
            m_obj, a_obj = Memory(**mem), Adapter(**ad)
            records[mid] = queries.to_record(m_obj, a_obj, [p.embedding_model] if p.embedding is not None else [])
            if dedup:
                existing[p.content_sha256] = mid
            result_ids.append(mid)
        self._insert_rows(s, rows)
        if vectors and self._pgvector_schema is not None:
            pgvector.insert_rows(s.connection(), self._pgvector_schema, vectors)
        return result_ids, records, ops, versions

    def _insert_rows(self, s: Session, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Insert the prepared rows (memories first, history last) in the open transaction."""
        for model, key in ((Memory, "mem"), (Adapter, "ad"), (Embedding, "emb"), (Lineage, "lin")):
            if rows[key]:
                s.execute(insert(model), rows[key])
        self._history(s, rows["hist"])

    def update_metadata(self, user_id: str, memory_id: str, metadata: dict[str, Any], *,
                        merge: bool = True) -> MemoryRecord:
        """Replace (``merge=False``) or update (``merge=True``, key by key) a live memory's metadata."""
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        new_meta = v.check_metadata(metadata)
        now = utcnow()
        with self._write() as s:
            mem = self._get_live(s, user_id, memory_id, now, for_update=True)
            old = dict(mem.meta or {})
            new = {**old, **new_meta} if merge else new_meta
            s.execute(update(Memory).where(Memory.id == memory_id).values(meta=new, updated_at=now),
                      execution_options={"synchronize_session": False})
            self._history(s, [dict(user_id=user_id, memory_id=memory_id, event="update", at=now,
                                   old_metadata=old, new_metadata=new, details={"merge": merge})])
        return self.get_memory(user_id, memory_id)

    def set_ttl(self, user_id: str, memory_id: str, ttl_seconds: float | None) -> MemoryRecord | None:
        """Make a live memory expire ``ttl_seconds`` from now (``None``: never).

        Returns the updated record, or ``None`` when ``ttl_seconds=0`` expired it at once.
        """
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        ttl = v.check_ttl_seconds(ttl_seconds)
        now = utcnow()
        expires = now + timedelta(seconds=ttl) if ttl is not None else None
        with self._write() as s:
            versions = self._bump(s, user_id)
            mem = self._get_live(s, user_id, memory_id, now, for_update=True)
            assert versions is not None  # the memory exists, so its user does
            previous = mem.expires_at
            s.execute(update(Memory).where(Memory.id == memory_id).values(
                expires_at=expires, updated_at=now, changed_version=versions[1]),
                execution_options={"synchronize_session": False})
            self._history(s, [dict(
                user_id=user_id, memory_id=memory_id, event="update", at=now, old_metadata=mem.meta,
                new_metadata=mem.meta, details={"expires_at": expires.isoformat() if expires else None,
                                                "previous_expires_at": previous.isoformat() if previous else None})])
        self._cache_apply(user_id, versions, [CacheOp("expiry", memory_id, expires_at=expires)])
        if expires is not None and expires <= utcnow():
            return None
        return self.get_memory(user_id, memory_id)

    def set_embeddings(self, user_id: str, model: str, vectors: dict[str, Any]) -> int:
        """Write the ``model`` embeddings of live memories, replacing any they had (all or nothing).

        For re-embedding stored memories, e.g. after changing the embedding model or how it embeds:
        ``vectors`` maps memory ids to vectors. Every vector of one user and model must have the same
        dimension. Returns the number of vectors written.
        """
        user_id = v.check_user_id(user_id)
        model = v.check_embedding_model(model, "model")
        if not isinstance(vectors, dict):
            raise ValidationError("vectors", f"expected a dict, got {type(vectors).__name__}",
                                  "pass {memory_id: vector}")
        vecs = {v.check_memory_id(mid, "vectors"): v.check_embedding(vec, f"vectors[{mid!r}]")
                for mid, vec in vectors.items()}
        if not vecs:
            return 0
        dim = next(iter(vecs.values())).shape[0]
        for vec in vecs.values():
            if vec.shape[0] != dim:
                raise EmbeddingDimMismatch(model, dim, vec.shape[0])
        ids = list(vecs)
        now = utcnow()
        with self._write() as s:
            versions = self._bump(s, user_id)
            mems = {mid: self._get_live(s, user_id, mid, now, for_update=True) for mid in ids}
            assert versions is not None  # the memories exist, so their user does
            others = s.execute(select(Embedding.memory_id, Embedding.dim).where(
                Embedding.user_id == user_id, Embedding.model == model, Embedding.dim != dim)).all()
            clash = next((d for mid, d in others if mid not in vecs), None)
            if clash is not None:  # memories not rewritten here keep another dimension
                raise EmbeddingDimMismatch(model, clash, dim)
            for part in queries.chunks(ids):
                s.execute(delete(Embedding).where(Embedding.model == model, Embedding.memory_id.in_(part)))
                s.execute(update(Memory).where(Memory.id.in_(part)).values(
                    updated_at=now, changed_version=versions[1]), execution_options={"synchronize_session": False})
            s.execute(insert(Embedding), [dict(memory_id=mid, user_id=user_id, model=model, dim=dim,
                                               vector=vec.tobytes()) for mid, vec in vecs.items()])
            if self._pgvector_schema is not None:
                pgvector.insert_rows(s.connection(), self._pgvector_schema,
                                     [(mid, model, user_id, vec) for mid, vec in vecs.items()], replace=True)
            self._history(s, [dict(user_id=user_id, memory_id=mid, event="update", at=now,
                                   old_metadata=mems[mid].meta, new_metadata=mems[mid].meta,
                                   details={"embedding_model": model, "dim": dim}) for mid in ids])
        self._cache_apply(user_id, versions, [CacheOp("add", mid, model, vec, mems[mid].kind, mems[mid].expires_at)
                                              for mid, vec in vecs.items()])
        return len(vecs)

    def delete(self, user_id: str, memory_id: str) -> None:
        """Soft-delete a live memory (hidden at once; ``purge()`` removes its rows and blob)."""
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        now = utcnow()
        with self._write() as s:
            versions = self._bump(s, user_id)
            mem = self._get_live(s, user_id, memory_id, now, for_update=True)
            assert versions is not None
            s.execute(update(Memory).where(Memory.id == memory_id).values(
                deleted_at=now, updated_at=now, changed_version=versions[1]),
                execution_options={"synchronize_session": False})
            self._history(s, [dict(user_id=user_id, memory_id=memory_id, event="delete", at=now,
                                   old_metadata=mem.meta)])
        self._cache_apply(user_id, versions, [CacheOp("remove", memory_id)])

    def delete_all(self, user_id: str) -> int:
        """Soft-delete every memory of a user that is not deleted yet; returns how many."""
        user_id = v.check_user_id(user_id)
        now = utcnow()
        with self._write() as s:
            versions = self._bump(s, user_id)
            if versions is None:
                return 0
            rows = s.execute(select(Memory.id, Memory.meta).where(
                Memory.user_id == user_id, Memory.deleted_at.is_(None))).all()
            if not rows:
                return 0  # (the version bump still commits: harmless, caches just refresh)
            ids = [r[0] for r in rows]
            for part in queries.chunks(ids):
                s.execute(update(Memory).where(Memory.id.in_(part)).values(
                    deleted_at=now, updated_at=now, changed_version=versions[1]),
                    execution_options={"synchronize_session": False})
            self._history(s, [dict(user_id=user_id, memory_id=mid, event="delete", at=now, old_metadata=meta,
                                   details={"delete_all": True}) for mid, meta in rows])
        self._cache_apply(user_id, versions, [CacheOp("remove", mid) for mid in ids])
        return len(ids)

    def expire(self, user_id: str | None = None) -> int:
        """Mark memories whose TTL has passed as expired (soft-deleted, history event ``expire``).

        Expired memories are hidden from reads already; this records the event and lets
        ``purge()`` remove them. Scoped to one user, or all users when ``user_id`` is None.
        Returns how many were marked.
        """
        if user_id is not None:
            user_id = v.check_user_id(user_id)
        now = utcnow()
        per_user: dict[str, list[str]] = {}
        bumps: dict[str, tuple[int, int]] = {}
        with self._write() as s:
            stmt = select(Memory.id, Memory.user_id, Memory.meta, Memory.expires_at).where(
                Memory.deleted_at.is_(None), Memory.expires_at <= now)
            if user_id is not None:
                stmt = stmt.where(Memory.user_id == user_id)
            users = sorted({r[1] for r in s.execute(stmt).all()})
            if not users:
                return 0
            for uid in users:  # user rows first, in a fixed order (see _bump)
                bumps[uid] = self._bump(s, uid)  # type: ignore[assignment]
            rows = [r for r in s.execute(stmt).all() if r[1] in bumps]  # again, now under the locks
            ids = [r[0] for r in rows]
            for mid, uid, _, _ in rows:
                per_user.setdefault(uid, []).append(mid)
            for uid, mids in per_user.items():
                for part in queries.chunks(mids):
                    s.execute(update(Memory).where(Memory.id.in_(part)).values(
                        deleted_at=now, changed_version=bumps[uid][1]),
                        execution_options={"synchronize_session": False})
            self._history(s, [dict(user_id=uid, memory_id=mid, event="expire", at=now, old_metadata=meta,
                                   details={"expires_at": exp.isoformat()}) for mid, uid, meta, exp in rows])
        for uid, mids in per_user.items():
            self._cache_apply(uid, bumps[uid], [CacheOp("remove", m) for m in mids])
        log.info("expired %d memories", len(ids))
        return len(ids)

    def purge(self, user_id: str | None = None, *, orphan_grace_seconds: float = 3600.0) -> PurgeReport:
        """Hard-delete soft-deleted and expired memories (rows and blob files) and log ``purge``.

        With ``user_id=None`` all users are purged and blob files that no adapter references
        (left by a crashed writer) and are older than ``orphan_grace_seconds`` are removed too.
        """
        if user_id is not None:
            user_id = v.check_user_id(user_id)
        now = utcnow()
        per_user: dict[str, list[str]] = {}
        bumps: dict[str, tuple[int, int]] = {}
        with self._write() as s:
            stmt = (select(Memory.id, Memory.user_id, Memory.meta, Adapter.blob_uri, Memory.deleted_at)
                    .outerjoin(Adapter, Adapter.memory_id == Memory.id)
                    .where(queries.expired_or_deleted(now)))
            if user_id is not None:
                stmt = stmt.where(Memory.user_id == user_id)
            users = sorted({r[1] for r in s.execute(stmt).all()})
            for uid in users:  # user rows first, in a fixed order (see _bump)
                bumps[uid] = self._bump(s, uid)  # type: ignore[assignment]
            rows = [r for r in s.execute(stmt).all() if r[1] in bumps]  # again, now under the locks
            ids = [r[0] for r in rows]
            for part in queries.chunks(ids):
                s.execute(delete(Embedding).where(Embedding.memory_id.in_(part)))
                s.execute(delete(Adapter).where(Adapter.memory_id.in_(part)))
                s.execute(delete(Lineage).where(Lineage.child_id.in_(part)))
                s.execute(delete(Memory).where(Memory.id.in_(part)))
            for mid, uid, *_ in rows:
                per_user.setdefault(uid, []).append(mid)
            self._history(s, [dict(user_id=uid, memory_id=mid, event="purge", at=now, old_metadata=meta,
                                   details={"reason": "deleted" if deleted else "expired",
                                            "blob": uri is not None})
                              for mid, uid, meta, uri, deleted in rows])
        for uid, mids in per_user.items():
            self._cache_apply(uid, bumps[uid], [CacheOp("remove", m) for m in mids])
        removed = sum(self._blobs.delete(uri) for _, _, _, uri, _ in rows if uri)
        orphans = self.collect_orphan_blobs(orphan_grace_seconds) if user_id is None else 0
        if ids:
            log.info("purged %d memories, %d blob files", len(ids), removed)
        return PurgeReport(memories=len(ids), blob_files=removed, orphan_blob_files=orphans,
                           memory_ids=tuple(ids))

    def collect_orphan_blobs(self, grace_seconds: float = 3600.0) -> int:
        """Remove blob files older than ``grace_seconds`` that no adapter row references."""
        candidates = list(self._blobs.iter_uris(older_than_seconds=grace_seconds))
        referenced: set[str] = set()
        with self._read() as s:
            for part in queries.chunks(candidates):
                referenced.update(s.execute(select(Adapter.blob_uri).where(Adapter.blob_uri.in_(part))).scalars())
        removed = sum(self._blobs.delete(u) for u in candidates if u not in referenced)
        removed += self._blobs.remove_stale_temp_files(grace_seconds)
        if removed:
            log.info("removed %d orphan blob files", removed)
        return removed

    # ----------------------------------------------------------------- reads

    def get_memory(self, user_id: str, memory_id: str) -> MemoryRecord:
        """A live memory of this user; :class:`MemoryNotFound` if missing, deleted, expired or not theirs."""
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        with self._read() as s:
            recs = queries.records_by_id(s, user_id, [memory_id], utcnow())
        if memory_id not in recs:
            raise MemoryNotFound(user_id, memory_id)
        return recs[memory_id]

    def get_adapter_bytes(self, user_id: str, memory_id: str) -> bytes:
        """The adapter's safetensors bytes, verified against the stored size and sha256.

        Raises :class:`CorruptAdapterError` when the bytes are truncated, altered or the blob file
        is missing, :class:`MemoryNotFound` as :meth:`get_memory`.
        """
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        with self._read() as s:
            self._get_live(s, user_id, memory_id, utcnow())
            row = s.execute(
                select(Adapter.payload, Adapter.blob_uri, Adapter.size_bytes, Adapter.sha256)
                .where(Adapter.memory_id == memory_id)
            ).one_or_none()
        if row is None:
            raise MemoryNotFound(user_id, memory_id)
        return self._verified_bytes(memory_id, *row)

    def _verified_bytes(self, memory_id: str, payload: bytes | None, blob_uri: str | None, size: int,
                        sha: str) -> bytes:
        if blob_uri:
            where = f"blob file {self._blobs.path(blob_uri)}"
            try:
                data = self._blobs.read(blob_uri)
            except FileNotFoundError:
                raise CorruptAdapterError(memory_id, where, "the file is missing") from None
        else:
            where = "inline payload in the database"
            data = bytes(payload or b"")
        if len(data) != size:
            raise CorruptAdapterError(memory_id, where, f"size is {len(data)} bytes, expected {size} (truncated?)")
        got = v.sha256(data)
        if got != sha:
            raise CorruptAdapterError(memory_id, where, f"sha256 is {got}, expected {sha}")
        return data

    def get_embedding(self, user_id: str, memory_id: str, model: str | None = None) -> np.ndarray:
        """The stored embedding (float32) of a live memory; ``model`` may be omitted when it has one."""
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        with self._read() as s:
            self._get_live(s, user_id, memory_id, utcnow())
            stmt = select(Embedding.model, Embedding.vector).where(Embedding.memory_id == memory_id)
            if model is not None:
                stmt = stmt.where(Embedding.model == model)
            rows = s.execute(stmt).all()
        if not rows:
            raise StoreError(f"memory {memory_id!r} has no embedding{f' of model {model!r}' if model else ''}. "
                             f"Fix: check record.embedding_models")
        if len(rows) > 1:
            raise ValidationError("model", f"memory has embeddings of {sorted(r[0] for r in rows)}",
                                    "name the embedding model")
        return np.frombuffer(rows[0][1], dtype="<f4").astype(np.float32)

    def list_memories(self, user_id: str, kind: str | Sequence[str] | None = None, *,
                      metadata: dict[str, Any] | None = None, include_deleted: bool = False,
                      limit: int | None = None, offset: int = 0) -> list[MemoryRecord]:
        """This user's memories, newest first, optionally filtered by kind and metadata equality.

        ``include_deleted`` also returns soft-deleted and expired (not yet purged) memories.
        """
        user_id = v.check_user_id(user_id)
        kinds = v.check_kinds(kind)
        mfilter = v.check_metadata_filter(metadata)
        if limit is not None:
            limit = v.check_positive_int(limit, "limit")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationError("offset", f"{offset!r}", "pass an int >= 0")
        where = queries.memory_filter(self.dialect, user_id, utcnow(), kinds, mfilter, include_deleted)
        stmt = queries.memories_with_adapters(where).order_by(Memory.created_at.desc(), Memory.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        with self._read() as s:
            return queries.load_records(s, stmt)

    def count(self, user_id: str, kind: str | Sequence[str] | None = None, *,
              metadata: dict[str, Any] | None = None, include_deleted: bool = False) -> int:
        """How many memories :meth:`list_memories` would return without a limit."""
        user_id = v.check_user_id(user_id)
        where = queries.memory_filter(self.dialect, user_id, utcnow(), v.check_kinds(kind),
                                      v.check_metadata_filter(metadata), include_deleted)
        with self._read() as s:
            return s.execute(select(func.count()).select_from(Memory).where(where)).scalar_one()

    def search(self, user_id: str, query_vector: np.ndarray, k: int = 5, *, min_score: float | None = None,
               kind: str | Sequence[str] | None = None,
               embedding_model: str | None = None) -> list[tuple[MemoryRecord, float]]:
        """Top-``k`` live memories of this user by cosine similarity to ``query_vector``, best first.

        ``embedding_model`` may be omitted when the user's embeddings all come from one model.
        Uses pgvector on PostgreSQL when available, else numpy over a cached per-user matrix.
        """
        user_id = v.check_user_id(user_id)
        q = v.check_embedding(query_vector, "query_vector")
        k = v.check_positive_int(k, "k")
        kinds = v.check_kinds(kind)
        if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float))):
            raise ValidationError("min_score", f"{min_score!r}", "pass a float in [-1, 1] or None")
        now = utcnow()
        with self._read() as s:
            version, model = index_sync.version_and_model(s, user_id, embedding_model)
            if version is None or model is None:
                return []
            if self._pgvector_schema is not None:
                dim = s.execute(select(Embedding.dim).where(
                    Embedding.user_id == user_id, Embedding.model == model).limit(1)).scalar_one_or_none()
                if dim is None:
                    return []
                self._check_query_dim(q, dim, model)
                hits = pgvector.search(s.connection(), self._pgvector_schema, user_id, model, q, k, now, kinds)
                if min_score is not None:
                    hits = [h for h in hits if h[1] >= min_score]
                recs = queries.records_by_id(s, user_id, [h[0] for h in hits], now)
                return [(recs[mid], score) for mid, score in hits if mid in recs]
            for attempt in range(2):
                idx = index_sync.index_for(s, self._cache, user_id, model, version, reload=attempt > 0)
                if idx is None:
                    return []
                self._check_query_dim(q, idx.dim, model)
                if self._cache is not None:
                    with self._cache.lock:
                        hits = idx.topk(q, k, now, kinds, min_score)
                else:
                    hits = idx.topk(q, k, now, kinds, min_score)
                recs = queries.records_by_id(s, user_id, [h[0] for h in hits], now)
                if len(recs) == len(hits):
                    break
                # A hit is gone (e.g. deleted and purged by another process between two of our
                # searches, which leaves no changed row behind): reload the index once.
                log.debug("stale search index for %s/%s: reloading", user_id, model)
        return [(recs[mid], score) for mid, score in hits if mid in recs]

    @staticmethod
    def _check_query_dim(q: np.ndarray, dim: int, model: str) -> None:
        if q.shape[0] != dim:
            raise ValidationError("query_vector", f"dimension {q.shape[0]} differs from dimension {dim} of "
                                  f"model {model!r}", f"embed the query with {model!r}")

    def history(self, user_id: str, memory_id: str) -> list[HistoryEvent]:
        """The change log of one memory of this user, oldest first (kept after purge)."""
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        with self._read() as s:
            rows = s.execute(select(History).where(History.user_id == user_id, History.memory_id == memory_id)
                             .order_by(History.id)).scalars().all()
            events = [HistoryEvent(id=h.id, user_id=h.user_id, memory_id=h.memory_id, event=h.event, at=h.at,
                                   old_metadata=h.old_metadata, new_metadata=h.new_metadata, details=h.details)
                      for h in rows]
        if not events:
            raise MemoryNotFound(user_id, memory_id)
        return events

    def lineage(self, user_id: str, memory_id: str) -> LineageRecord:
        """The parents this memory was merged from and the memories merged from it."""
        user_id, memory_id = v.check_user_id(user_id), v.check_memory_id(memory_id)
        with self._read() as s:
            owner = s.execute(select(Memory.user_id).where(Memory.id == memory_id)).scalar_one_or_none()
            parents = s.execute(select(Lineage.parent_id).where(
                Lineage.child_id == memory_id, Lineage.user_id == user_id).order_by(Lineage.parent_id)).scalars().all()
            children = s.execute(select(Lineage.child_id).where(
                Lineage.parent_id == memory_id, Lineage.user_id == user_id).order_by(Lineage.child_id)).scalars().all()
        if owner != user_id and not children:
            raise MemoryNotFound(user_id, memory_id)
        return LineageRecord(memory_id=memory_id, parents=tuple(parents), children=tuple(children))

    # ----------------------------------------------------------------- export / import

    def export_user(self, user_id: str, dest: str | Path, *, include_deleted: bool = True) -> Path:
        """Write all of a user's memories to a directory, or a ``.tar``/``.tar.gz``/``.tgz`` archive.

        The export holds ``manifest.json`` (records, embeddings, lineage, history) and one
        ``adapters/<memory id>.safetensors`` file per memory; :meth:`import_user` restores it exactly.
        """
        from .transfer import export_user

        return export_user(self, v.check_user_id(user_id), Path(dest), include_deleted=include_deleted)

    def import_user(self, src: str | Path, *, user_id: str | None = None, new_ids: bool = False) -> ImportReport:
        """Load an export made by :meth:`export_user` (directory or tar) in one transaction.

        ``user_id`` imports under another user; ``new_ids`` gives every memory a fresh id (needed
        when the same database already holds the exported ids under another user). Memories whose
        id already exists for the target user with the same content are skipped.
        """
        from .transfer import import_user

        return import_user(self, Path(src), user_id=None if user_id is None else v.check_user_id(user_id),
                           new_ids=new_ids)
