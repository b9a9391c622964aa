"""Does recall's merging hurt? Held-out profiles are ingested as one user's memories (10 per user, as in
`bench_memory.py`); each profile's questions, naming the person, are then scored (mean log-probability per
token of the true answer, `evaluation.answer_logprob`) with the adapter the memory recalls at top-k 1, 2
and 4 (similarity-softmax weights, the best memory at weight 1), with the profile's own adapter alone (an
oracle recall) and with none. It also counts how often the best-ranked memory is the right profile.

    python benchmarks/recall_probe.py --checkpoint smollm2-135m --users 4 --per-user 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from d2l_memory.data.personal import build_personal
from d2l_memory.engine import D2L
from d2l_memory.evaluation import answer_logprob
from d2l_memory.memory import Memory, MemoryConfig, SentenceTransformerEmbedder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--per-user", type=int, default=10)
    p.add_argument("--ks", default="1,2,4")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    ks = [int(k) for k in a.ks.split(",")]
    engine = D2L.from_pretrained(a.checkpoint)
    samples = build_personal(a.users * a.per_user, seed=a.seed, split="test", style="profile",
                             question_person="named")
    scores: dict[str, list[float]] = {"none": [], "own adapter": [], **{f"recall top-{k}": [] for k in ks}}
    top1_right, n_q = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(engine, f"sqlite:///{Path(tmp) / 'probe.db'}", SentenceTransformerEmbedder(),
                     MemoryConfig(top_k=max(ks), min_similarity=-1.0))
        for u in range(a.users):
            group = samples[u * a.per_user:(u + 1) * a.per_user]
            reports = mem.ingest_many(f"user{u}", [s.context for s in group])
            ids = [r.ids[0] for r in reports]
            print(f"user {u + 1}/{a.users} ingested", flush=True)
            own = engine.internalize([s.context for s in group])  # the oracle: each profile's own adapter (fp32)
            for s, mid, own_adapter in zip(group, ids, own, strict=True):
                for qa in s.qas:
                    n_q += 1
                    scores["none"].append(answer_logprob(engine, qa.question, qa.answer, None))
                    scores["own adapter"].append(answer_logprob(engine, qa.question, qa.answer, own_adapter))
                    for k in ks:
                        rec = mem.recall(f"user{u}", qa.question, k=k)
                        if k == ks[0]:
                            top1_right += rec.memories[0].id == mid
                        scores[f"recall top-{k}"].append(answer_logprob(engine, qa.question, qa.answer, rec.adapter))
        mem.close()
    res = {name: statistics.mean(v) for name, v in scores.items() if v}
    res["top1_right"] = top1_right / n_q
    res["questions"] = n_q
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "results": res}, indent=1) + "\n")


if __name__ == "__main__":
    main()
