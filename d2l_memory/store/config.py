"""Store configuration: where the database and the blob files live.

Resolution order for the database URL: the ``url`` argument, then the
``D2L_MEMORY_DB_URL`` environment variable, then a SQLite file ``memory.db`` in
the user data directory (``$D2L_MEMORY_HOME``, else ``~/.local/share/d2l-memory``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigError

ENV_HOME = "D2L_MEMORY_HOME"
ENV_DB_URL = "D2L_MEMORY_DB_URL"
DEFAULT_DB_FILENAME = "memory.db"
DEFAULT_INLINE_BLOB_MAX_BYTES = 1 << 20  # 1 MiB: larger adapters go to the file store
SEARCH_BACKENDS = ("auto", "numpy", "pgvector")


def data_home() -> Path:
    """The user data directory: ``$D2L_MEMORY_HOME`` if set, else ``~/.local/share/d2l-memory``."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "d2l-memory"


def default_url() -> str:
    """The database URL used when none is given: ``$D2L_MEMORY_DB_URL`` or ``sqlite:///<home>/memory.db``."""
    env = os.environ.get(ENV_DB_URL)
    if env:
        return env
    return f"sqlite:///{data_home() / DEFAULT_DB_FILENAME}"


def normalize_url(url: str) -> str:
    """Validate a SQLAlchemy URL and pick the psycopg 3 driver for bare ``postgresql://`` URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"invalid url {url!r}: {exc}. Fix: use e.g. 'sqlite:////path/memory.db' or "
            f"'postgresql+psycopg://user@host:5432/db'"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"invalid url {url!r}: backend {backend!r} is not supported. Fix: use a sqlite:// or "
            f"postgresql+psycopg:// URL"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory / non-SQLite URLs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return Path(db).expanduser()


@dataclass(frozen=True)
class StoreConfig:
    """Validated configuration of an :class:`~d2l_memory.store.AdapterStore`.

    Attributes:
        url: SQLAlchemy URL. ``None`` means ``$D2L_MEMORY_DB_URL`` or the default SQLite file.
        blob_dir: directory of the file store for large adapters. ``None`` means
            ``<db file>.blobs/`` beside a SQLite file, else ``<data home>/blobs``.
        inline_blob_max_bytes: adapters up to this size are stored in the database row;
            larger ones go to the file store. 0 sends every adapter to the file store.
        sqlite_busy_timeout_ms: how long a SQLite writer waits for a lock.
        auto_upgrade: upgrade the schema to the Alembic head when the store opens.
        search_backend: ``"auto"`` (pgvector when available on PostgreSQL, else numpy),
            ``"numpy"`` or ``"pgvector"`` (error when the extension is missing).
        embedding_cache: keep a per-user embedding matrix in process memory for search.
        echo: log every SQL statement (SQLAlchemy ``echo``).
    """

    url: str | None = None
    blob_dir: Path | str | None = None
    inline_blob_max_bytes: int = DEFAULT_INLINE_BLOB_MAX_BYTES
    sqlite_busy_timeout_ms: int = 30_000
    auto_upgrade: bool = True
    search_backend: str = "auto"
    embedding_cache: bool = True
    echo: bool = False
    pool_size: int = field(default=5)

    def __post_init__(self) -> None:
        url = normalize_url(self.url if self.url is not None else default_url())
        object.__setattr__(self, "url", url)
        if self.blob_dir is not None:
            if not str(self.blob_dir).strip():
                raise ConfigError("invalid blob_dir '': empty path. Fix: pass a directory path or None")
            object.__setattr__(self, "blob_dir", Path(self.blob_dir).expanduser())
        else:
            db_file = sqlite_path(url)
            default = db_file.with_name(db_file.name + ".blobs") if db_file else data_home() / "blobs"
            object.__setattr__(self, "blob_dir", default)
        for name in ("inline_blob_max_bytes", "sqlite_busy_timeout_ms", "pool_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"invalid {name} {value!r}: must be a non-negative int. Fix: pass e.g. {name}=0 or larger"
                )
        if self.pool_size < 1:
            raise ConfigError("invalid pool_size 0: must be >= 1. Fix: pass pool_size=5")
        if self.search_backend not in SEARCH_BACKENDS:
            raise ConfigError(
                f"invalid search_backend {self.search_backend!r}. Fix: use one of {', '.join(SEARCH_BACKENDS)}"
            )

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return make_url(self.url).get_backend_name()

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, or None (in-memory SQLite or PostgreSQL)."""
        return sqlite_path(self.url)
