"""Brute-force cosine search in numpy over one user's embeddings, with an in-process cache.

A :class:`UserIndex` holds the unit-normalised float32 matrix of one (user, embedding
model) pair, plus each row's memory id, kind, expiry time and liveness. The
:class:`EmbeddingCache` keeps recent indexes keyed by ``(user, model)`` and tagged
with the user's ``version`` counter from the database: the store reads that counter
(one indexed query) before every search and reloads the index when another
process has written since. Writes made by this process are applied to the cached
index in place (append / mark dead / change expiry) when the index was at the
version just before the write, so a write does not force a full reload.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from .models import MEMORY_KINDS

KIND_CODE = {k: i for i, k in enumerate(MEMORY_KINDS)}
NEVER = np.inf


def unit(vec: np.ndarray) -> np.ndarray:
    """``vec / ||vec||`` as float32 (callers reject zero vectors first)."""
    v = np.asarray(vec, dtype=np.float32)
    return v / np.float32(np.linalg.norm(v))


def ts(dt: datetime | None) -> float:
    """Epoch seconds of an aware datetime; +inf for None (never expires)."""
    return NEVER if dt is None else dt.timestamp()


@dataclass
class UserIndex:
    """Unit vectors of one user's live memories for one embedding model."""

    dim: int
    version: int
    buf: np.ndarray = field(repr=False)
    n: int = 0
    ids: list[str] = field(default_factory=list, repr=False)
    row_of: dict[str, int] = field(default_factory=dict, repr=False)
    alive: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    kinds: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    expires: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    dead: int = 0

    @classmethod
    def build(cls, dim: int, version: int, rows: Iterable[tuple[str, bytes, str, datetime | None]]) -> UserIndex:
        """An index from ``(memory_id, float32 vector bytes, kind, expires_at)`` rows."""
        rows = list(rows)
        n = len(rows)
        idx = cls(dim=dim, version=version, buf=np.empty((max(n, 16), dim), dtype=np.float32))
        idx._alloc_meta(idx.buf.shape[0])
        if n:
            raw = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4")
            mat = raw.reshape(n, dim).astype(np.float32, copy=False)
            norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))[:, None]  # 4x faster than linalg.norm here
            np.divide(mat, norms, out=idx.buf[:n])
            idx.ids = [r[0] for r in rows]
            idx.row_of = {mid: i for i, mid in enumerate(idx.ids)}
            idx.alive[:n] = True
            idx.kinds[:n] = [KIND_CODE[r[2]] for r in rows]
            idx.expires[:n] = [ts(r[3]) for r in rows]
            idx.n = n
        return idx

    def _alloc_meta(self, cap: int) -> None:
        self.alive = np.zeros(cap, dtype=bool)
        self.kinds = np.zeros(cap, dtype=np.int8)
        self.expires = np.full(cap, NEVER, dtype=np.float64)

    def _grow(self) -> None:
        cap = max(16, self.buf.shape[0] * 2)
        buf = np.empty((cap, self.dim), dtype=np.float32)
        buf[: self.n] = self.buf[: self.n]
        alive, kinds, expires = self.alive, self.kinds, self.expires
        self._alloc_meta(cap)
        self.alive[: self.n] = alive[: self.n]
        self.kinds[: self.n] = kinds[: self.n]
        self.expires[: self.n] = expires[: self.n]
        self.buf = buf

    def add(self, memory_id: str, vec: np.ndarray, kind: str, expires_at: datetime | None) -> bool:
        """Append a row; False when the vector's dimension does not fit this index."""
        if vec.shape != (self.dim,):
            return False
        if memory_id in self.row_of:
            self.remove(memory_id)
        if self.n == self.buf.shape[0]:
            self._grow()
        i = self.n
        self.buf[i] = unit(vec)
        self.alive[i] = True
        self.kinds[i] = KIND_CODE[kind]
        self.expires[i] = ts(expires_at)
        self.ids.append(memory_id)
        self.row_of[memory_id] = i
        self.n += 1
        return True

    def remove(self, memory_id: str) -> None:
        """Mark a row dead (deleted, expired-and-marked or purged)."""
        i = self.row_of.pop(memory_id, None)
        if i is not None and self.alive[i]:
            self.alive[i] = False
            self.dead += 1

    def set_expiry(self, memory_id: str, expires_at: datetime | None) -> None:
        i = self.row_of.get(memory_id)
        if i is not None:
            self.expires[i] = ts(expires_at)

    def apply_changes(self, version: int, changes: Iterable[tuple[str, str, datetime | None, bool, bytes | None]]) -> bool:
        """Bring the index to ``version`` from ``(memory_id, kind, expires_at, deleted, vector bytes)``
        rows changed since its version (``vector`` None: the memory has no embedding of this model).
        A known memory whose vector changed (re-embedded) is replaced. Idempotent. False when a vector
        does not fit this index (the caller reloads)."""
        for mid, kind, expires_at, deleted, vector in changes:
            if deleted:
                self.remove(mid)
            elif mid in self.row_of and (vector is None or self._same_vector(mid, vector)):
                self.set_expiry(mid, expires_at)
            elif vector is not None:
                vec = np.frombuffer(bytes(vector), dtype="<f4")
                if not self.add(mid, vec, kind, expires_at):
                    return False
        self.version = version
        return True

    def _same_vector(self, memory_id: str, vector: bytes) -> bool:
        vec = np.frombuffer(bytes(vector), dtype="<f4")
        return vec.shape == (self.dim,) and np.array_equal(self.buf[self.row_of[memory_id]], unit(vec))

    @property
    def live_rows(self) -> int:
        return self.n - self.dead

    def topk(self, query: np.ndarray, k: int, now: datetime, kinds: tuple[str, ...] | None = None,
             min_score: float | None = None) -> list[tuple[str, float]]:
        """The ``k`` best ``(memory_id, cosine)`` pairs among live, unexpired rows of the given kinds."""
        n = self.n
        if n == 0 or k <= 0:
            return []
        # einsum rather than BLAS gemv: single-threaded, and on a busy machine multi-threaded
        # OpenBLAS gemv measured 15-30x slower at 10^4 rows (threads waiting on each other).
        scores = np.einsum("ij,j->i", self.buf[:n], unit(query))
        valid = self.alive[:n] & (self.expires[:n] > now.timestamp())
        if kinds is not None and len(kinds) < len(KIND_CODE):
            valid &= np.isin(self.kinds[:n], [KIND_CODE[k_] for k_ in kinds])
        if min_score is not None:
            valid &= scores >= min_score
        n_valid = int(np.count_nonzero(valid))
        if n_valid == 0:
            return []
        scores = np.where(valid, scores, -np.inf)
        k = min(k, n_valid)
        if k < n:
            top = np.argpartition(-scores, k - 1)[:k]
        else:
            top = np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top if valid[i]]


