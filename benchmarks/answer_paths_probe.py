"""Same adapter, three ways to answer: free greedy generation (24 tokens), 64 forced tokens (as
`bench_memory.py` does) and through `Memory.answer` (top-1 recall from the 10 stored profiles). Held-out
prose profiles (seed 11, as `bench_memory.py`), 3 named questions each; a hit is the answer contained in the text.

    OMP_NUM_THREADS=1 python benchmarks/answer_paths_probe.py > benchmarks/results/answer_paths_probe.jsonl
"""

from __future__ import annotations

import json
import tempfile

import torch
from bench_memory import contains as hit  # the benchmark's own hit test (this script runs from benchmarks/)

from d2l_memory.data.personal import build_personal
from d2l_memory.engine import D2L
from d2l_memory.memory import Memory, MemoryConfig, SentenceTransformerEmbedder


def main(checkpoint: str = "smollm2-135m", n: int = 10, per_profile: int = 3) -> None:
    torch.set_num_threads(1)
    d = D2L.from_pretrained(checkpoint)
    samples = build_personal(n, seed=11, split="test", style="profile", question_person="named")
    adapters = d.internalize([s.context for s in samples])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(d, f"sqlite:///{tmp}/probe.db", SentenceTransformerEmbedder(),
                     MemoryConfig(top_k=1, min_similarity=-1.0))
        mem.ingest_many("u", [s.context for s in samples])
        for s, ad in zip(samples, adapters, strict=True):
            for qa in s.qas[:per_profile]:
                free = d.complete(qa.question, ad, max_new_tokens=24)[0].text
                forced = d.complete(qa.question, ad, max_new_tokens=64, min_new_tokens=64)[0].text
                via_memory = mem.answer("u", qa.question, max_new_tokens=24).text
                rows.append(dict(q=qa.question, gold=qa.answer, free=free[:60], forced=forced[:60],
                                 mem=via_memory[:60], hit_free=hit(free, qa.answer), hit_forced=hit(forced, qa.answer),
                                 hit_mem=hit(via_memory, qa.answer)))
                print(json.dumps(rows[-1]), flush=True)
        mem.close()
    print(json.dumps({k: sum(r[k] for r in rows) for k in ("hit_free", "hit_forced", "hit_mem")} | {"n": len(rows)}))


if __name__ == "__main__":
    main()
