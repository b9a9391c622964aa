"""A deterministic mixture of NIAH, personal-memory and real-document samples."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .niah import build_niah
from .personal import build_personal
from .realdocs import build_realdocs
from .types import Sample, check_split, make_rng, stable_hash, write_jsonl

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS: dict[str, float] = {"niah": 0.2, "personal": 0.4, "realdoc": 0.4}


def mix_counts(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` into per-kind counts proportional to ``weights`` (largest remainder)."""
    unknown = set(weights) - {"niah", "personal", "realdoc"}
    if unknown:
        raise ValueError(f"unknown kinds in weights: {sorted(unknown)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def build_mix(
    n: int,
    seed: int = 0,
    split: str = "train",
    weights: Mapping[str, float] | None = None,
    niah_kwargs: Mapping[str, Any] | None = None,
    personal_kwargs: Mapping[str, Any] | None = None,
    realdoc_kwargs: Mapping[str, Any] | None = None,
) -> list[Sample]:
    """Build about ``n`` samples of ``split``, mixed by ``weights`` and interleaved by ``seed``.

    Each kind is built by its own builder with a seed derived from ``seed`` (so the mixture is
    deterministic) and the same ``split`` (so held-out mixes stay disjoint from training). Extra
    builder arguments go in ``*_kwargs`` (e.g. ``niah_kwargs={"token_range": [(32, 128)]}``,
    ``realdoc_kwargs={"root": path}``). Kinds with weight 0 are not built at all (so no download
    happens without a ``realdoc`` weight). Real documents are finite: if a split has fewer than
    requested, the mix is shorter (a warning is logged).
    """
    check_split(split)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    counts = mix_counts(n, weights)
    sub_seed = {k: stable_hash(f"mix:{seed}:{k}") % (2**31) for k in counts}
    parts: list[Sample] = []
    if counts.get("niah"):
        parts += build_niah(counts["niah"], seed=sub_seed["niah"], split=split, **dict(niah_kwargs or {}))
    if counts.get("personal"):
        parts += build_personal(
            counts["personal"], seed=sub_seed["personal"], split=split, **dict(personal_kwargs or {})
        )
    if counts.get("realdoc"):
        parts += build_realdocs(
            counts["realdoc"], seed=sub_seed["realdoc"], split=split, **dict(realdoc_kwargs or {})
        )
    make_rng("mix", seed, split).shuffle(parts)
    logger.info("built mix of %d samples (split=%s, counts=%s)", len(parts), split, counts)
    return parts


def dump_mix(
    path: str | Path,
    n: int,
    seed: int = 0,
    split: str = "train",
    weights: Mapping[str, float] | None = None,
    **kwargs: Any,
) -> int:
    """Build a mix with :func:`build_mix` and write it to ``path`` as JSONL; returns the count."""
    return write_jsonl(build_mix(n, seed=seed, split=split, weights=weights, **kwargs), path)
