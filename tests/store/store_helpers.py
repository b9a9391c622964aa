"""Helpers shared by the adapter-store tests (imported as a plain module)."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save

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
