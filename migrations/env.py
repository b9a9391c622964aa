"""Alembic environment of the d2l-memory adapter store.

Used both programmatically (``d2l_memory.store.migrate`` passes an open connection
in ``config.attributes["connection"]`` and owns its transaction) and from the
``alembic`` command line (``-x url=...``, ``$D2L_MEMORY_DB_URL`` or the default URL).
"""

from __future__ import annotations

import logging
from logging.config import fileConfig

from alembic import context

from d2l_memory.store.config import default_url, normalize_url
from d2l_memory.store.engine import make_engine
from d2l_memory.store.models import Base
from d2l_memory.store.pgvector import include_object

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
log = logging.getLogger("d2l_memory.migrations")

target_metadata = Base.metadata


def _url() -> str:
    x_args = context.get_x_argument(as_dictionary=True)
    return normalize_url(x_args.get("url") or config.get_main_option("sqlalchemy.url") or default_url())


def _configure(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=_url().startswith("sqlite"),
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
