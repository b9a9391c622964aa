"""Keeps the in-process search index of a (user, embedding model) in step with the database.

The :class:`~d2l_memory.store.search.EmbeddingCache` holds one
:class:`~d2l_memory.store.search.UserIndex` per (user, model), tagged with the user's
``version`` counter. Before a search the store reads the counter; here the cached index is
then used as is (same version), refreshed with the memories whose ``changed_version`` is
above the cached version (written by other processes), or loaded in full.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import queries
from .errors import ValidationError
from .models import Embedding, Memory, User
from .search import EmbeddingCache, UserIndex

log = logging.getLogger(__name__)


def version_and_model(s: Session, user_id: str, model: str | None) -> tuple[int | None, str | None]:
    """The user's version counter and the embedding model to search, in one round trip.

    Without ``model`` the user's embeddings must all come from one model (found with two
    index seeks on ``(user_id, model)``); None for an unknown user or one without embeddings.
    """
    version = select(User.version).where(User.id == user_id).scalar_subquery()
    if model is not None:
        return s.execute(select(version)).scalar_one_or_none(), model
    first = select(func.min(Embedding.model)).where(Embedding.user_id == user_id).scalar_subquery()
    last = select(func.max(Embedding.model)).where(Embedding.user_id == user_id).scalar_subquery()
    ver, lo, hi = s.execute(select(version, first, last)).one()
    if lo != hi:
        raise ValidationError("embedding_model", f"user {user_id!r} has embeddings of several models "
                              f"({lo!r} ... {hi!r})", "pass embedding_model=")
    return ver, lo


def index_for(s: Session, cache: EmbeddingCache | None, user_id: str, model: str, version: int, *,
              reload: bool = False) -> UserIndex | None:
    """The user's index for ``model`` at ``version``: cached, refreshed with the rows changed since
    the cached version, or loaded in full (first use, large change, ``reload``). None: no embeddings."""
    if cache is None:
        return load(s, user_id, model, version)
    with cache.lock:
        idx = None if reload else cache.peek(user_id, model)
        if idx is not None and idx.version == version:
            return idx
        if idx is not None and idx.version < version and refresh(s, idx, user_id, model, version):
            return idx
        idx = load(s, user_id, model, version)
        cache.loads += 1
        if idx is None:
            cache.drop(user_id, model)
        else:
            cache.put(user_id, model, idx)
        return idx


def refresh(s: Session, idx: UserIndex, user_id: str, model: str, version: int) -> bool:
    """Apply the memories changed since ``idx.version``; False when a full load is better."""
    changed = s.execute(
        select(Memory.id, Memory.kind, Memory.expires_at, Memory.deleted_at)
        .where(Memory.user_id == user_id, Memory.changed_version > idx.version)
    ).all()
    if len(changed) > max(1000, idx.live_rows // 4):
        return False
    live_ids = [mid for mid, _, _, deleted in changed if deleted is None]  # new, or changed (e.g. re-embedded)
    vectors: dict[str, bytes] = {}
    for part in queries.chunks(live_ids):
        vectors.update((mid, vec) for mid, vec in s.execute(select(Embedding.memory_id, Embedding.vector).where(
            Embedding.memory_id.in_(part), Embedding.model == model)))
    ok = idx.apply_changes(version, [(mid, kind, exp, deleted is not None, vectors.get(mid))
                                     for mid, kind, exp, deleted in changed])
    log.debug("refreshed %s/%s to version %d with %d changed memories", user_id, model, version, len(changed))
    return ok


def load(s: Session, user_id: str, model: str, version: int) -> UserIndex | None:
    """Build the index from the database (None when the user has no embeddings of ``model``)."""
    # Two single-table queries joined here: a fresh table has no planner statistics and a
    # SQL join of the two was planned as a nested loop over the user index (seconds at 10^4).
    vectors = s.execute(
        select(Embedding.memory_id, Embedding.vector, Embedding.dim)
        .where(Embedding.user_id == user_id, Embedding.model == model)
    ).all()
    if not vectors:
        return None
    meta = {mid: (kind, exp) for mid, kind, exp in s.execute(
        select(Memory.id, Memory.kind, Memory.expires_at)
        .where(Memory.user_id == user_id, Memory.deleted_at.is_(None))
    )}
    rows = [(mid, vec, *meta[mid]) for mid, vec, _ in vectors if mid in meta]
    log.debug("loaded %d embeddings of %s/%s (version %d)", len(rows), user_id, model, version)
    return UserIndex.build(vectors[0][2], version, rows)
