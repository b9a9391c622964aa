"""d2l-memory: a memory layer for LLM apps built on Doc-to-LoRA.

    from d2l_memory import D2L, Memory
    mem = Memory.from_defaults()                       # SQLite + SmolLM2-135M + the shipped hypernetwork
    mem.ingest("alice", "My name is Alice. I live in Lisbon.")
    mem.answer("alice", "Where does the user live?").text

Names are imported lazily, so `import d2l_memory` stays cheap (no torch until the engine is used).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "D2L": "d2l_memory.engine",
    "Completion": "d2l_memory.engine",
    "Adapter": "d2l_memory.adapter",
    "HypernetConfig": "d2l_memory.config",
    "EncoderConfig": "d2l_memory.config",
    "Memory": "d2l_memory.memory",
    "MemoryConfig": "d2l_memory.memory",
    "AdapterStore": "d2l_memory.store",
    "StoreConfig": "d2l_memory.store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'd2l_memory' has no attribute {name!r}")
