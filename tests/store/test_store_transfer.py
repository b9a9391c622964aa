"""export_user / import_user: a self-contained directory or tar, restored exactly."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from store_helpers import adapter_bytes, add, vec

from d2l_memory.store import AdapterStore, CorruptAdapterError, ImportExportError, UserNotFound


def _snapshot(store: AdapterStore, user: str) -> dict:
    recs = store.list_memories(user, include_deleted=True)
    live = {r.id for r in store.list_memories(user)}
    return {
        "records": recs,
        "bytes": {r.id: store.get_adapter_bytes(user, r.id) for r in recs if r.id in live},
        "emb": {r.id: store.get_embedding(user, r.id).tobytes() for r in recs if r.id in live and r.embedding_models},
        "history": [[(e.event, e.at, e.old_metadata, e.new_metadata, e.details) for e in store.history(user, r.id)]
                    for r in recs],
        "lineage": [store.lineage(user, r.id) for r in recs],
        "user": store.get_user(user),
    }


def _populate(store: AdapterStore) -> None:
    a = add(store, "alice", 1, metadata={"k": [1, {"x": None}], "s": "é ✓"}, title="T", summary="S")
    b = add(store, "alice", 2, rows=64, kind="conversation")
    add(store, "alice", 3, kind="consolidated", parents=[a.id, b.id], ttl_seconds=3600)
    gone = add(store, "alice", 4, rows=64)
    store.delete("alice", gone.id)  # exported as soft-deleted
    store.update_metadata("alice", a.id, {"edited": True})
    add(store, "alice", 5, text=None, embedding=None, embedding_model=None)
    add(store, "bob", 6)


@pytest.mark.parametrize("fmt", ["dir", "tar", "tar.gz"])
def test_export_import_round_trip_is_exact(store, db_url, tmp_path, fmt):
    _populate(store)
    before = _snapshot(store, "alice")
    dest = tmp_path / ("export" if fmt == "dir" else f"export.{fmt}")
    out = store.export_user("alice", dest)
    assert out == dest and dest.exists()
    if fmt == "dir":
        manifest = json.loads((dest / "manifest.json").read_text())
        assert len(list((dest / "adapters").glob("*.safetensors"))) == 5
    else:
        with tarfile.open(dest) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["format"] == "d2l-memory-export" and len(manifest["memories"]) == 5

    # wipe alice completely, then import into the same database
    store.delete_all("alice")
    store.purge()
    assert store.count("alice", include_deleted=True) == 0
    rep = store.import_user(dest)
    assert rep.user_id == "alice" and rep.imported == 5 and rep.skipped == 0
    after = _snapshot(store, "alice")
    assert after["records"] == before["records"]
    assert after["bytes"] == before["bytes"] and after["emb"] == before["emb"]
    assert after["lineage"] == before["lineage"]
    # the log keeps the original events and the wipe's delete/purge events; the import appends the exported ones
    for h_after, h_before in zip(after["history"], before["history"], strict=True):
        assert h_after[: len(h_before)] == h_before and h_after[-len(h_before):] == h_before
        assert [e[0] for e in h_after[len(h_before):-len(h_before)]] in (["delete", "purge"], ["purge"])
    assert store.count("bob") == 1
    # importing again skips what is already there
    assert store.import_user(dest).skipped == 5


def test_import_into_a_fresh_database_and_another_user(store, tmp_path):
    _populate(store)
    before = _snapshot(store, "alice")
    dest = store.export_user("alice", tmp_path / "a.tar")
    with AdapterStore(f"sqlite:///{tmp_path / 'other.db'}", blob_dir=tmp_path / "other-blobs",
                      inline_blob_max_bytes=1024) as other:
        other.import_user(dest)
        after = _snapshot(other, "alice")
        assert after["records"] == before["records"] and after["bytes"] == before["bytes"]
        assert after["history"] == before["history"] and after["user"] == before["user"]
        first = next(r for r in before["records"] if r.metadata.get("edited"))
        assert other.search("alice", vec(1), k=1)[0][0].id == first.id
        assert other.get_adapter_bytes("alice", first.id) == adapter_bytes(1)
    # same database, another user: ids must be fresh
    with pytest.raises(ImportExportError, match="new_ids=True"):
        store.import_user(dest, user_id="carol")
    rep = store.import_user(dest, user_id="carol", new_ids=True)
    assert rep.imported == 5 and not set(rep.memory_ids) & {r.id for r in before["records"]}
    carol = store.list_memories("carol", include_deleted=True)
    assert sorted(r.content_sha256 for r in carol) == sorted(r.content_sha256 for r in before["records"])
    consolidated = next(r for r in carol if r.kind == "consolidated")
    assert set(store.lineage("carol", consolidated.id).parents) <= set(rep.memory_ids)
    hit = store.search("carol", vec(1), k=1)[0][0]
    assert hit.user_id == "carol" and np.array_equal(store.get_embedding("carol", hit.id), vec(1))


def test_export_errors(store, tmp_path):
    with pytest.raises(UserNotFound):
        store.export_user("nobody", tmp_path / "x")
    add(store, "alice", 1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ImportExportError, match="not an empty directory"):
        store.export_user("alice", tmp_path / "full")


def test_import_rejects_tampered_exports(store, tmp_path):
    a = add(store, "alice", 1)
    dest = store.export_user("alice", tmp_path / "exp")
    store.delete("alice", a.id)
    store.purge()
    f = dest / "adapters" / f"{a.id}.safetensors"
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(CorruptAdapterError, match="export file"):
        store.import_user(dest)
    f.unlink()
    with pytest.raises(ImportExportError, match="missing"):
        store.import_user(dest)
    (dest / "manifest.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ImportExportError, match="format"):
        store.import_user(dest)
    with pytest.raises(ImportExportError, match="does not exist"):
        store.import_user(tmp_path / "nope.tar")
    assert store.count("alice", include_deleted=True) == 0
