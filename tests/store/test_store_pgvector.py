"""The pgvector search path (PostgreSQL only; runs when the server has the vector extension).

The Debian PostgreSQL used in CI has no pgvector, so there only the detection and the numpy
fallback are checked. Against a server with pgvector (e.g. the PostgreSQL 16 of the
``pgserver`` wheel) the SQL path is compared with the numpy path.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from store_helpers import PG_ENV, add, pg_schema_url, vec

from d2l_memory.store import AdapterStore, ConfigError

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(tmp_path):
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (start a server with scripts/start_postgres.sh)")
    yield from pg_schema_url(base)


def test_detection_and_fallback(pg_url, tmp_path):
    with AdapterStore(pg_url, blob_dir=tmp_path / "b") as store:
        available = store.uses_pgvector
        a = add(store, "alice", 1)
        assert store.search("alice", vec(1), k=1)[0][0].id == a.id
    with AdapterStore(pg_url, blob_dir=tmp_path / "b", search_backend="numpy") as store:
        assert not store.uses_pgvector
        assert store.search("alice", vec(1), k=1)[0][0].id == a.id
    if not available:
        with pytest.raises(ConfigError, match="vector extension"):
            AdapterStore(pg_url, blob_dir=tmp_path / "b", search_backend="pgvector")


def test_pgvector_results_match_numpy(pg_url, tmp_path):
    numpy_store = AdapterStore(pg_url, blob_dir=tmp_path / "b", search_backend="numpy")
    recs = [add(numpy_store, "alice", i, kind="document" if i % 3 else "conversation") for i in range(30)]
    add(numpy_store, "bob", 99)
    numpy_store.delete("alice", recs[0].id)
    numpy_store.set_ttl("alice", recs[1].id, 0)
    try:
        pg_store = AdapterStore(pg_url, blob_dir=tmp_path / "b", search_backend="pgvector")
    except ConfigError:
        numpy_store.close()
        pytest.skip("the PostgreSQL server has no pgvector extension (Debian's has none)")
    with pg_store, numpy_store:
        assert pg_store.uses_pgvector
        late = add(pg_store, "alice", 500)  # written through the pgvector store after the backfill
        for seed in (2, 5, 500, 1234):
            for kind in (None, "conversation"):
                want = numpy_store.search("alice", vec(seed), k=7, kind=kind)
                got = pg_store.search("alice", vec(seed), k=7, kind=kind)
                assert [r.id for r, _ in got] == [r.id for r, _ in want]
                np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
                assert all(r.user_id == "alice" for r, _ in got)
        ids = {r.id for r, _ in pg_store.search("alice", vec(0), k=100)}
        assert recs[0].id not in ids and recs[1].id not in ids and late.id in ids
        pg_store.delete("alice", late.id)
        pg_store.purge()
        assert late.id not in {r.id for r, _ in pg_store.search("alice", vec(500), k=100)}
        assert pg_store.search("alice", vec(2), k=3, min_score=0.99)[0][0].id == recs[2].id
