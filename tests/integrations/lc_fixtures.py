"""A tiny, offline Memory for the LangChain tests: random tiny model + temp SQLite store + hashing embedder."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from tiny import tiny_d2l

MAX_TOKENS = 12  # tiny models write gibberish; a few tokens are enough for plumbing tests


def tiny_memory(tmp_dir: str | Path | None = None, *, loud_adapters: bool = True, **config):
    """A Memory on a tiny random llama. Every memory of the user is recalled (min_similarity=-1).

    `loud_adapters` makes the untrained hypernetwork's adapters change the output (the B half of its head
    starts at 0, i.e. delta W = 0), so tests can tell which user's adapter was applied.
    """
    from d2l_memory.memory import HashingEmbedder, Memory, MemoryConfig
    from d2l_memory.store import AdapterStore

    if tmp_dir is None:
        tmp_dir = tempfile.mkdtemp(prefix="d2l-lc-")
        atexit.register(shutil.rmtree, tmp_dir, True)
    engine = tiny_d2l("llama")
    if loud_adapters:
        from tiny import make_loud

        make_loud(engine, scale=1.0)
    store = AdapterStore(f"sqlite:///{Path(tmp_dir) / 'memory.db'}")
    cfg = dict(min_similarity=-1.0, max_new_tokens=MAX_TOKENS, adapter_dtype="float32")
    cfg.update(config)
    return Memory(engine, store, embedder=HashingEmbedder(64), config=MemoryConfig(**cfg))


@functools.lru_cache(maxsize=1)
def shared_memory():
    """One tiny Memory for the standard suites (built once per session); "standard-user" has one memory."""
    mem = tiny_memory()
    mem.ingest("standard-user", "The grass is green and the sky is blue. Alice lives in Lisbon.")
    return mem
