"""Benchmark of the adapter store: add, get and search throughput, search latency (median, p95).

One user holds N memories (N = 10^3, 10^4, 10^5 by default), each with a 384-dim
float32 embedding and a small fake adapter payload (4 KB); the store is filled with
``add_many`` in batches, then measured on SQLite and PostgreSQL side by side:

* ``add/s``: single ``add_memory`` calls (one transaction each) on top of the N rows
* ``get/s``: ``get_memory`` of random ids
* ``search/s``, ``p50``/``p95``: ``search(k=10)``; numpy path with the in-process cache warm
  (backend ``pgvector``: a PostgreSQL server with the extension, exact scan in the server)
* ``cold``: the first search of the process (full load of the user's matrix)
* ``after own add`` / ``after other process's add``: the first search after a write by this
  store (cache patched in place) or by a second store (only the changed rows are fetched)

Usage (PostgreSQL from ``scripts/start_postgres.sh``)::

    export D2L_TEST_POSTGRES_URL="$(scripts/start_postgres.sh)"
    nice -n 10 .venv/bin/python benchmarks/bench_store.py            # markdown table on stdout
    .venv/bin/python benchmarks/bench_store.py --sizes 1000 --backends sqlite   # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
from sqlalchemy import create_engine, text

from d2l_memory.store import AdapterStore, NewMemory

FIELDS = dict(rank=8, target_modules=["q_proj", "v_proj"], dtype="bfloat16",
              base_model="HuggingFaceTB/SmolLM2-135M-Instruct", hypernet_sha="0" * 64)
USER = "bench-user"
MODEL = "all-MiniLM-L6-v2"


def _items(rng: np.random.Generator, start: int, n: int, dim: int, payload: int) -> list[NewMemory]:
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    blobs = rng.integers(0, 256, size=(n, payload), dtype=np.uint8)
    return [NewMemory(kind="document", adapter_bytes=blobs[i].tobytes(), embedding=vecs[i], embedding_model=MODEL,
                      text=f"benchmark memory {start + i}", metadata={"i": start + i}, **FIELDS)
            for i in range(n)]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


class PgSchema:
    """A throw-away schema on the PostgreSQL server (dropped on exit)."""

    def __init__(self, base: str):
        self.base, self.name = base, f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(base)

    def __enter__(self) -> str:
        with self.admin.begin() as c:
            c.execute(text(f"CREATE SCHEMA {self.name}"))
        sep = "&" if "?" in self.base else "?"
        return f"{self.base}{sep}options={quote(f'-csearch_path={self.name}')}"

    def __exit__(self, *exc: object) -> None:
        with self.admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {self.name} CASCADE"))
        self.admin.dispose()


def bench_one(url: str, blob_dir: Path, n: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(n)
    store = AdapterStore(url, blob_dir=blob_dir)
    search_path = "pgvector" if store.uses_pgvector else "numpy"
    t0 = time.perf_counter()
    ids: list[str] = []
    for start in range(0, n, args.batch):
        recs = store.add_many(USER, _items(rng, start, min(args.batch, n - start), args.dim, args.payload), dedup=False)
        ids.extend(r.id for r in recs)
    fill_s = time.perf_counter() - t0

    # search: cold (full load of the user's matrix), then warm
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    t0 = time.perf_counter()
    store.search(USER, queries[0], k=10)
    cold_ms = (time.perf_counter() - t0) * 1e3
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        hits = store.search(USER, q, k=10)
        lat.append((time.perf_counter() - t0) * 1e3)
    assert len(hits) == 10

    # get
    pick = rng.choice(len(ids), size=min(args.gets, len(ids)), replace=False)
    t0 = time.perf_counter()
    for i in pick:
        store.get_memory(USER, ids[i])
    get_s = time.perf_counter() - t0

    # add (one transaction each); the cache is updated in place, so a search right after stays warm
    extra = _items(rng, n, args.adds, args.dim, args.payload)
    t0 = time.perf_counter()
    for it in extra:
        store.add_memory(USER, it.kind, adapter_bytes=it.adapter_bytes, embedding=it.embedding,
                         embedding_model=it.embedding_model, text=it.text, metadata=it.metadata, **FIELDS)
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.search(USER, queries[0], k=10)
    after_add_ms = (time.perf_counter() - t0) * 1e3

    # a write by another process (a second store): the next search fetches only the changed row
    other = AdapterStore(url, blob_dir=blob_dir)
    it = _items(rng, n + args.adds, 1, args.dim, args.payload)[0]
    other.add_memory(USER, it.kind, adapter_bytes=it.adapter_bytes, embedding=it.embedding,
                     embedding_model=it.embedding_model, text=it.text, metadata=it.metadata, **FIELDS)
    other.close()
    t0 = time.perf_counter()
    store.search(USER, queries[0], k=10)
    after_foreign_ms = (time.perf_counter() - t0) * 1e3
    store.close()
    return {
        "n": n, "search_path": search_path, "fill_rows_per_s": n / fill_s, "add_per_s": args.adds / add_s, "get_per_s": len(pick) / get_s,
        "search_per_s": 1e3 / statistics.mean(lat), "search_p50_ms": statistics.median(lat),
        "search_p95_ms": _pct(lat, 95), "search_cold_ms": cold_ms, "search_after_add_ms": after_add_ms,
        "search_after_foreign_add_ms": after_foreign_ms,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--pg-url", default=os.environ.get("D2L_TEST_POSTGRES_URL"))
    ap.add_argument("--pgvector-url", default=os.environ.get("D2L_TEST_PGVECTOR_URL"),
                    help="a PostgreSQL server with the vector extension, for the 'pgvector' backend")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--payload", type=int, default=4096, help="adapter bytes per memory")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--gets", type=int, default=1000)
    ap.add_argument("--adds", type=int, default=200)
    ap.add_argument("--batch", type=int, default=2000, help="add_many batch size while filling")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "postgres" in backends and not args.pg_url:
        print("postgres skipped: no --pg-url / D2L_TEST_POSTGRES_URL (run scripts/start_postgres.sh)", file=sys.stderr)
        backends.remove("postgres")
    if "pgvector" in backends and not args.pgvector_url:
        print("pgvector skipped: no --pgvector-url / D2L_TEST_PGVECTOR_URL", file=sys.stderr)
        backends.remove("pgvector")

    results = []
    for n in sizes:
        for backend in backends:
            with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
                tmp_p = Path(tmp)
                if backend == "sqlite":
                    r = bench_one(f"sqlite:///{tmp_p / 'memory.db'}", tmp_p / "blobs", n, args)
                else:
                    with PgSchema(args.pg_url if backend == "postgres" else args.pgvector_url) as url:
                        r = bench_one(url, tmp_p / "blobs", n, args)
            r["backend"] = backend
            results.append(r)
            print(f"done {backend} n={n}: p50 {r['search_p50_ms']:.2f} ms", file=sys.stderr, flush=True)

    print(f"\nAdapter store, one user, dim {args.dim}, {args.payload} B payloads, k=10 "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)\n")
    print("| backend | search | memories | fill rows/s | add/s | get/s | search/s | search p50 ms | search p95 ms "
          "| cold search ms | search after own add ms | search after other process's add ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(results, key=lambda r: (r["n"], r["backend"])):
        print(f"| {r['backend']} | {r['search_path']} | {r['n']:,} | {r['fill_rows_per_s']:,.0f} | {r['add_per_s']:,.0f} "
              f"| {r['get_per_s']:,.0f} | {r['search_per_s']:,.0f} | {r['search_p50_ms']:.2f} "
              f"| {r['search_p95_ms']:.2f} | {r['search_cold_ms']:,.0f} | {r['search_after_add_ms']:.2f} "
              f"| {r['search_after_foreign_add_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
