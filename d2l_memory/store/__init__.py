"""Adapter store: per-user memories with their LoRA adapters, embeddings, lineage and history in SQL.

SQLite (WAL) is the embedded default; PostgreSQL serves larger deployments. The schema
is managed by Alembic migrations (:mod:`d2l_memory.store.migrate`). The store never
imports torch: adapters are opaque safetensors ``bytes``.

    from d2l_memory.store import AdapterStore
    with AdapterStore("sqlite:////tmp/memory.db") as store:
        rec = store.add_memory("alice", "document", adapter_bytes=data, rank=8,
                               target_modules=["q_proj", "v_proj"], dtype="bfloat16",
                               base_model="HuggingFaceTB/SmolLM2-135M-Instruct", hypernet_sha="...",
                               embedding=vec, embedding_model="all-MiniLM-L6-v2", text="...")
        hits = store.search("alice", query_vec, k=5)
"""

from .config import StoreConfig, data_home, default_url
from .errors import (
    ConfigError,
    CorruptAdapterError,
    EmbeddingDimMismatch,
    ImportExportError,
    MemoryNotFound,
    MigrationError,
    StoreError,
    UserNotFound,
    ValidationError,
)
from .models import MEMORY_KINDS
from .records import (
    AdapterInfo,
    HistoryEvent,
    ImportReport,
    LineageRecord,
    MemoryRecord,
    NewMemory,
    PurgeReport,
    UserRecord,
)
from .store import AdapterStore

__all__ = [
    "MEMORY_KINDS",
    "AdapterInfo",
    "AdapterStore",
    "ConfigError",
    "CorruptAdapterError",
    "EmbeddingDimMismatch",
    "HistoryEvent",
    "ImportExportError",
    "ImportReport",
    "LineageRecord",
    "MemoryNotFound",
    "MemoryRecord",
    "MigrationError",
    "NewMemory",
    "PurgeReport",
    "StoreConfig",
    "StoreError",
    "UserNotFound",
    "UserRecord",
    "ValidationError",
    "data_home",
    "default_url",
]
