"""Weight averaging ("model soup", WiSE-FT) of hypernetwork checkpoints.

    python -m d2l_memory.training.soup runs/a/step_00200 smollm2-135m --weights 0.5 0.5 --out runs/soup

Two checkpoints fine-tuned from the same start often sit in one basin: their weighted mean can keep the gains
of both (e.g. a stage that improved personal facts and one that improved haystacks) without another training run.
All inputs must share the hypernetwork config and base model; the mean is computed in fp32 and saved like any
checkpoint (sharded safetensors + JSON), with the recipe recorded under "soup".

Measured caveat (twenty-third session, benchmarks/RESULTS.md): the even soup of stage 6 and probe23 step 250
(250 steps apart) stored more personal facts (48 vs 38 and 37 of 228) but lost every haystack (0 vs 13 and 12
of 48). The latents' running mean (`latent_mean`, norm ~385) moved 35% between the two, and a document's own
part of its latents is only ~5% of that norm, so the head is tuned to its checkpoint's exact mean;
re-estimating the mean on sample documents made it worse (personal 5 of 228). Judge every soup before use.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..errors import CheckpointError

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def average_checkpoints(sources: list[str | Path], out: str | Path, weights: list[float] | None = None,
                        dtype: torch.dtype = torch.bfloat16) -> Path:
    """Save sum_i w_i * state_i of `sources` (directories or shipped names) to `out`; weights default to equal
    and must be non-negative and sum to 1. Returns `out`."""
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
    keep["soup"] = {"sources": [str(d) for d in dirs], "weights": weights}
    log.info("averaged %d checkpoints (weights %s) into %s", len(dirs), weights, out)
    return ckpt.save_checkpoint(out, mean, keep, dtype=dtype)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", help="checkpoint directories or shipped names")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per source, summing to 1")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        print(average_checkpoints(a.sources, a.out, a.weights, DTYPES[a.dtype]))
    except (ValueError, CheckpointError) as e:
        p.error(str(e))


if __name__ == "__main__":
    main()
