"""Atomic writes (failures injected mid-write) and detection of corrupt or truncated adapters."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from store_helpers import FIELDS, adapter_bytes, add, blob_files, vec

from d2l_memory.store import AdapterStore, CorruptAdapterError, NewMemory, blobs
from d2l_memory.store import store as store_mod


class Boom(RuntimeError):
    pass


def _items(n: int, rows: int = 64) -> list[NewMemory]:
    return [NewMemory(kind="document", adapter_bytes=adapter_bytes(100 + i, rows), embedding=vec(100 + i),
                      embedding_model="emb", text=f"atomic {i}", **FIELDS) for i in range(n)]


def _assert_nothing_new(store: AdapterStore, tmp_path, before_ids: set[str]) -> None:
    recs = store.list_memories("alice", include_deleted=True)
    assert {r.id for r in recs} == before_ids
    n_blob = sum(1 for r in recs if r.adapter.storage == "blob")
    assert len(blob_files(tmp_path)) == n_blob  # no orphan blob, no temp file
    for r in recs:  # every memory still has its adapter
        assert store.get_adapter_bytes("alice", r.id)


def test_blob_write_failure_midway_leaves_nothing(store, tmp_path, monkeypatch):
    keep = add(store, "alice", 1, rows=64)
    real = blobs.BlobStore.write
    calls = []

    def failing_write(self, adapter_id, data):
        calls.append(adapter_id)
        if len(calls) == 2:  # the second blob of the batch fails after writing half the file
            path = self.path(self.uri_for(adapter_id))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[: len(data) // 2])
            raise Boom("disk full")
        return real(self, adapter_id, data)

    monkeypatch.setattr(blobs.BlobStore, "write", failing_write)
    with pytest.raises(Boom):
        store.add_many("alice", _items(3))
    _assert_nothing_new(store, tmp_path, {keep.id})


@pytest.mark.parametrize("where", ["_insert_rows", "_history"])
def test_database_failure_after_blob_write_leaves_nothing(store, tmp_path, monkeypatch, where):
    keep = add(store, "alice", 1, rows=64)
    real = getattr(store_mod.AdapterStore, where)

    def fail_after(self, s, rows):
        real(self, s, rows)
        s.flush()
        raise Boom(f"crash in {where}")

    monkeypatch.setattr(store_mod.AdapterStore, where, fail_after)
    with pytest.raises(Boom):
        store.add_many("alice", _items(3))
    _assert_nothing_new(store, tmp_path, {keep.id})
    monkeypatch.undo()
    assert len(store.add_many("alice", _items(3))) == 3  # the store still works


def test_constraint_violation_from_the_database_leaves_nothing(store, tmp_path, monkeypatch):
    """A real database error mid-transaction (duplicate primary key) after the blob was written."""
    keep = add(store, "alice", 1, rows=64)
    ids = iter(["a" * 32, "b" * 32, "a" * 32, "c" * 32])  # memory ids collide
    monkeypatch.setattr(store_mod, "new_id", lambda: next(ids))
    with pytest.raises(IntegrityError):
        store.add_many("alice", _items(2))
    _assert_nothing_new(store, tmp_path, {keep.id})


def test_orphan_blobs_from_a_crashed_writer_are_collected(store, tmp_path):
    a = add(store, "alice", 1, rows=64)
    orphan = store.blob_store.write("e" * 32, b"left behind by a killed process")
    tmp = tmp_path / "blobs" / "ee" / ".tmp-x.safetensors"
    tmp.write_bytes(b"partial")
    assert store.purge().orphan_blob_files == 0  # younger than the grace period
    old = time.time() - 7200
    for p in (store.blob_store.path(orphan), tmp, store.blob_store.path(a.adapter.blob_uri)):
        os.utime(p, (old, old))
    rep = store.purge()
    assert rep.orphan_blob_files == 2
    assert [p.name for p in blob_files(tmp_path)] == [f"{a.adapter.id}.safetensors"]
    assert store.get_adapter_bytes("alice", a.id) == adapter_bytes(1, rows=64)


def _set_payload(store: AdapterStore, memory_id: str, payload: bytes) -> None:
    with store._engines.write.begin() as conn:
        conn.execute(text("UPDATE adapters SET payload = :p WHERE memory_id = :m"), {"p": payload, "m": memory_id})


def test_corrupt_inline_payload_is_detected(store):
    a = add(store, "alice", 1)
    data = adapter_bytes(1)
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    _set_payload(store, a.id, bytes(flipped))
    with pytest.raises(CorruptAdapterError, match="sha256") as exc:
        store.get_adapter_bytes("alice", a.id)
    assert a.id in str(exc.value) and "inline" in str(exc.value) and "Fix:" in str(exc.value)
    _set_payload(store, a.id, data[:-10])
    with pytest.raises(CorruptAdapterError, match="truncated"):
        store.get_adapter_bytes("alice", a.id)


def test_corrupt_truncated_and_missing_blob_files_are_detected(store):
    a = add(store, "alice", 1, rows=64)
    path = store.blob_store.path(a.adapter.blob_uri)
    data = path.read_bytes()
    path.write_bytes(data[:100])
    with pytest.raises(CorruptAdapterError, match="truncated") as exc:
        store.get_adapter_bytes("alice", a.id)
    assert str(path) in str(exc.value)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptAdapterError, match="sha256"):
        store.get_adapter_bytes("alice", a.id)
    path.unlink()
    with pytest.raises(CorruptAdapterError, match="missing"):
        store.get_adapter_bytes("alice", a.id)
    with pytest.raises(CorruptAdapterError):
        store.export_user("alice", store.blob_store.root.parent / "export")
    path.write_bytes(data)
    assert store.get_adapter_bytes("alice", a.id) == data
