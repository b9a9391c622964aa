"""Several writer processes on one database lose nothing (SQLite WAL and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
import sys

import pytest
from store_helpers import FIELDS, adapter_bytes, vec

from d2l_memory.store import AdapterStore

PROCS, WRITES = 4, 25


def _writer(url: str, blob_dir: str, proc: int, start, out) -> None:  # noqa: ANN001
    try:
        store = AdapterStore(url, blob_dir=blob_dir, inline_blob_max_bytes=1024)
        start.wait(30)
        ids = []
        for i in range(WRITES):
            seed = proc * 1000 + i
            rec = store.add_memory(
                "shared", "document", adapter_bytes=adapter_bytes(seed, rows=64 if i % 2 else 8), **FIELDS,
                embedding=vec(seed), embedding_model="emb", text=f"proc {proc} write {i}",
                metadata={"proc": proc, "i": i})
            ids.append(rec.id)
            # every process also writes the same content: dedup must keep exactly one
            store.add_memory("shared", "conversation", adapter_bytes=adapter_bytes(7), **FIELDS, text="same")
        store.close()
        out.put((proc, ids, None))
    except BaseException as exc:  # pragma: no cover - reported by the parent
        out.put((proc, [], repr(exc)))


def test_concurrent_writer_processes_lose_nothing(db_url, tmp_path):
    AdapterStore(db_url, blob_dir=tmp_path / "blobs").close()  # migrate once, up front
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db_url, str(tmp_path / "blobs"), p, start, out))
             for p in range(PROCS)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    errors = [(p, e) for p, _, e in results if e]
    assert not errors, errors

    with AdapterStore(db_url, blob_dir=tmp_path / "blobs", inline_blob_max_bytes=1024) as store:
        ids = {p: i for p, i, _ in results}
        all_ids = [m for p in sorted(ids) for m in ids[p]]
        assert len(all_ids) == len(set(all_ids)) == PROCS * WRITES
        assert store.count("shared", "document") == PROCS * WRITES
        assert store.count("shared", "conversation") == 1  # deduplicated across processes
        for proc, mids in ids.items():
            for i, mid in enumerate(mids):
                rec = store.get_memory("shared", mid)
                assert rec.metadata == {"proc": proc, "i": i}
                seed = proc * 1000 + i
                assert store.get_adapter_bytes("shared", mid) == adapter_bytes(seed, rows=64 if i % 2 else 8)
        hits = store.search("shared", vec(2 * 1000 + 5), k=1)
        assert hits[0][0].id == ids[2][5] and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        n_blobs = sum(1 for r in store.list_memories("shared") if r.adapter.storage == "blob")
        assert n_blobs == PROCS * (WRITES // 2)  # odd writes carry a large adapter
        assert len([f for f in (tmp_path / "blobs").rglob("*.safetensors")]) == n_blobs
