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



def _ddl(vschema: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS {SIDE_TABLE} (
            memory_id VARCHAR(32) NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
            model VARCHAR(255) NOT NULL,
            user_id VARCHAR(255) NOT NULL,
            vec {_q(vschema)}.vector NOT NULL,
            PRIMARY KEY (memory_id, model))""",
        f"CREATE INDEX IF NOT EXISTS ix_{SIDE_TABLE}_user_model ON {SIDE_TABLE} (user_id, model)",
    )


def _q(ident: str) -> str:
    """A quoted SQL identifier."""
    return '"' + ident.replace('"', '""') + '"'


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001
    """Alembic ``include_object`` hook: ignore the side table, which the migrations do not manage."""
    if type_ == "table" and name == SIDE_TABLE:
        return False
    table = getattr(obj, "table", None)
    return not (table is not None and getattr(table, "name", None) == SIDE_TABLE)


def vector_literal(vec: np.ndarray) -> str:
    """pgvector's text form of a 1-D vector, e.g. ``[0.5,1,-2]``."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vec, dtype=np.float32).ravel()) + "]"


_EXT_SCHEMA = text(
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
)


def enable(engine: Engine) -> str | None:
    """Enable the extension and create the side table.

    Returns the schema holding the extension (its type and operators are schema-qualified,
    so the store works whatever the ``search_path``), or None (logged) when pgvector is unavailable.
    """
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            vschema = conn.execute(_EXT_SCHEMA).scalar()
            if vschema is None:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                vschema = conn.execute(_EXT_SCHEMA).scalar()
            for ddl in _ddl(vschema):
                conn.execute(text(ddl))
            backfill(conn, vschema)
    except DBAPIError as exc:
        log.info("pgvector unavailable, search uses the numpy path: %s", str(exc).splitlines()[0])
        return None
    log.info("pgvector enabled (extension in schema %s): search runs in PostgreSQL", vschema)
    return vschema


def backfill(conn: Connection, vschema: str) -> int:
    """Mirror embeddings that have no side-table row yet (e.g. written before pgvector existed)."""
    rows = conn.execute(
        text(
            f"""SELECT e.memory_id, e.model, e.user_id, e.vector FROM embeddings e
                LEFT JOIN {SIDE_TABLE} v ON v.memory_id = e.memory_id AND v.model = e.model
                WHERE v.memory_id IS NULL"""
        )
    ).all()
    insert_rows(conn, vschema, ((m, mo, u, np.frombuffer(bytes(v), dtype="<f4")) for m, mo, u, v in rows))
    if rows:
        log.info("pgvector: backfilled %d embeddings", len(rows))
    return len(rows)


def insert_rows(conn: Connection, vschema: str, rows: Iterable[tuple[str, str, str, np.ndarray]], *,
                replace: bool = False) -> None:
    """Insert ``(memory_id, model, user_id, vector)`` rows into the side table (``replace``: overwrite)."""
    params = [
        {"m": m, "mo": mo, "u": u, "v": vector_literal(vec)} for m, mo, u, vec in rows
    ]
    conflict = "(memory_id, model) DO UPDATE SET vec = EXCLUDED.vec" if replace else "DO NOTHING"
    if params:
        conn.execute(
            text(
                f"INSERT INTO {SIDE_TABLE} (memory_id, model, user_id, vec) "
                f"VALUES (:m, :mo, :u, CAST(:v AS {_q(vschema)}.vector)) ON CONFLICT {conflict}"
            ),
            params,
        )


def search(conn: Connection, vschema: str, user_id: str, model: str, query: np.ndarray, k: int, now: datetime,
           kinds: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """Top-``k`` ``(memory_id, cosine similarity)`` among the user's live memories.

    The nearest ``candidates`` vectors of the user are ranked in the side table first and only
    those are joined to ``memories`` (by primary key) to drop deleted, expired or other-kind
    rows; if fewer than ``k`` survive, the query is repeated over all of the user's vectors.
    (Joining first let planners without statistics loop over the user's memories per vector.)
    """
    kind_sql = "AND m.kind = ANY(:kinds)" if kinds else ""
    dist = f"v.vec OPERATOR({_q(vschema)}.<=>) CAST(:q AS {_q(vschema)}.vector)"
    sql = text(
        f"""SELECT c.memory_id, 1 - c.dist AS score FROM (
                SELECT v.memory_id, {dist} AS dist FROM {SIDE_TABLE} v
                WHERE v.user_id = :u AND v.model = :mo ORDER BY dist LIMIT :cand) c
            JOIN memories m ON m.id = c.memory_id
            WHERE m.user_id = :u AND m.deleted_at IS NULL AND (m.expires_at IS NULL OR m.expires_at > :now) {kind_sql}
            ORDER BY c.dist LIMIT :k"""
    )
    params: dict = {"q": vector_literal(query), "u": user_id, "mo": model, "now": now, "k": int(k)}
    if kinds:
        params["kinds"] = list(kinds)
    cand = 4 * int(k) + 32
    hits = [(mid, float(score)) for mid, score in conn.execute(sql, {**params, "cand": cand})]
    if len(hits) < k:
        hits = [(mid, float(score)) for mid, score in conn.execute(sql, {**params, "cand": None})]
    return hits
