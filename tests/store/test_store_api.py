"""Core behaviour of AdapterStore on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from safetensors.numpy import load
from store_helpers import DIM, FIELDS, adapter_bytes, add, blob_files, vec

from d2l_memory.store import (
    AdapterStore,
    EmbeddingDimMismatch,
    MemoryNotFound,
    MemoryRecord,
    NewMemory,
    UserNotFound,
    ValidationError,
)
from d2l_memory.store import store as store_module
from d2l_memory.store.models import utcnow


def test_add_get_roundtrip_inline_and_blob(store, tmp_path, small, big):
    a = store.add_memory("alice", "document", adapter_bytes=small, **FIELDS, text="doc a",
                         title="A", summary="about a", metadata={"source": "web", "n": 1},
                         embedding=vec(1), embedding_model="emb")
    b = store.add_memory("alice", "conversation", adapter_bytes=big, **FIELDS, text="chat b")
    assert isinstance(a, MemoryRecord) and dataclasses.is_dataclass(a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.kind = "x"  # type: ignore[misc]
    assert a.adapter.storage == "inline" and a.adapter.blob_uri is None
    assert b.adapter.storage == "blob" and len(blob_files(tmp_path)) == 1
    assert a.embedding_models == ("emb",) and b.embedding_models == ()
    assert a.adapter.target_modules == ("q_proj", "v_proj") and a.adapter.rank == 4
    assert a.adapter.base_model == "tiny-llama" and a.adapter.hypernet_sha == "f" * 64
    assert a.adapter.size_bytes == len(small)
    assert a.created_at.tzinfo is not None

    for rec, data in ((a, small), (b, big)):
        got = store.get_memory("alice", rec.id)
        assert got == rec  # the record returned by add equals the one read back
        out = store.get_adapter_bytes("alice", rec.id)
        assert out == data  # bit-identical
        assert all(np.array_equal(x, load(data)[k]) for k, x in load(out).items())
    np.testing.assert_array_equal(store.get_embedding("alice", a.id), vec(1))


def test_implicit_and_explicit_users(store):
    assert store.list_users() == []
    add(store, "bob", 1)
    u = store.create_user("carol")
    assert u.id == "carol" and u.memory_count == 0
    assert store.create_user("carol").created_at == u.created_at  # idempotent
    assert [(x.id, x.memory_count) for x in store.list_users()] == [("bob", 1), ("carol", 0)]
    assert store.get_user("bob").memory_count == 1
    with pytest.raises(UserNotFound, match="create_user"):
        store.get_user("nobody")


def test_list_count_filters_and_paging(store):
    recs = [add(store, "alice", i, kind="document" if i % 2 else "conversation",
                metadata={"topic": "cats" if i < 3 else "dogs", "i": i, "flag": i == 0}) for i in range(6)]
    assert store.count("alice") == 6
    assert [r.id for r in store.list_memories("alice")] == [r.id for r in reversed(recs)]  # newest first
    assert store.count("alice", "document") == 3
    assert store.count("alice", ["document", "conversation"]) == 6
    assert {r.id for r in store.list_memories("alice", metadata={"topic": "cats"})} == {r.id for r in recs[:3]}
    assert [r.id for r in store.list_memories("alice", metadata={"i": 4})] == [recs[4].id]
    assert [r.id for r in store.list_memories("alice", metadata={"flag": True})] == [recs[0].id]
    assert store.count("alice", metadata={"i": True}) == 0  # JSON types are not conflated
    assert store.count("alice", metadata={"topic": "dogs", "i": 5}) == 1
    assert store.count("alice", metadata={"missing": None}) == 0
    page = store.list_memories("alice", limit=2, offset=2)
    assert [r.id for r in page] == [recs[3].id, recs[2].id]
    with pytest.raises(ValidationError, match="metadata filter"):
        store.list_memories("alice", metadata={"topic": ["a"]})


def test_search_topk_filters_and_min_score(store):
    recs = [add(store, "alice", i, kind="document" if i < 5 else "conversation") for i in range(8)]
    hits = store.search("alice", vec(3), k=3)
    assert hits[0][0].id == recs[3].id and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 3 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    all_hits = store.search("alice", vec(3), k=100)
    assert len(all_hits) == 8
    # exact cosine against numpy
    q = vec(3) / np.linalg.norm(vec(3))
    for rec, score in all_hits:
        e = store.get_embedding("alice", rec.id)
        assert score == pytest.approx(float(e @ q / np.linalg.norm(e)), abs=1e-5)
    conv = store.search("alice", vec(6), k=10, kind="conversation")
    assert {r.id for r, _ in conv} == {recs[5].id, recs[6].id, recs[7].id}
    assert all(s >= 0.5 for _, s in store.search("alice", vec(3), k=10, min_score=0.5))
    assert store.search("nobody", vec(3), k=3) == []
    with pytest.raises(ValidationError, match="query_vector"):
        store.search("alice", np.ones(DIM + 1), k=3)
    with pytest.raises(ValidationError, match="k"):
        store.search("alice", vec(3), k=0)


def test_search_sees_writes_deletes_and_ttl_changes(store):
    a = add(store, "alice", 1)
    assert [r.id for r, _ in store.search("alice", vec(1), k=5)] == [a.id]
    b = add(store, "alice", 2)  # applied to the cached index
    assert store.search("alice", vec(2), k=1)[0][0].id == b.id
    store.delete("alice", b.id)
    assert [r.id for r, _ in store.search("alice", vec(2), k=5)] == [a.id]
    store.set_ttl("alice", a.id, 0)
    assert store.search("alice", vec(1), k=5) == []


def test_dedup_by_content_per_user(store):
    a1 = add(store, "alice", 1, text="same text")
    a2 = add(store, "alice", 2, text="same text")  # different adapter, same text: deduplicated
    assert a2.id == a1.id and store.count("alice") == 1
    b1 = add(store, "bob", 1, text="same text")  # other user: own memory
    assert b1.id != a1.id and store.count("bob") == 1
    a3 = add(store, "alice", 3, text="same text", dedup=False)
    assert a3.id != a1.id and store.count("alice") == 2
    # without text the content hash is the adapter's
    n1 = add(store, "alice", 7, text=None)
    n2 = add(store, "alice", 7, text=None, metadata={"x": 1})
    assert n1.id == n2.id and n1.content_sha256 == n1.adapter.sha256
    # a deleted memory does not absorb new content
    store.delete("alice", n1.id)
    assert add(store, "alice", 7, text=None).id != n1.id


def test_add_many_is_one_transaction_and_dedups_within_batch(store):
    items = [NewMemory(kind="document", adapter_bytes=adapter_bytes(i), embedding=vec(i), embedding_model="emb",
                       text=f"t{i % 3}", **FIELDS) for i in range(6)]
    recs = store.add_many("alice", items)
    assert len(recs) == 6 and len({r.id for r in recs}) == 3
    assert [r.id for r in recs[3:]] == [r.id for r in recs[:3]]
    assert store.count("alice") == 3


def test_update_metadata_merge_and_replace(store):
    a = add(store, "alice", 1, metadata={"a": 1, "b": 2})
    r = store.update_metadata("alice", a.id, {"b": 3, "c": {"d": [1, 2]}})
    assert r.metadata == {"a": 1, "b": 3, "c": {"d": [1, 2]}} and r.updated_at >= a.updated_at
    r = store.update_metadata("alice", a.id, {"z": 0}, merge=False)
    assert r.metadata == {"z": 0}
    r.metadata["z"] = 99  # a private copy
    assert store.get_memory("alice", a.id).metadata == {"z": 0}
    events = store.history("alice", a.id)
    assert [e.event for e in events] == ["add", "update", "update"]
    assert events[1].old_metadata == {"a": 1, "b": 2}
    assert events[1].new_metadata == {"a": 1, "b": 3, "c": {"d": [1, 2]}}
    assert events[2].old_metadata == {"a": 1, "b": 3, "c": {"d": [1, 2]}} and events[2].new_metadata == {"z": 0}


def test_ttl_expiry_hides_then_expire_and_purge_remove(store, tmp_path, monkeypatch):
    keep = add(store, "alice", 1)
    short = add(store, "alice", 2, rows=64, ttl_seconds=60, metadata={"k": "v"})
    assert short.expires_at == short.created_at + timedelta(seconds=60) and short.adapter.storage == "blob"
    assert store.count("alice") == 2 and len(blob_files(tmp_path)) == 1
    assert {r.id for r, _ in store.search("alice", vec(2), k=5)} == {keep.id, short.id}
    later = utcnow() + timedelta(seconds=61)
    monkeypatch.setattr(store_module, "utcnow", lambda: later)  # the store's clock jumps past the TTL
    with pytest.raises(MemoryNotFound):
        store.get_memory("alice", short.id)
    with pytest.raises(MemoryNotFound):
        store.get_adapter_bytes("alice", short.id)
    assert [r.id for r in store.list_memories("alice")] == [keep.id]
    assert store.count("alice") == 1 and store.count("alice", include_deleted=True) == 2
    assert [r.id for r, _ in store.search("alice", vec(2), k=5)] == [keep.id]
    assert store.expire() == 1
    assert store.expire() == 0
    rep = store.purge()
    assert rep.memories == 1 and rep.blob_files == 1 and rep.memory_ids == (short.id,)
    assert blob_files(tmp_path) == []
    assert store.count("alice", include_deleted=True) == 1
    events = store.history("alice", short.id)
    assert [e.event for e in events] == ["add", "expire", "purge"]
    # set_ttl: extend, clear, and expire at once
    r = store.set_ttl("alice", keep.id, 3600)
    assert r.expires_at is not None
    assert store.set_ttl("alice", keep.id, None).expires_at is None
    assert store.set_ttl("alice", keep.id, 0) is None
    assert store.count("alice") == 0


def test_soft_delete_then_purge_removes_rows_and_blob_files(store, tmp_path):
    a = add(store, "alice", 1, rows=64, metadata={"secret": "no"}, text="private source text")
    b = add(store, "alice", 2, rows=64)
    assert len(blob_files(tmp_path)) == 2
    store.delete("alice", a.id)
    with pytest.raises(MemoryNotFound):
        store.get_memory("alice", a.id)
    with pytest.raises(MemoryNotFound):
        store.delete("alice", a.id)  # already deleted
    listed = store.list_memories("alice", include_deleted=True)
    assert {r.id for r in listed} == {a.id, b.id} and next(r for r in listed if r.id == a.id).is_deleted
    assert len(blob_files(tmp_path)) == 2  # soft delete keeps the blob until purge
    rep = store.purge("alice")
    assert rep.memories == 1 and rep.blob_files == 1 and len(blob_files(tmp_path)) == 1
    assert store.count("alice", include_deleted=True) == 1
    events = store.history("alice", a.id)
    assert [e.event for e in events] == ["add", "delete", "purge"]
    assert "private source text" not in repr(events)  # history never holds source text
    assert store.get_adapter_bytes("alice", b.id) == adapter_bytes(2, rows=64)


def test_delete_all_then_purge(store, tmp_path):
    for i in range(3):
        add(store, "alice", i, rows=64)
    add(store, "bob", 9, rows=64)
    assert store.delete_all("alice") == 3 and store.delete_all("alice") == 0
    assert store.count("alice") == 0 and store.count("bob") == 1
    assert store.purge().memories == 3
    assert len(blob_files(tmp_path)) == 1
    assert store.delete_all("never-seen") == 0


def test_lineage_of_consolidated_memory(store):
    p1, p2 = add(store, "alice", 1), add(store, "alice", 2)
    c = add(store, "alice", 3, kind="consolidated", parents=[p1.id, p2.id])
    lin = store.lineage("alice", c.id)
    assert set(lin.parents) == {p1.id, p2.id} and lin.children == ()
    assert store.lineage("alice", p1.id).children == (c.id,)
    # lineage survives the purge of a parent
    store.delete("alice", p1.id)
    store.purge()
    assert set(store.lineage("alice", c.id).parents) == {p1.id, p2.id}
    with pytest.raises(MemoryNotFound):
        add(store, "alice", 4, kind="consolidated", parents=["0" * 32])
    assert store.count("alice") == 2  # the failed add stored nothing


def test_validation_errors_store_nothing(store, small):
    add(store, "alice", 1)
    cases = [
        (dict(user_id=""), "user_id"),
        (dict(user_id="   "), "user_id"),
        (dict(kind="poem"), "kind"),
        (dict(ttl_seconds=-1), "ttl_seconds"),
        (dict(adapter_bytes="not bytes"), "adapter_bytes"),
        (dict(adapter_bytes=b""), "adapter_bytes"),
        (dict(rank=0), "rank"),
        (dict(target_modules=[]), "target_modules"),
        (dict(target_modules="q_proj"), "target_modules"),
        (dict(embedding=np.ones(DIM + 2)), "embedding"),  # dim mismatch with alice's existing "emb" vectors
        (dict(embedding=np.zeros(DIM)), "embedding"),
        (dict(embedding=np.array([np.nan] * DIM)), "embedding"),
        (dict(embedding=vec(5), embedding_model=None), "embedding_model"),
        (dict(metadata={"x": object()}), "metadata"),
        (dict(metadata=["not", "a", "dict"]), "metadata"),
        (dict(dtype=""), "dtype"),
    ]
    for override, field in cases:
        args = dict(FIELDS, adapter_bytes=small, embedding=vec(5), embedding_model="emb", text="new text")
        user, kind = override.pop("user_id", "alice"), override.pop("kind", "document")
        args.update(override)
        with pytest.raises(ValidationError, match=field) as exc:
            store.add_memory(user, kind, **args)
        assert "Fix:" in str(exc.value)
    with pytest.raises(EmbeddingDimMismatch, match=f"dimension {DIM}"):
        add(store, "alice", 6, embedding=np.ones(DIM + 2))
    assert store.count("alice", include_deleted=True) == 1
    assert [u.id for u in store.list_users()] == ["alice"]
    # another model name, or another user, may use another dimension
    add(store, "alice", 7, embedding=np.ones(8), embedding_model="other")
    add(store, "bob", 8, embedding=np.ones(8))


def test_search_with_two_models_needs_model_name(store):
    a = add(store, "alice", 1)
    add(store, "alice", 2, embedding=np.ones(8), embedding_model="other")
    with pytest.raises(ValidationError, match="embedding_model"):
        store.search("alice", vec(1), k=2)
    assert store.search("alice", vec(1), k=2, embedding_model="emb")[0][0].id == a.id


def test_history_and_lineage_of_unknown_ids(store):
    with pytest.raises(MemoryNotFound, match="not found for user 'alice'"):
        store.history("alice", "0" * 32)
    with pytest.raises(MemoryNotFound):
        store.lineage("alice", "0" * 32)


def test_second_store_sees_writes_of_first(db_url, tmp_path):
    """Two stores on one database behave like two processes: s2's cache follows s1's writes through
    the version counter, with only the changed rows fetched (no full reload)."""
    s1 = AdapterStore(db_url, blob_dir=tmp_path / "blobs")
    s2 = AdapterStore(db_url, blob_dir=tmp_path / "blobs", search_backend="numpy")  # the cache under test
    try:
        a = add(s1, "alice", 1)
        c = add(s1, "alice", 3)
        assert [r.id for r, _ in s2.search("alice", vec(1), k=1)] == [a.id]
        loads = s2.cache.loads
        b = add(s1, "alice", 2)
        assert s2.search("alice", vec(2), k=1)[0][0].id == b.id
        s1.delete("alice", b.id)
        assert b.id not in [r.id for r, _ in s2.search("alice", vec(2), k=5)]
        s1.set_ttl("alice", a.id, 0)
        assert [r.id for r, _ in s2.search("alice", vec(1), k=5)] == [c.id]
        add(s1, "alice", 4, embedding=np.ones(8), embedding_model="other")  # another model: ignored
        assert [r.id for r, _ in s2.search("alice", vec(1), k=5, embedding_model="emb")] == [c.id]
        assert s2.cache.loads == loads  # every change above came as a delta
        s2.search("alice", vec(2), k=5, embedding_model="emb")
        assert s2.cache.loads == loads
    finally:
        s1.close()
        s2.close()


def test_search_heals_a_stale_cache_after_purge_elsewhere(db_url, tmp_path):
    """Deleted and purged by another process: no changed row is left, the hit vanishes, s2 reloads."""
    s1 = AdapterStore(db_url, blob_dir=tmp_path / "blobs")
    s2 = AdapterStore(db_url, blob_dir=tmp_path / "blobs", search_backend="numpy")  # the cache under test
    try:
        recs = [add(s1, "alice", i) for i in range(4)]
        assert s2.search("alice", vec(0), k=1)[0][0].id == recs[0].id
        loads = s2.cache.loads
        s1.delete("alice", recs[0].id)
        s1.purge()
        hits = s2.search("alice", vec(0), k=3)
        assert len(hits) == 3 and recs[0].id not in {r.id for r, _ in hits}
        assert s2.cache.loads == loads + 1  # the delta could not see the purged row: one reload
    finally:
        s1.close()
        s2.close()


def test_set_embeddings_replaces_vectors_all_or_nothing(store):
    a, b = add(store, "alice", 1), add(store, "alice", 2)
    assert store.search("alice", vec(1), k=1)[0][0].id == a.id  # builds the cached index
    assert store.set_embeddings("alice", "emb", {a.id: vec(7)}) == 1
    np.testing.assert_allclose(store.get_embedding("alice", a.id, "emb"), vec(7))
    assert store.search("alice", vec(7), k=1)[0][0].id == a.id  # the cache (or pgvector) sees the new vector
    assert store.search("alice", vec(1), k=2)[0][1] < 0.9  # and not the old one
    assert store.history("alice", a.id)[-1].details == {"embedding_model": "emb", "dim": DIM}
    # a new model name adds a second embedding next to the first
    assert store.set_embeddings("alice", "new", {a.id: np.ones(4), b.id: -np.ones(4)}) == 2
    assert store.get_memory("alice", a.id).embedding_models == ("emb", "new")
    assert store.search("alice", np.ones(4), k=1, embedding_model="new")[0][0].id == a.id
    # bad input writes nothing
    before = store.get_embedding("alice", b.id, "emb")
    with pytest.raises(MemoryNotFound):
        store.set_embeddings("alice", "emb", {b.id: vec(9), "0" * 32: vec(9)})
    with pytest.raises(EmbeddingDimMismatch):  # a's "emb" vector keeps 16 dimensions
        store.set_embeddings("alice", "emb", {b.id: np.ones(8)})
    with pytest.raises(ValidationError, match="vectors"):
        store.set_embeddings("alice", "emb", {b.id: np.zeros(DIM)})
    with pytest.raises(ValidationError, match="model"):
        store.set_embeddings("alice", "", {b.id: vec(9)})
    with pytest.raises(MemoryNotFound):  # another user's memory
        store.set_embeddings("bob", "emb", {b.id: vec(9)})
    np.testing.assert_array_equal(store.get_embedding("alice", b.id, "emb"), before)
    assert store.set_embeddings("alice", "emb", {}) == 0
    store.delete("alice", b.id)
    with pytest.raises(MemoryNotFound):  # deleted memories are not re-embedded
        store.set_embeddings("alice", "emb", {b.id: vec(9)})


def test_second_store_cache_follows_a_reembedding(db_url, tmp_path):
    s1 = AdapterStore(db_url, blob_dir=tmp_path / "blobs")
    s2 = AdapterStore(db_url, blob_dir=tmp_path / "blobs", search_backend="numpy")
    try:
        a, b = add(s1, "alice", 1), add(s1, "alice", 2)
        assert s2.search("alice", vec(1), k=1)[0][0].id == a.id
        loads = s2.cache.loads
        s1.set_embeddings("alice", "emb", {a.id: vec(2) + 0.01 * vec(5), b.id: vec(1)})
        assert s2.search("alice", vec(1), k=1)[0][0].id == b.id  # the swapped vectors came as a delta
        assert s2.search("alice", vec(2), k=1)[0][0].id == a.id
        assert s2.cache.loads == loads
    finally:
        s1.close()
        s2.close()
