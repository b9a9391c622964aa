"""StoreConfig resolution and validation, SQLite connection settings, the search index (no database)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from store_helpers import add, vec

from d2l_memory.store import AdapterStore, ConfigError, StoreConfig
from d2l_memory.store.models import utcnow
from d2l_memory.store.search import CacheOp, EmbeddingCache, UserIndex


def test_default_url_and_blob_dir_follow_env(monkeypatch, tmp_path):
    monkeypatch.delenv("D2L_MEMORY_DB_URL", raising=False)
    monkeypatch.setenv("D2L_MEMORY_HOME", str(tmp_path / "home"))
    cfg = StoreConfig()
    assert cfg.url == f"sqlite:///{tmp_path / 'home' / 'memory.db'}"
    assert cfg.blob_dir == tmp_path / "home" / "memory.db.blobs"
    monkeypatch.delenv("D2L_MEMORY_HOME")
    assert StoreConfig().sqlite_file == Path.home() / ".local" / "share" / "d2l-memory" / "memory.db"
    monkeypatch.setenv("D2L_MEMORY_DB_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert StoreConfig().sqlite_file == tmp_path / "env.db"
    assert StoreConfig(url=f"sqlite:///{tmp_path / 'arg.db'}").sqlite_file == tmp_path / "arg.db"  # arg wins
    pg = StoreConfig(url="postgresql://u@h/db")
    assert pg.url == "postgresql+psycopg://u@h/db" and pg.backend == "postgresql"


@pytest.mark.parametrize("kwargs, field", [
    (dict(url="mysql://x/y"), "url"),
    (dict(url="::not a url::"), "url"),
    (dict(inline_blob_max_bytes=-1), "inline_blob_max_bytes"),
    (dict(sqlite_busy_timeout_ms="10"), "sqlite_busy_timeout_ms"),
    (dict(search_backend="faiss"), "search_backend"),
    (dict(blob_dir=""), "blob_dir"),
])
def test_config_validation(kwargs, field, tmp_path):
    kwargs.setdefault("url", f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(ConfigError, match=field) as exc:
        StoreConfig(**kwargs)
    assert "Fix:" in str(exc.value)


def test_pgvector_backend_on_sqlite_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="pgvector"):
        AdapterStore(f"sqlite:///{tmp_path / 'm.db'}", search_backend="pgvector")


def test_sqlite_connection_settings(tmp_path):
    with AdapterStore(f"sqlite:///{tmp_path / 'm.db'}", sqlite_busy_timeout_ms=1234) as store:
        with store._engines.read.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
        add(store, "alice", 1)
    assert (tmp_path / "m.db").is_file()


def test_in_memory_sqlite_store_works(tmp_path):
    with AdapterStore("sqlite://", blob_dir=tmp_path / "b", inline_blob_max_bytes=0) as store:
        a = add(store, "alice", 1)
        assert a.adapter.storage == "blob"
        assert store.search("alice", vec(1), k=1)[0][0].id == a.id


def test_config_object_and_overrides(tmp_path):
    cfg = StoreConfig(url=f"sqlite:///{tmp_path / 'm.db'}", inline_blob_max_bytes=10)
    with AdapterStore(config=cfg, blob_dir=tmp_path / "elsewhere") as store:
        assert store.config.blob_dir == tmp_path / "elsewhere" and store.config.inline_blob_max_bytes == 10
        assert add(store, "u", 1).adapter.storage == "blob"
        assert list((tmp_path / "elsewhere").rglob("*.safetensors"))


def _rows(n, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"{i:032x}", rng.standard_normal(dim).astype("<f4").tobytes(), "document", None) for i in range(n)]


def test_user_index_topk_matches_brute_force():
    rows = _rows(200)
    idx = UserIndex.build(8, 1, rows)
    mat = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
    q = np.random.default_rng(5).standard_normal(8).astype(np.float32)
    scores = mat @ q / np.linalg.norm(mat, axis=1) / np.linalg.norm(q)
    want = np.argsort(-scores)[:10]
    got = idx.topk(q, 10, utcnow())
    assert [g[0] for g in got] == [rows[i][0] for i in want]
    np.testing.assert_allclose([g[1] for g in got], scores[want], rtol=1e-5)


def test_user_index_incremental_updates_and_expiry():
    idx = UserIndex.build(8, 1, _rows(3))
    now = utcnow()
    v = np.ones(8, dtype=np.float32)
    for i in range(40):  # forces growth
        assert idx.add(f"n{i}", v * (i + 1), "conversation", None)
    assert idx.n == 43
    assert idx.topk(v, 1, now, kinds=("conversation",))[0][1] == pytest.approx(1.0)
    assert all(h[0].startswith("n") for h in idx.topk(v, 40, now, kinds=("conversation",)))
    assert idx.topk(v, 50, now, kinds=("document",)) and len(idx.topk(v, 50, now, kinds=("document",))) == 3
    idx.remove("n0")
    assert "n0" not in [h[0] for h in idx.topk(v, 100, now)]
    idx.set_expiry("n1", now - timedelta(seconds=1))
    assert "n1" not in [h[0] for h in idx.topk(v, 100, now)]
    assert not idx.add("bad", np.ones(3, dtype=np.float32), "document", None)


def test_cache_apply_only_on_the_expected_version():
    cache = EmbeddingCache(max_entries=2)
    cache.put("u", "m", UserIndex.build(8, 5, _rows(2)))
    v = np.ones(8, dtype=np.float32)
    cache.apply("u", 5, 6, [CacheOp("add", "x", "m", v, "document", None)])
    assert cache.get("u", "m", 6).n == 3
    cache.apply("u", 5, 7, [])  # someone else wrote version 6 -> 7 is not ours to patch
    assert cache.get("u", "m", 7) is None and cache.get("u", "m", 6) is None
    for i in range(3):
        cache.put(f"u{i}", "m", UserIndex.build(8, 1, _rows(1)))
    assert cache.get("u0", "m", 1) is None and cache.get("u2", "m", 1) is not None  # LRU
