"""Optional pgvector search path on PostgreSQL.

When the ``vector`` extension can be enabled, the store mirrors each embedding
into a side table ``embedding_vectors`` (``vector`` column, no fixed dimension)
and answers ``search`` with an ``ORDER BY vec <=> query LIMIT k`` scan in the
server. The side table is managed here, not by the Alembic migrations, because
the extension is optional; the migration environment ignores it when comparing
the schema. Without the extension the store uses the numpy path of
:mod:`d2l_memory.store.search`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

SIDE_TABLE = "embedding_vectors"
_LOCK_KEY = 0x64326C76  # "d2lv": serialises side-table DDL between processes

_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {SIDE_TABLE} (
        memory_id VARCHAR(32) NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
        model VARCHAR(255) NOT NULL,
        user_id VARCHAR(255) NOT NULL,
        vec vector NOT NULL,
        PRIMARY KEY (memory_id, model))""",
    f"CREATE INDEX IF NOT EXISTS ix_{SIDE_TABLE}_user_model ON {SIDE_TABLE} (user_id, model)",
)


def vector_literal(vec: np.ndarray) -> str:
    """pgvector's text form of a 1-D vector, e.g. ``[0.5,1,-2]``."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vec, dtype=np.float32).ravel()) + "]"


def enable(engine: Engine) -> bool:
    """Enable the extension and create the side table; False (logged) when pgvector is unavailable."""
    if engine.dialect.name != "postgresql":
        return False
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            have = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).scalar()
            if not have:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            for ddl in _DDL:
                conn.execute(text(ddl))
            backfill(conn)
    except DBAPIError as exc:
        log.info("pgvector unavailable, search uses the numpy path: %s", str(exc).splitlines()[0])
        return False
    log.info("pgvector enabled: search runs in PostgreSQL")
    return True


def backfill(conn: Connection) -> int:
    """Mirror embeddings that have no side-table row yet (e.g. written before pgvector existed)."""
    rows = conn.execute(
        text(
            f"""SELECT e.memory_id, e.model, e.user_id, e.vector FROM embeddings e
                LEFT JOIN {SIDE_TABLE} v ON v.memory_id = e.memory_id AND v.model = e.model
                WHERE v.memory_id IS NULL"""
        )
    ).all()
    insert_rows(conn, ((m, mo, u, np.frombuffer(bytes(v), dtype="<f4")) for m, mo, u, v in rows))
    if rows:
        log.info("pgvector: backfilled %d embeddings", len(rows))
    return len(rows)


def insert_rows(conn: Connection, rows: Iterable[tuple[str, str, str, np.ndarray]]) -> None:
    """Insert ``(memory_id, model, user_id, vector)`` rows into the side table."""
    params = [
        {"m": m, "mo": mo, "u": u, "v": vector_literal(vec)} for m, mo, u, vec in rows
    ]
    if params:
        conn.execute(
            text(
                f"INSERT INTO {SIDE_TABLE} (memory_id, model, user_id, vec) "
                f"VALUES (:m, :mo, :u, CAST(:v AS vector)) ON CONFLICT DO NOTHING"
            ),
            params,
        )


def search(conn: Connection, user_id: str, model: str, query: np.ndarray, k: int, now: datetime,
           kinds: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """Top-``k`` ``(memory_id, cosine similarity)`` among the user's live memories."""
    kind_sql = "AND m.kind = ANY(:kinds)" if kinds else ""
    sql = text(
        f"""SELECT v.memory_id, 1 - (v.vec <=> CAST(:q AS vector)) AS score
            FROM {SIDE_TABLE} v JOIN memories m ON m.id = v.memory_id
            WHERE v.user_id = :u AND v.model = :mo AND m.user_id = :u
              AND m.deleted_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > :now) {kind_sql}
            ORDER BY v.vec <=> CAST(:q AS vector) LIMIT :k"""
    )
    params = {"q": vector_literal(query), "u": user_id, "mo": model, "now": now, "k": int(k)}
    if kinds:
        params["kinds"] = list(kinds)
    return [(mid, float(score)) for mid, score in conn.execute(sql, params)]
