"""Helpers shared by the adapter-store tests (imported as a plain module)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import numpy as np
from safetensors.numpy import save
from sqlalchemy import create_engine, text

from d2l_memory.store import AdapterStore

PG_ENV = "D2L_TEST_POSTGRES_URL"
DIM = 16
FIELDS = dict(rank=4, target_modules=["q_proj", "v_proj"], dtype="float32",
              base_model="tiny-llama", hypernet_sha="f" * 64)


def adapter_bytes(seed: int = 0, rows: int = 8) -> bytes:
    """Real safetensors bytes of a small random LoRA (A and B for one module)."""
    rng = np.random.default_rng(seed)
    return save({
        "lora_A.weight": rng.standard_normal((4, rows), dtype=np.float32),
        "lora_B.weight": rng.standard_normal((rows, 4), dtype=np.float32),
    })


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed + 10_000).standard_normal(dim).astype(np.float32)


def add(store: AdapterStore, user: str, seed: int = 0, *, kind: str = "document", rows: int = 8, **kw):
    """Add a memory with sensible defaults (unique text and adapter per seed)."""
    args = dict(FIELDS, adapter_bytes=adapter_bytes(seed, rows), embedding=vec(seed),
                embedding_model="emb", text=f"memory text {seed}")
    args.update(kw)
    return store.add_memory(user, kind, **args)


def blob_files(tmp_path) -> list:
    """All files under ``tmp_path/blobs`` (the tests' blob directory)."""
    root = tmp_path / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def pg_schema_url(base: str) -> Iterator[str]:
    """Yield a URL whose search_path is a fresh schema on the server at ``base``; drop it afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
