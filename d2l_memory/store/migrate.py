"""Programmatic Alembic migrations of the store schema (used by the store and the CLI).

The migration scripts live in the ``d2l_memory.migrations`` package (the repository's
``migrations/`` folder), located through the package itself so this works from an
installed wheel as well as from a checkout.

Upgrades run inside one transaction that first takes a lock (``BEGIN IMMEDIATE`` on
SQLite, an advisory lock on PostgreSQL), so processes that open a fresh database at
the same time upgrade it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from .config import default_url, normalize_url, sqlite_path
from .engine import describe, make_engine, make_sqlite_engine
from .errors import MigrationError

log = logging.getLogger(__name__)

_PG_LOCK_KEY = 0x64326C6D  # "d2lm"


def migrations_dir() -> Path:
    """The folder holding ``env.py`` and ``versions/``."""
    import d2l_memory.migrations as pkg

    return Path(pkg.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for the store's migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def heads() -> list[str]:
    """The head revision(s) of the migration scripts (one, unless someone branched)."""
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


def head() -> str:
    """The single head revision; raises :class:`MigrationError` when there are several."""
    hs = heads()
    if len(hs) != 1:
        raise MigrationError(
            f"expected one migration head, found {hs}. Fix: merge them with 'alembic merge heads'"
        )
    return hs[0]


def _engine_for(url: str | None) -> Engine:
    url = normalize_url(url or default_url())
    if url.startswith("sqlite"):
        # Foreign keys off while migrating: SQLite batch operations recreate tables.
        return make_sqlite_engine(url, write=True, foreign_keys=False)
    return make_engine(url)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:  # SQLite write engine: BEGIN IMMEDIATE
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        yield conn


def current_on(conn: Connection) -> str | None:
    """The revision of the database behind ``conn`` (None when never migrated)."""
    return MigrationContext.configure(conn).get_current_revision()


def current(url: str | None = None) -> str | None:
    """The schema revision of the database at ``url`` (None for an empty database)."""
    engine = _engine_for(url)
    try:
        with engine.connect() as conn:
            return current_on(conn)
    finally:
        engine.dispose()


def _run_on(engine: Engine, fn, revision: str) -> str | None:  # noqa: ANN001
    cfg = alembic_config()
    try:
        with _locked(engine) as conn:
            cfg.attributes["connection"] = conn
            before = current_on(conn)
            fn(cfg, revision)
            after = current_on(conn)
        if before != after:
            log.info("%s: schema %s -> %s", describe(str(engine.url)), before, after)
        return after
    except MigrationError:
        raise
    except Exception as exc:
        raise MigrationError(
            f"migration of {describe(str(engine.url))} to {revision!r} failed: {exc}. Fix: check the "
            f"url and the revision (heads() lists the head; current() the database's revision)"
        ) from exc


def _run(url: str | None, fn, revision: str) -> str | None:  # noqa: ANN001
    engine = _engine_for(url)
    try:
        return _run_on(engine, fn, revision)
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Upgrade the schema at ``url`` to ``revision``; returns the new revision."""
    return _run(url, command.upgrade, revision)


def downgrade(url: str | None, revision: str) -> str | None:
    """Downgrade the schema at ``url`` to ``revision`` (``"base"`` drops every table)."""
    return _run(url, command.downgrade, revision)


def ensure_head(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to head unless it is already there (a cheap read)."""
    target = head()
    with engine.connect() as conn:
        rev = current_on(conn)
    if rev == target:
        return
    if engine.dialect.name == "sqlite" and sqlite_path(str(engine.url)) is None:
        _run_on(engine, command.upgrade, "head")  # in-memory: only this engine sees the database
    else:
        upgrade(engine.url.render_as_string(hide_password=False), "head")
