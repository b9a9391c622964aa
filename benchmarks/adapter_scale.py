"""Adapter strength probe: D2L scores on held-out data with the generated weight delta scaled by s
(alpha * s) at inference. Pick a --seed other than the reported evaluation's (0) so the choice is not tuned
on the numbers it would report.

    python benchmarks/adapter_scale.py --seed 7 --scales 1,1.5,2 --out benchmarks/results/adapter_scale_probe_seed7.json
"""

from __future__ import annotations

import argparse
import json

from d2l_memory.engine import D2L
from d2l_memory.evaluation import evaluate, heldout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--kinds", default="personal,niah,realdoc")
    p.add_argument("--n", type=int, default=16, help="held-out documents per kind")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scales", default="1,1.5,2")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    d2l = D2L.from_pretrained(a.checkpoint)
    results = {}
    for kind in a.kinds.split(","):
        samples = heldout(kind, a.n, a.seed, "test", d2l)
        for scale in (float(x) for x in a.scales.split(",")):
            r = evaluate(d2l, samples, conditions=["d2l"], max_new_tokens=48, adapter_scale=scale)["d2l"]
            results[f"{kind}@{scale}"] = r
            print(kind, scale, json.dumps({k: r[k] for k in ("n", "em", "contains", "f1")}), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
