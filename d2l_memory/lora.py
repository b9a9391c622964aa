"""Functional per-sample LoRA inside a frozen HF model.

Every row of a batch may carry its own adapter (and rank): for a target linear layer with weight W,

    y[b] = W x[b] + alpha * (x[b] A[b]^T) B[b]        A[b]: [R, d_in], B[b]: [R, d_out]

as in the reference `lora_forward` (alpha used directly, not divided by r). Ranks differ per row, so
rows are zero-padded to the largest R; zero rows add exactly nothing. The deltas are added by forward
hooks that live only inside the `apply_lora` context, so no patch outlives it. The same hooks serve
training forwards and KV-cached generation (each decoding step sees the row's own A and B).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .errors import AdapterError

_LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


def find_target_modules(model: nn.Module, targets: Sequence[str]) -> dict[str, list[nn.Linear]]:
    """Map each target module name (e.g. "down_proj") to its nn.Linear in every decoder layer, in order."""
    paths = find_target_paths(model, targets)
    named = dict(model.named_modules())
    return {t: [named[p] for p in ps] for t, ps in paths.items()}


def find_target_paths(model: nn.Module, targets: Sequence[str]) -> dict[str, list[str]]:
    """Map each target module name to the full module paths of its per-layer nn.Linear, ordered by layer."""
    if isinstance(targets, str):
        targets = [targets]
    found: dict[str, dict[int, str]] = {t: {} for t in targets}
    for name, mod in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in found and isinstance(mod, nn.Linear):
            m = _LAYER_RE.search(name + ".")
            if m is None:
                continue
            found[leaf][int(m.group(1))] = name
    out: dict[str, list[str]] = {}
    for t, by_layer in found.items():
        if not by_layer:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                             if isinstance(m, nn.Linear) and _LAYER_RE.search(n + ".")})
            raise AdapterError(f"unknown target module {t!r}: the base model has no per-layer nn.Linear of that "
                               f"name. Choose from {linear}")
        out[t] = [by_layer[i] for i in sorted(by_layer)]
    return out


def _lora_hook(A: torch.Tensor, B: torch.Tensor, alpha: float):
    """A: [batch, R, d_in], B: [batch, R, d_out] for one layer and module."""

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]  # [b, s, d_in]
        a, b = A, B
        if x.shape[0] != a.shape[0]:
            if x.shape[0] % a.shape[0]:
                raise AdapterError(f"batch of {x.shape[0]} rows cannot carry {a.shape[0]} adapters; pass one "
                                   "adapter (or None) per prompt")
            rep = x.shape[0] // a.shape[0]  # HF expands rows with repeat_interleave (beams, num_return_sequences)
            a, b = a.repeat_interleave(rep, 0), b.repeat_interleave(rep, 0)
        h = torch.einsum("bsi,bri->bsr", x.to(a.dtype), a)  # [b, s, R]
        delta = torch.einsum("bsr,bro->bso", h, b) * alpha  # [b, s, d_out]
        return output + delta.to(output.dtype)

    return hook


@contextmanager
def apply_lora(model: nn.Module, module_paths: dict[str, list[str]], A: dict[str, torch.Tensor],
               B: dict[str, torch.Tensor], alpha: float) -> Iterator[None]:
    """Add per-sample LoRA deltas to the target modules of `model` inside the `with` block.

    A[t]: [batch, L, R, d_in] and B[t]: [batch, L, R, d_out] for each target module t.
    """
    named = dict(model.named_modules())
    handles = []
    try:
        for t, paths in module_paths.items():
            if t not in A:
                continue
            a_t, b_t = A[t], B[t]
            if a_t.shape[1] != len(paths):
                raise AdapterError(f"adapter has {a_t.shape[1]} layers for {t!r}, the base model has {len(paths)}")
            mod0 = named[paths[0]]
            if a_t.shape[-1] != mod0.in_features or b_t.shape[-1] != mod0.out_features:
                raise AdapterError(f"adapter shapes for {t!r} ({a_t.shape[-1]}->{b_t.shape[-1]}) do not match "
                                   f"the base model ({mod0.in_features}->{mod0.out_features})")
            # unbind, not a_t[:, layer] per layer: one autograd node whose backward stacks the layers'
            # gradients, where each indexing's backward wrote a zero gradient the size of the whole adapter
            for path, a, b in zip(paths, a_t.unbind(1), b_t.unbind(1), strict=True):
                handles.append(named[path].register_forward_hook(_lora_hook(a, b, alpha)))
        yield
    finally:
        for h in handles:
            h.remove()


def pad_rank(tensors: Sequence[torch.Tensor], rank: int) -> torch.Tensor:
    """Stack [L, R_i, d] tensors into [n, L, rank, d], zero-padding the rank axis (to the first's dtype/device).

    One `stack` of padded views, so autograd keeps one node per row: writing each row into a zero tensor in
    place made every row's backward copy the whole [n, L, rank, d] gradient (n^2 copies; 36% of a 16-document
    training step on the CPU under torch.profiler; `benchmarks/bench_train_step.py` times the step).
    """
    ref = tensors[0]
    too_big = [t.shape[1] for t in tensors if t.shape[1] > rank]
    if too_big:
        raise AdapterError(f"pad_rank: rank {rank} is below an adapter's rank {max(too_big)}")
    return torch.stack([F.pad(t.to(device=ref.device, dtype=ref.dtype), (0, 0, 0, rank - t.shape[1]))
                        for t in tensors])
