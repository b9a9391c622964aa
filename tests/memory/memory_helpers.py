"""Shared helpers of the memory-layer and CLI tests: a tiny engine whose adapters change the model."""

from __future__ import annotations

import functools

import torch
from tiny import tiny_d2l

from d2l_memory.memory import HashingEmbedder, Memory, MemoryConfig

DOCS = {
    "alice": "Alice lives in Lisbon. She moved there from Porto.",
    "magic": "The special magic number is 1234. Remember the magic number.",
    "sky": "The grass is green and the sky is blue.",
}
TEST_CONFIG = dict(memory_tokens=48, min_similarity=0.15, adapter_dtype="float32", max_new_tokens=6)


def randomize(d2l, seed: int = 1):
    """Move off the exact-zero init so that adapters change the model (see tests/tiny.py make_loud)."""
    from tiny import make_loud

    return make_loud(d2l, seed)


@functools.lru_cache(maxsize=1)
def shared_engine():
    """One randomized tiny engine per test session (building it takes a second or two)."""
    return randomize(tiny_d2l("llama"))


def make_memory(db_url: str, engine=None, embedder=None, **config) -> Memory:
    cfg = MemoryConfig(**{**TEST_CONFIG, **config})
    return Memory(engine or shared_engine(), db_url, embedder or HashingEmbedder(), cfg)


def cli_factory(db_url: str | None, checkpoint: str) -> Memory:
    """A `$D2L_MEMORY_FACTORY`-style factory for the CLI: (db url, checkpoint) -> Memory on the tiny engine."""
    return make_memory(db_url)


def logits(d2l, prompt: str, adapter=None) -> torch.Tensor:
    ids = torch.tensor([d2l.prompt_ids(prompt)])
    with d2l.lora_context([adapter]), torch.no_grad():
        return d2l.model(input_ids=ids).logits
