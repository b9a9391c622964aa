"""Padding token-id lists into a batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> (ids [n, T] long, attention mask [n, T] long).

    Right padding (training and teacher forwards: real tokens keep positions 0..len-1) or left padding
    (generation: every row's last token is at the end).
    """
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(T - len(s), T) if left else slice(0, len(s))
        ids[i, span] = torch.tensor(list(s), dtype=torch.long)
        attn[i, span] = 1
    return ids, attn