@dataclass(frozen=True)
class CacheOp:
    """A change made by a committed write, replayed on cached indexes."""

    op: str  # "add" | "remove" | "expiry"
    memory_id: str
    model: str | None = None
    vector: np.ndarray | None = None
    kind: str | None = None
    expires_at: datetime | None = None


class EmbeddingCache:
    """LRU of :class:`UserIndex` keyed by ``(user_id, model)``; thread-safe."""

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], UserIndex] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # full loads (counted by the store), for tests and benchmarks

    @property
    def lock(self) -> threading.RLock:
        """Held while searching an index, so that writes of other threads do not interleave."""
        return self._lock

    def get(self, user_id: str, model: str, version: int) -> UserIndex | None:
        with self._lock:
            idx = self._entries.get((user_id, model))
            if idx is None:
                return None
            if idx.version != version:
                del self._entries[(user_id, model)]
                return None
            self._entries.move_to_end((user_id, model))
            return idx

    def peek(self, user_id: str, model: str) -> UserIndex | None:
        """The cached index whatever its version (the caller refreshes it to the current one)."""
        with self._lock:
            return self._entries.get((user_id, model))

    def drop(self, user_id: str, model: str) -> None:
        """Forget one index (e.g. found stale)."""
        with self._lock:
            self._entries.pop((user_id, model), None)

    def put(self, user_id: str, model: str, idx: UserIndex) -> None:
        with self._lock:
            self._entries[(user_id, model)] = idx
            self._entries.move_to_end((user_id, model))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, user_id: str | None = None) -> None:
        """Forget one user's indexes, or all of them."""
        with self._lock:
            for key in [k for k in self._entries if user_id is None or k[0] == user_id]:
                del self._entries[key]

    def apply(self, user_id: str, version_before: int, version_after: int, ops: Iterable[CacheOp]) -> None:
        """Replay a committed write on this user's indexes that were exactly at ``version_before``;
        drop the ones that were not (another process wrote in between)."""
        ops = list(ops)
        with self._lock:
            for key in [k for k in self._entries if k[0] == user_id]:
                idx = self._entries[key]
                if idx.version != version_before:
                    del self._entries[key]
                    continue
                ok = True
                for op in ops:
                    if op.op == "add":
                        if op.model == key[1]:
                            ok = idx.add(op.memory_id, op.vector, op.kind, op.expires_at) and ok
                    elif op.op == "remove":
                        idx.remove(op.memory_id)
                    elif op.op == "expiry":
                        idx.set_expiry(op.memory_id, op.expires_at)
                if not ok or (idx.dead > 1024 and idx.dead > idx.live_rows):
                    del self._entries[key]  # dimension clash, or compaction due: reload next time
                    continue
                idx.version = version_after
