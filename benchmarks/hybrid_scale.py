"""Hybrid answers (document in the prompt + its adapter) with the adapter's strength scaled by s.

Scale 0 is the document in the prompt alone (the in-context condition); 1 is the memory layer's hybrid mode
with the shipped adapter as is. Engine level, own document only (no recall), held-out test split:

    python benchmarks/hybrid_scale.py --kinds niah,personal --n 8 --seed 0 --scales 0,0.5,1
"""

from __future__ import annotations

import argparse
import json

from d2l_memory.engine import D2L
from d2l_memory.evaluation import Scores, heldout
from d2l_memory.prompts import context_prompt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--kinds", default="niah,personal")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scales", default="0,0.5,1")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    d2l = D2L.from_pretrained(a.checkpoint)
    scales = [float(s) for s in a.scales.split(",")]
    results = {}
    for kind in a.kinds.split(","):
        scores = {s: Scores() for s in scales}
        for sample in heldout(kind, a.n, a.seed, "test", d2l):
            adapter = d2l.internalize(sample.context)
            for qa in sample.qas:
                prompt = [{"role": "user", "content": context_prompt(sample.context, qa.question)}]
                for s in scales:
                    ad = None if s == 0 else adapter.scaled(s)
                    text = d2l.complete(prompt, ad, max_new_tokens=48)[0].text
                    scores[s].add(text, qa.answer, qa.question)
        results[kind] = {"n_questions": scores[scales[0]].n,
                         **{str(s): {k: round(sc.summary()[k], 4) for k in ("em", "contains", "f1")}
                            for s, sc in scores.items()}}
        print(json.dumps({kind: results[kind]}), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
