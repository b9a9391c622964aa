"""Alembic migrations: one head, upgrade/downgrade/upgrade with data, ORM models == migrations."""

from __future__ import annotations

import os
from pathlib import Path

import d2l_memory.migrations
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from store_helpers import adapter_bytes, add, vec

from d2l_memory.store import AdapterStore, MigrationError, migrate
from d2l_memory.store.engine import make_engine
from d2l_memory.store.models import Base
from d2l_memory.store.pgvector import include_object

# On a server with pgvector, reflection meets the store's side table (ignored by the comparison).
pytestmark = pytest.mark.filterwarnings("ignore:Did not recognize type 'vector'")

TABLES = {"users", "memories", "adapters", "embeddings", "lineage", "history"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version", "embedding_vectors"}
    finally:
        engine.dispose()


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_single_head_and_scripts_found_through_the_package():
    hs = migrate.heads()
    assert len(hs) == 1 and migrate.head() == hs[0]
    assert migrate.migrations_dir() == Path(d2l_memory.migrations.__file__).resolve().parent
    assert (migrate.migrations_dir() / "versions" / "0001_initial.py").is_file()


def test_models_agree_with_migrations(db_url, tmp_path):
    migrate.upgrade(db_url)
    assert _diff(db_url) == []
    assert _tables(db_url) == TABLES
    with AdapterStore(db_url, blob_dir=tmp_path / "blobs") as store:  # may add the pgvector side table
        add(store, "alice", 1)
    assert _diff(db_url) == []


def test_upgrade_downgrade_upgrade_with_data(db_url, tmp_path):
    assert migrate.current(db_url) is None
    assert migrate.upgrade(db_url, "0001") == "0001"
    assert migrate.upgrade(db_url, "0002") == "0002"
    head = migrate.upgrade(db_url)
    assert head == migrate.head() == migrate.current(db_url)
    with AdapterStore(db_url, blob_dir=tmp_path / "blobs") as store:
        a = add(store, "alice", 1)
        add(store, "alice", 2, rows=64)
    # down one step and up again: data stays
    migrate.downgrade(db_url, "0001")
    assert migrate.current(db_url) == "0001"
    with pytest.raises(MigrationError, match="upgrade"):
        AdapterStore(db_url, blob_dir=tmp_path / "blobs", auto_upgrade=False)
    migrate.upgrade(db_url)
    assert _diff(db_url) == []
    with AdapterStore(db_url, blob_dir=tmp_path / "blobs") as store:
        assert store.count("alice") == 2
        assert store.get_adapter_bytes("alice", a.id) == adapter_bytes(1)
        assert store.search("alice", vec(1), k=1)[0][0].id == a.id
    # all the way down with data present, then up again
    assert migrate.downgrade(db_url, "base") is None
    assert migrate.current(db_url) is None and _tables(db_url) == set()
    migrate.upgrade(db_url)
    assert _tables(db_url) == TABLES and _diff(db_url) == []
    with AdapterStore(db_url, blob_dir=tmp_path / "blobs2") as store:
        assert store.count("alice") == 0
        add(store, "alice", 3)
        assert store.count("alice") == 1


def test_store_upgrades_an_old_database_on_open(db_url, tmp_path):
    migrate.upgrade(db_url, "0001")
    with AdapterStore(db_url, blob_dir=tmp_path / "blobs") as store:
        add(store, "alice", 1)
    assert migrate.current(db_url) == migrate.head()


def test_bad_revision_gives_a_clear_error(db_url):
    with pytest.raises(MigrationError, match="nope"):
        migrate.upgrade(db_url, "nope")


def test_default_url_uses_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("D2L_MEMORY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("D2L_MEMORY_DB_URL", raising=False)
    assert migrate.upgrade() == migrate.head()
    assert (tmp_path / "home" / "memory.db").is_file()
    assert migrate.current() == migrate.head()


def test_alembic_command_line_config(tmp_path):
    """migrations/alembic.ini works for running Alembic by hand."""
    from alembic import command
    from alembic.config import Config

    # (configure_logger=False: fileConfig would replace the test session's logging handlers)
    cfg = Config(str(migrate.migrations_dir() / "alembic.ini"), attributes={"configure_logger": False})
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cfg.cmd_opts = type("Opts", (), {"x": [f"url={url}"]})()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        command.upgrade(cfg, "head")
    finally:
        os.chdir(cwd)
    assert migrate.current(url) == migrate.head()
