"""Needle-in-a-haystack "magic number" samples (after the D2L reference generator).

The haystack is a run of fixed filler blocks joined with ``"\\n"``; the filler blocks cycle
through a few short plain sentences over a tiny vocabulary. One block is replaced by the needle
``"The special magic number is NNNN."`` (4 digits, zero-padded). The question is always
:data:`QUESTION` and the answer the bare 4-digit string.

- Depth: samples are spread evenly over :data:`N_DEPTH_BINS` depth bins; for bin ``d`` the needle
  block index is uniform in ``[floor(N*d/10), ceil(N*(d+1)/10) - 1]`` for ``N`` blocks.
- Length: a token-count function (``str -> int``; default ``len(text) / 4``) maps each token bin
  ``[lo, hi)`` to the block counts whose haystack length falls inside it.
- Splits: each needle number belongs to exactly one split (a salted hash of the number), so a
  held-out number never appears in training, and no (length, depth, number) triple is shared.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from functools import lru_cache

from .types import QA, Sample, check_split, make_rng, split_of

logger = logging.getLogger(__name__)

QUESTION = "What is the special magic number? Reply with only the number."
NEEDLE_TEMPLATE = "The special magic number is {number}."
N_DEPTH_BINS = 10
MAX_BLOCKS = 100_000

#: Filler blocks, cycled in order. Short plain sentences over a small fixed vocabulary, no digits.
FILLER_BLOCKS: tuple[str, ...] = (
    "The river is wide. The hill is tall. The road is long. We walk on.",
    "The bird is small. The tree is old. The wind is soft. We walk on.",
    "The lake is still. The stone is cold. The path is long. We rest here.",
    "The hill is green. The river is slow. The bird is high. We walk on.",
    "The road is dry. The tree is tall. The lake is wide. We rest here.",
    "The wind is cold. The stone is old. The path is soft. We walk on.",
)

TokenCounter = Callable[[str], int]


def heuristic_token_count(text: str) -> int:
    """Default token counter: about four characters per token."""
    return max(1, round(len(text) / 4))


def filler_blocks(n_blocks: int) -> list[str]:
    """The first ``n_blocks`` filler blocks (cycling through :data:`FILLER_BLOCKS`)."""
    return [FILLER_BLOCKS[i % len(FILLER_BLOCKS)] for i in range(n_blocks)]


def needle(number: str) -> str:
    """The needle sentence for a 4-digit number string."""
    return NEEDLE_TEMPLATE.format(number=number)


def render_haystack(n_blocks: int, needle_index: int, number: str) -> str:
    """Haystack of ``n_blocks`` blocks whose block ``needle_index`` is replaced by the needle."""
    if not 0 <= needle_index < n_blocks:
        raise ValueError(f"needle_index {needle_index} out of range for {n_blocks} blocks")
    blocks = filler_blocks(n_blocks)
    blocks[needle_index] = needle(number)
    return "\n".join(blocks)


def depth_bin_range(n_blocks: int, depth_bin: int, n_bins: int = N_DEPTH_BINS) -> tuple[int, int]:
    """Inclusive range of needle block indices for ``depth_bin`` (never empty)."""
    lo = math.floor(n_blocks * depth_bin / n_bins)
    hi = math.ceil(n_blocks * (depth_bin + 1) / n_bins) - 1
    return lo, min(max(hi, lo), n_blocks - 1)


def numbers_for_split(split: str) -> tuple[str, ...]:
    """All 4-digit needle numbers reserved for ``split`` (about 80/10/10 %)."""
    check_split(split)
    return _numbers_by_split()[split]


@lru_cache(maxsize=1)
def _numbers_by_split() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i in range(10_000):
        num = f"{i:04d}"
        out[split_of(num, salt="niah-number")].append(num)
    return {k: tuple(v) for k, v in out.items()}


def block_counts_for_bin(
    lo: int, hi: int, count_tokens: TokenCounter | None = None, max_blocks: int = MAX_BLOCKS
) -> list[int]:
    """Block counts ``k`` whose haystack (with a needle) has a token length in ``[lo, hi)``.

    Haystack length grows with ``k``, so the two edges are found by a doubling search, then a binary
    search (a real tokenizer is called O(log k) times on haystacks at most twice the bin's length, not
    once per ``k`` nor on a ``max_blocks`` haystack).
    """
    count = count_tokens or heuristic_token_count

    def length(k: int) -> int:
        return count(render_haystack(k, k // 2, "0000"))

    def first_at_least(target: int) -> int:
        b = 1
        while b <= max_blocks and length(b) < target:
            b *= 2
        a, b = max(1, b // 2), min(b, max_blocks + 1)  # answer in [a, b]; max_blocks + 1 means "none"
        while a < b:
            mid = (a + b) // 2
            if length(mid) >= target:
                b = mid
            else:
                a = mid + 1
        return a

    k_lo, k_hi = first_at_least(lo), first_at_least(hi)
    ks = list(range(k_lo, min(k_hi, max_blocks + 1)))
    if not ks:
        raise ValueError(f"no haystack length falls in token bin [{lo}, {hi})")
    return ks


def _normalise_bins(token_range: tuple[int, int] | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    if len(token_range) == 2 and all(isinstance(x, int) for x in token_range):
        bins = [tuple(token_range)]
    else:
        bins = [tuple(b) for b in token_range]
    for lo, hi in bins:
        if not 0 <= lo < hi:
            raise ValueError(f"bad token bin [{lo}, {hi})")
    return bins  # type: ignore[return-value]


def build_niah(
    n: int,
    token_range: tuple[int, int] | Sequence[tuple[int, int]] = (32, 256),
    seed: int = 0,
    split: str = "train",
    count_tokens: TokenCounter | None = None,
) -> list[Sample]:
    """Build ``n`` NIAH samples.

    Args:
        n: number of samples.
        token_range: one token bin ``(lo, hi)`` or a list of bins; samples cycle over the bins
            (and, inside a bin, over 10 depth bins, so ``n`` a multiple of 10 covers depths exactly
            evenly).
        seed: RNG seed; the same seed (and split) gives identical samples.
        split: ``"train"``, ``"val"`` or ``"test"``; decides the pool of needle numbers.
        count_tokens: ``str -> int`` token counter (e.g. ``lambda s: len(tok(s).input_ids)``);
            default :func:`heuristic_token_count`.

    Returns:
        Samples with ``meta`` keys ``number``, ``depth_bin``, ``needle_index``, ``n_blocks``,
        ``depth`` (needle index / (n_blocks - 1)), ``n_tokens``, ``token_bin``.
    """
    check_split(split)
    count = count_tokens or heuristic_token_count
    bins = _normalise_bins(token_range)
    ks_per_bin = [block_counts_for_bin(lo, hi, count) for lo, hi in bins]
    numbers = numbers_for_split(split)
    rng = make_rng("niah", seed, split)
    samples = []
    for i in range(n):
        depth_bin = i % N_DEPTH_BINS
        bin_idx = (i // N_DEPTH_BINS) % len(bins)
        lo, hi = bins[bin_idx]
        for _attempt in range(8):  # a real tokenizer can shift a bin-edge length by a token
            n_blocks = rng.choice(ks_per_bin[bin_idx])
            d_lo, d_hi = depth_bin_range(n_blocks, depth_bin)
            needle_index = rng.randint(d_lo, d_hi)
            number = rng.choice(numbers)
            context = render_haystack(n_blocks, needle_index, number)
            n_tokens = count(context)
            if lo <= n_tokens < hi:
                break
        else:
            logger.debug("niah sample %d has %d tokens, outside [%d, %d)", i, n_tokens, lo, hi)
        samples.append(
            Sample(
                context=context,
                qas=(QA(QUESTION, number),),
                kind="niah",
                id=f"niah-{split}-s{seed}-{i:06d}",
                meta={
                    "number": number,
                    "depth_bin": depth_bin,
                    "needle_index": needle_index,
                    "n_blocks": n_blocks,
                    "depth": needle_index / max(1, n_blocks - 1),
                    "n_tokens": n_tokens,
                    "token_bin": [lo, hi],
                },
            )
        )
    logger.info("built %d NIAH samples (split=%s, bins=%s)", len(samples), split, bins)
    return samples
