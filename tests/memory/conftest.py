"""Fixtures of the memory-layer tests: a Memory on a tiny random engine, a temp SQLite store and hashing embeddings."""

from __future__ import annotations

import pytest
from memory_helpers import make_memory, shared_engine


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'memory.db'}"


@pytest.fixture
def engine():
    return shared_engine()


@pytest.fixture
def memory(db_url):
    mem = make_memory(db_url)
    yield mem
    mem.close()
