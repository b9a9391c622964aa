"""Selection weights and adapter merging.

A D2L adapter of a document with K chunks is the rank concatenation of K chunk LoRAs and the hypernetwork's
input-independent bias block, which is the same for every document (``meta["bias_rank"]`` trailing rank
slots). Merging memories the way the hypernetwork was trained (chunk deltas add up, one bias) means summing
the weighted *bodies* and adding the bias block once; summing whole adapters would add it k times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import AdapterError

if TYPE_CHECKING:
    from ..adapter import Adapter

BIAS_KEY = "bias_rank"


def selection_weights(scores: Sequence[float], weighting: str, temperature: float, norm: str) -> list[float]:
    """Weights of the selected memories from their similarities ("softmax" or "uniform"; norm "max" or "sum")."""
    if not scores:
        return []
    if weighting == "uniform":
        raw = [1.0] * len(scores)
    else:
        top = max(scores)
        raw = [math.exp((s - top) / temperature) for s in scores]
    scale = max(raw) if norm == "max" else sum(raw)
    return [r / scale for r in raw]


def _part(ad: Adapter, lo: int, hi: int, meta: dict) -> Adapter:
    from ..adapter import Adapter

    return Adapter(A={t: a[:, lo:hi] for t, a in ad.A.items()}, B={t: b[:, lo:hi] for t, b in ad.B.items()},
                   alpha=ad.alpha, module_paths=ad.module_paths, base_model=ad.base_model,
                   hypernet_sha=ad.hypernet_sha, meta=meta)


def split_bias(ad: Adapter) -> tuple[Adapter | None, Adapter | None]:
    """(body, bias block) of an adapter; the bias is None when the adapter has none."""
    b = int(ad.meta.get(BIAS_KEY, 0) or 0)
    if b <= 0 or b > ad.rank:
        return ad, None
    body = _part(ad, 0, ad.rank - b, {}) if ad.rank > b else None
    return body, _part(ad, ad.rank - b, ad.rank, {})


def merge_adapters(adapters: Sequence[Adapter], weights: Sequence[float] | None = None, *, mode: str = "concat",
                   rank: int | None = None) -> tuple[Adapter, float | None]:
    """Merge adapters into one: delta = sum_i w_i * body_i (+ the bias block once).

    ``mode="concat"`` is exact (the rank is the sum of the ranks); ``mode="svd"`` compresses the weighted sum
    of the bodies to ``rank`` and returns the fraction of its squared Frobenius norm kept (else None).
    """
    from ..adapter import Adapter

    if not adapters:
        raise AdapterError("nothing to merge: no adapters given")
    w = [1.0] * len(adapters) if weights is None else [float(x) for x in weights]
    if len(w) != len(adapters):
        raise AdapterError(f"got {len(w)} weights for {len(adapters)} adapters")
    if mode not in ("concat", "svd"):
        raise AdapterError(f"merge mode must be 'concat' or 'svd', got {mode!r}")
    if mode == "svd" and (rank is None or rank <= 0):
        raise AdapterError(f"an svd merge needs a positive rank, got {rank!r}")
    if mode == "concat" and len(adapters) == 1 and w[0] == 1.0:
        return adapters[0], None
    bodies, weights_b, bias = [], [], None
    for ad, wi in zip(adapters, w, strict=True):
        body, b = split_bias(ad)
        if body is not None:
            bodies.append(body)
            weights_b.append(wi)
        if b is not None and bias is None:
            bias = b
    if not bodies:  # only bias blocks: the merge is the bias itself
        return adapters[0], None
    merged = Adapter.concat([x.to(dtype=_f32()) for x in bodies], weights_b)
    kept = None
    if mode == "svd":
        merged, kept = merged.truncate(rank)
    meta = {"parents": [ad.meta.get("id") for ad in adapters], "weights": w, BIAS_KEY: 0}
    if bias is not None:
        merged = Adapter.concat([merged, bias.to(dtype=_f32())])
        meta[BIAS_KEY] = bias.rank
    merged.meta = meta
    return merged, kept


def _f32():
    import torch

    return torch.float32
