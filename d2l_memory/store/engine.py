"""SQLAlchemy engines for the store.

SQLite: WAL journal, ``busy_timeout``, foreign keys on and ``synchronous=NORMAL``,
set on every new connection. Python's sqlite3 transaction handling is turned off
and the engine emits its own ``BEGIN``: the *write* engine uses ``BEGIN IMMEDIATE``
(the write lock is taken up front, so concurrent writers queue on ``busy_timeout``
instead of failing with "database is locked" when upgrading a read lock), the
*read* engine a plain deferred ``BEGIN`` (WAL readers never block).

PostgreSQL: one connection pool; reads run in autocommit mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from .config import StoreConfig, normalize_url, sqlite_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engines:
    """The engine that writes and the engine that reads (sharing one pool on PostgreSQL)."""

    write: Engine
    read: Engine

    def dispose(self) -> None:
        self.write.dispose()
        if self.read.pool is not self.write.pool:
            self.read.dispose()


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int, begin: str, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() not in ("wal", "memory"):
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql(begin)


def make_sqlite_engine(url: str, busy_timeout_ms: int = 30_000, *, write: bool = True,
                       foreign_keys: bool = True, echo: bool = False) -> Engine:
    """A SQLite engine with the store's pragmas; ``write`` selects ``BEGIN IMMEDIATE``."""
    db_file = sqlite_path(url)
    kwargs: dict = {"echo": echo}
    if db_file is None:
        # One shared connection, or every connection would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        kwargs.update(connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})
    engine = create_engine(url, **kwargs)
    _install_sqlite_hooks(engine, busy_timeout_ms, "BEGIN IMMEDIATE" if write else "BEGIN", foreign_keys)
    return engine


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, write: bool = True, echo: bool = False,
                pool_size: int = 5) -> Engine:
    """An engine for ``url`` configured for the store (see module docstring)."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return make_sqlite_engine(url, busy_timeout_ms, write=write, echo=echo)
    return create_engine(url, echo=echo, pool_size=pool_size, pool_pre_ping=True)


def make_engines(config: StoreConfig) -> Engines:
    """The write and read engines of a configured store."""
    assert config.url is not None
    if config.backend == "sqlite":
        write = make_engine(config.url, busy_timeout_ms=config.sqlite_busy_timeout_ms, write=True,
                            echo=config.echo)
        if config.sqlite_file is None:
            return Engines(write=write, read=write)  # in-memory: one shared connection
        read = make_engine(config.url, busy_timeout_ms=config.sqlite_busy_timeout_ms, write=False,
                           echo=config.echo)
        return Engines(write=write, read=read)
    engine = make_engine(config.url, echo=config.echo, pool_size=config.pool_size)
    # Reads run in autocommit (same pool): under READ COMMITTED a transaction would not give them
    # a snapshot anyway, and BEGIN/ROLLBACK cost two round trips per call. Reads that need a
    # snapshot (export) use REPEATABLE READ on the write engine.
    return Engines(write=engine, read=engine.execution_options(isolation_level="AUTOCOMMIT"))


def describe(url: str) -> str:
    """The URL without its password, for logs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        f = sqlite_path(url)
        return f"sqlite:{Path(f) if f else ':memory:'}"
    return parsed.render_as_string(hide_password=True)
