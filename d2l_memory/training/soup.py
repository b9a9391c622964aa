"""Weight averaging ("model soup", WiSE-FT) of hypernetwork checkpoints.

    python -m d2l_memory.training.soup runs/a/step_00200 smollm2-135m --weights 0.5 0.5 --out runs/soup \
        --recenter-data runs/a/data/train.jsonl

Two checkpoints fine-tuned from the same start often sit in one basin: their weighted mean can keep the gains
of both (e.g. a stage that improved personal facts and one that improved haystacks) without another training run.
All inputs must share the hypernetwork config and base model; the mean is computed in fp32 and saved like any
checkpoint (sharded safetensors + JSON), with the recipe recorded under "soup".

The latents' running mean (`latent_mean`, a statistic like BatchNorm's) is not a weight: the mean of two
running means does not centre the mean network's latents. Measured on stage 6 + probe23 step 250 (twenty-third
session): averaged as a weight, NIAH exact match fell from 13 and 12 of 48 to 0. Give sample documents
(`recenter_texts`, `--recenter-data`) to re-estimate it on the averaged weights, as SWA re-estimates BatchNorm.
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..data.types import read_jsonl
from ..errors import CheckpointError

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def average_checkpoints(sources: list[str | Path], out: str | Path, weights: list[float] | None = None,
                        dtype: torch.dtype = torch.bfloat16, recenter_texts: list[str] | None = None,
                        base_model: str | None = None) -> Path:
    """Save sum_i w_i * state_i of `sources` (directories or shipped names) to `out`; weights default to equal
    and must be non-negative and sum to 1. With `recenter_texts`, the latents' running mean is re-estimated on
    them with the averaged weights (loads the base model, or `base_model`). Returns `out`."""
    if len(sources) < 2:
        raise ValueError(f"average_checkpoints needs at least 2 sources, got {len(sources)}")
    weights = [1.0 / len(sources)] * len(sources) if weights is None else [float(w) for w in weights]
    if len(weights) != len(sources):
        raise ValueError(f"weights has {len(weights)} entries for {len(sources)} sources; give one per source")
    if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"weights must be non-negative and sum to 1, got {weights}")
    dirs = [ckpt.resolve_checkpoint(s) for s in sources]
    if Path(out).resolve() in {d.resolve() for d in dirs}:
        raise ValueError(f"out {out} is one of the sources; write the soup to a new directory")
    configs = [ckpt.read_config(d) for d in dirs]
    for d, c in zip(dirs[1:], configs[1:], strict=True):
        for field in ("hypernet", "base_model"):
            if c.get(field) != configs[0].get(field):
                raise CheckpointError(f"{d} differs from {dirs[0]} in {field!r}; only checkpoints of one "
                                      "hypernetwork config and base model can be averaged")
    mean: dict[str, torch.Tensor] = {}
    for d, c, w in zip(dirs, configs, weights, strict=True):
        state = ckpt.load_state(d, c)
        if mean and set(state) != set(mean):
            raise CheckpointError(f"{d} has other tensors than {dirs[0]}: {sorted(set(state) ^ set(mean))[:5]}")
        for k, v in state.items():
            v = v.float()
            if k in mean and mean[k].shape != v.shape:
                raise CheckpointError(f"tensor {k!r} is {tuple(v.shape)} in {d}, {tuple(mean[k].shape)} before")
            mean[k] = mean[k] + w * v if k in mean else w * v
    keep = {k: v for k, v in configs[0].items() if k not in ("shards", "split_tensors", "soup")}
    keep["soup"] = {"sources": [str(d) for d in dirs], "weights": weights,
                    "recentered_on": len(recenter_texts) if recenter_texts else 0}
    log.info("averaged %d checkpoints (weights %s) into %s", len(dirs), weights, out)
    path = ckpt.save_checkpoint(out, mean, keep, dtype=torch.float32 if recenter_texts else dtype)
    if recenter_texts:
        from ..engine import D2L

        d2l = D2L.from_pretrained(path, base_model=base_model)
        before = d2l.hypernet.latent_mean.clone() if hasattr(d2l.hypernet, "latent_mean") else None
        d2l.recenter(recenter_texts)
        if before is not None:
            log.info("re-centred latents on %d documents: running mean moved %.1f%%", len(recenter_texts),
                     100 * float((d2l.hypernet.latent_mean - before).norm() / before.norm().clamp(min=1e-12)))
        path = ckpt.save_checkpoint(out, d2l.hypernet.state_dict(), keep, dtype=dtype)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", help="checkpoint directories or shipped names")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per source, summing to 1")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--recenter-data", default=None,
                   help="samples JSONL (e.g. a recipe's data/train.jsonl) to re-estimate the latents' running mean on")
    p.add_argument("--recenter-n", type=int, default=128, help="documents of --recenter-data to use")
    p.add_argument("--base-model", default=None, help="base model for re-centring (default: the checkpoint's)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        texts = None
        if a.recenter_data:
            if a.recenter_n < 1:
                raise ValueError(f"--recenter-n must be >= 1, got {a.recenter_n}")
            samples = read_jsonl(a.recenter_data)
            texts = [s.context for s in random.Random(0).sample(samples, min(a.recenter_n, len(samples)))]
        print(average_checkpoints(a.sources, a.out, a.weights, DTYPES[a.dtype], texts, a.base_model))
    except (ValueError, CheckpointError, OSError) as e:
        p.error(str(e))


if __name__ == "__main__":
    main()
