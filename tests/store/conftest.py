"""Fixtures of the adapter-store tests: every store test runs on SQLite and on PostgreSQL.

PostgreSQL cases are marked ``postgres`` and need ``D2L_TEST_POSTGRES_URL``
(``scripts/start_postgres.sh`` starts a server and prints it). Each PostgreSQL test
gets its own schema (``search_path`` in the URL), dropped afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from store_helpers import PG_ENV, adapter_bytes, pg_schema_url

from d2l_memory.store import AdapterStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'memory.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (start a server with scripts/start_postgres.sh)")
    yield from pg_schema_url(base)


@pytest.fixture
def store(db_url, tmp_path) -> Iterator[AdapterStore]:
    """A store whose adapters above 1 KiB go to the blob directory (so both paths are exercised)."""
    s = AdapterStore(db_url, blob_dir=tmp_path / "blobs", inline_blob_max_bytes=1024)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def small() -> bytes:
    return adapter_bytes(1)


@pytest.fixture
def big() -> bytes:
    """An adapter above the 1 KiB inline threshold (goes to the blob store)."""
    return adapter_bytes(2, rows=64)
