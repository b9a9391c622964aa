"""`MemoryConfig`: how memories are cut, selected, weighted and merged. Validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import is_number
from ..errors import ConfigError

WEIGHTINGS = ("softmax", "uniform")
WEIGHT_NORMS = ("max", "sum")
MERGES = ("concat", "svd")
ADAPTER_DTYPES = ("float32", "bfloat16", "float16")


def _fail(name: str, problem: str, fix: str) -> None:
    raise ConfigError(f"MemoryConfig `{name}` {problem}. Fix: {fix}")


@dataclass
class MemoryConfig:
    """Selection, merging and ingestion settings of a :class:`~d2l_memory.memory.Memory`.

    Selection: the query is embedded and the user's memories are ranked by cosine similarity; the best
    ``top_k`` whose similarity is at least ``min_similarity`` are used.

    Weighting: ``softmax`` weights are ``softmax(similarity / softmax_temperature)``; ``uniform`` gives every
    selected memory the same weight. With ``weight_norm="max"`` the weights are divided by their maximum, so
    the best memory counts fully (weight 1) and the others in proportion, which is what the hypernetwork saw
    in training (the chunks of a long document add up with weight 1 each). ``"sum"`` makes them sum to 1.

    Merging: ``concat`` stacks the weighted adapters along the rank axis (exact weighted sum of the weight
    deltas; the rank grows with k); ``svd`` then compresses the sum to ``merge_rank`` (truncated SVD). Either
    way the hypernetwork's input-independent bias block is counted once, not once per memory.

    Prompt text (off by default): with ``context_tokens > 0`` the stored text of the best recalled memories,
    as many as fit in that many tokens, also goes into the prompt; ``use_adapters=False`` leaves the
    adapters out, which is plain retrieval-augmented generation over the same store (a baseline, or a
    fallback while a hypernetwork is weak). When text and adapter are both used (hybrid), the adapter's weight
    delta is scaled by ``hybrid_adapter_scale``: at full strength the shipped adapter overrides facts the text
    states, at half strength it still sets the answer format and the text supplies the facts
    (``benchmarks/RESULTS.md``). ``context_tokens`` and ``use_adapters`` can be changed per call
    (``Memory.answer(..., context_tokens=..., use_adapters=...)``).
    """

    top_k: int = 4  # at most this many memories per query
    min_similarity: float = 0.2  # cosine similarity a memory needs to be used (-1 .. 1)
    weighting: str = "softmax"  # "softmax" over similarities, or "uniform"
    softmax_temperature: float = 0.1  # temperature of the softmax (lower = sharper)
    weight_norm: str = "max"  # "max": the best memory gets weight 1; "sum": weights sum to 1
    merge: str = "concat"  # "concat" (weighted rank concatenation) or "svd" (compressed to merge_rank)
    merge_rank: int = 32  # rank of an "svd" merge (plus the bias block)
    # target size of one memory: longer input is split on paragraph boundaries. 192 keeps a memory within the
    # lengths the shipped hypernetwork was trained on (NIAH haystacks <= 256 tokens); with 384 it answered no
    # NIAH needle past 1k tokens and fewer personal facts (benchmarks/RESULTS.md, twentieth session)
    memory_tokens: int = 192
    ingest_batch_size: int = 8  # memories internalized per batched forward pass
    max_ingest_bytes: int = 5_000_000  # refuse a single ingest (text, file, messages) larger than this
    adapter_dtype: str = "bfloat16"  # dtype the adapters are stored in
    store_text: bool = True  # keep the source text in the store (False: only its hash, the adapter, the embedding)
    adapter_cache_size: int = 256  # decoded adapters kept in memory (LRU, by memory id)
    merged_cache_size: int = 32  # merged adapters kept in memory (LRU, by ids and weights)
    consolidate_rank: int = 64  # rank a consolidation compresses to (plus the bias block)
    max_new_tokens: int = 128  # default answer length
    temperature: float = 0.0  # default sampling temperature (0 = greedy)
    system_prompt: str | None = None  # optional system message put before every prompt
    context_tokens: int = 0  # recalled memories' text put into the prompt, up to this many tokens (0: none)
    use_adapters: bool = True  # apply the recalled memories' merged adapter (False: text only, i.e. RAG)
    hybrid_adapter_scale: float = 0.5  # the adapter's strength when recalled text is in the prompt too

    def __post_init__(self) -> None:
        for name in ("top_k", "merge_rank", "memory_tokens", "ingest_batch_size", "max_ingest_bytes",
                     "consolidate_rank", "max_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                _fail(name, f"must be a positive int, got {v!r}", f"pass e.g. {name}={_DEFAULTS[name]}")
        for name in ("adapter_cache_size", "merged_cache_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                _fail(name, f"must be an int >= 0, got {v!r}", f"pass e.g. {name}={_DEFAULTS[name]} (0 disables it)")
        if not is_number(self.min_similarity) or not -1.0 <= self.min_similarity <= 1.0:
            _fail("min_similarity", f"must be a cosine similarity in [-1, 1], got {self.min_similarity!r}",
                  "pass e.g. min_similarity=0.2 (-1 keeps every memory)")
        if not is_number(self.hybrid_adapter_scale) or not 0 < self.hybrid_adapter_scale <= 4:
            _fail("hybrid_adapter_scale", f"must be in (0, 4], got {self.hybrid_adapter_scale!r}",
                  "pass e.g. hybrid_adapter_scale=0.5 (1: the adapter as generated; for none, use_adapters=False)")
        if not is_number(self.softmax_temperature) or self.softmax_temperature <= 0:
            _fail("softmax_temperature", f"must be > 0, got {self.softmax_temperature!r}",
                  "pass e.g. softmax_temperature=0.1, or weighting='uniform'")
        if not is_number(self.temperature) or self.temperature < 0:
            _fail("temperature", f"must be >= 0, got {self.temperature!r}", "pass 0 for greedy decoding")
        for name, allowed in (("weighting", WEIGHTINGS), ("weight_norm", WEIGHT_NORMS), ("merge", MERGES),
                              ("adapter_dtype", ADAPTER_DTYPES)):
            v = getattr(self, name)
            if v not in allowed:
                _fail(name, f"is {v!r}, not one of {allowed}", f"pass {name}={allowed[0]!r}")
        for name in ("store_text", "use_adapters"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, f"must be a bool, got {getattr(self, name)!r}", "pass True or False")
        check_context(self.context_tokens, self.use_adapters, "MemoryConfig `{}`")
        if self.context_tokens and not self.store_text:
            _fail("context_tokens", f"is {self.context_tokens} but store_text=False keeps no text to put into "
                  "the prompt", "set store_text=True, or context_tokens=0")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            _fail("system_prompt", f"must be a str or None, got {type(self.system_prompt).__name__}",
                  "pass a string, or None for no system message")

    def replace(self, **changes: Any) -> MemoryConfig:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown MemoryConfig fields {sorted(unknown)}. Fix: use one of "
                              f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_context(context_tokens: Any, use_adapters: Any, where: str = "`{}`") -> None:
    """Validate a context budget and the adapter switch (config fields or per-call arguments)."""
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int) or context_tokens < 0:
        raise ConfigError(f"{where.format('context_tokens')} must be an int >= 0, got {context_tokens!r}. Fix: pass "
                          "0 (memories only as adapters) or a token budget such as 1024")
    if not isinstance(use_adapters, bool):
        raise ConfigError(f"{where.format('use_adapters')} must be a bool, got {use_adapters!r}. Fix: pass True or False")
    if not use_adapters and context_tokens == 0:
        raise ConfigError(f"{where.format('use_adapters')} is False and context_tokens is 0, so recalled memories "
                          "would not be used at all. Fix: set use_adapters=True, or context_tokens > 0 (e.g. 1024)")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(MemoryConfig)}
