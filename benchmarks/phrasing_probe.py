"""How much does the way a question is phrased matter to a checkpoint? Held-out loss (`training.validate`) on
the same held-out profiles asked three ways: "the user" (the training phrasing of the shipped checkpoint),
first person ("my", as a user asks the assistant) and by first name (as `bench_memory.py` asks, to tell
profiles apart).

    python benchmarks/phrasing_probe.py smollm2-135m runs/x/final --n 64 --out benchmarks/results/phrasing_probe.json
"""

from __future__ import annotations

import argparse
import json

import torch

from d2l_memory.data.personal import build_personal
from d2l_memory.training.teacher import compute_targets
from d2l_memory.training.validate import heldout_loss, load_checkpoints

PHRASINGS = (("the user", "third"), ("first person", "first"), ("first name", "named"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--n", type=int, default=64, help="held-out profiles and transcripts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-dtype", choices=["auto", "float32", "bfloat16"], default="bfloat16")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    dtype = None if a.base_dtype == "auto" else getattr(torch, a.base_dtype)
    sets = {label: build_personal(a.n, seed=a.seed, split="test", question_person=person)
            for label, person in PHRASINGS}
    res, targets = {}, None
    for ck, d2l in load_checkpoints(a.checkpoints, dtype=dtype):
        if targets is None:  # gold answers, tokenized: the same for every checkpoint on this base model
            targets = {label: compute_targets(d2l, samples, use_teacher=False) for label, samples in sets.items()}
        res[ck] = {}
        for label, samples in sets.items():
            res[ck][label] = heldout_loss(d2l, samples, targets[label])["personal"]
            print(json.dumps({ck: {label: res[ck][label]}}), flush=True)
    print("| checkpoint | " + " | ".join(f"{label}: own | gap" for label, _ in PHRASINGS) + " |")
    print("|---|" + "---:|---:|" * len(PHRASINGS))
    for ck, r in res.items():
        print(f"| {ck} | " + " | ".join(f"{r[label]['own']:.3f} | {r[label]['gap']:+.3f}" for label, _ in PHRASINGS)
              + " |")
    print("examples: " + "; ".join(f"{label}: {sets[label][0].qas[0].question}" for label, _ in PHRASINGS))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "results": res}, f, indent=1)


if __name__ == "__main__":
    main()
