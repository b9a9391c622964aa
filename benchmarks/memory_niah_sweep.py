"""NIAH through the memory layer: a haystack far past the window, ingested as memories, then asked.

The engine's length sweep (``python -m d2l_memory.evaluation --niah-sweep``) internalizes the whole
haystack in 1k-token chunks and joins every chunk's adapter by rank concatenation. ``Memory`` instead
splits a document into memories of ``memory_tokens`` tokens, and for each question recalls the top-k by
embedding similarity and merges only those. This measures, per haystack length: whether recall ranks the
needle's memory first, and the exact match of ``Memory.answer`` at top-k 1 and 4 (the default); for
lengths that fit, also the engine path (all chunks, 1k tokens each) on the same haystacks.

    python benchmarks/memory_niah_sweep.py --lengths 1024,4096,9000,32768 --n 10,10,10,5 \
        --out benchmarks/results/memory_niah_sweep.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from d2l_memory.data.niah import build_niah, needle
from d2l_memory.engine import D2L
from d2l_memory.evaluation import exact_match
from d2l_memory.memory import Memory, MemoryConfig, SentenceTransformerEmbedder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--lengths", default="1024,4096,9000,32768")
    p.add_argument("--n", default="10,10,10,5", help="needles per length (one number, or one per length)")
    p.add_argument("--ks", default="1,4")
    p.add_argument("--engine-max", type=int, default=4096, help="also run the engine path up to this length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    ns = [int(x) for x in a.n.split(",")]
    ns = ns * len(lengths) if len(ns) == 1 else ns
    if len(ns) != len(lengths):
        p.error(f"--n gives {len(ns)} counts for {len(lengths)} lengths")
    ks = [int(k) for k in a.ks.split(",")]
    engine = D2L.from_pretrained(a.checkpoint)
    count = lambda s: len(engine.tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(engine, f"sqlite:///{Path(tmp) / 'niah.db'}", SentenceTransformerEmbedder(), MemoryConfig())
        for L, n in zip(lengths, ns, strict=True):
            samples = build_niah(n, token_range=(int(L * 0.9), int(L * 1.1)), seed=a.seed, split="test",
                                 count_tokens=count)
            row = {"tokens": L, "n": len(samples), "ingest_s": 0.0, "memories": 0, "needle_top1": 0,
                   **{f"memory_em@{k}": 0.0 for k in ks}, "examples": []}
            if L <= a.engine_max:
                row["engine_em"] = 0.0
            for i, s in enumerate(samples):
                qa = s.qas[0]
                user = f"niah-{L}-{i}"
                t0 = time.perf_counter()
                ids = mem.ingest(user, s.context, kind="document")
                row["ingest_s"] += time.perf_counter() - t0
                row["memories"] += len(ids)
                rec = mem.recall(user, qa.question, k=1)
                row["needle_top1"] += bool(rec.memories) and needle(qa.answer) in (rec.memories[0].text or "")
                preds = {}
                for k in ks:
                    preds[k] = mem.answer(user, qa.question, k=k, max_new_tokens=16).text
                    row[f"memory_em@{k}"] += exact_match(preds[k], qa.answer)
                if "engine_em" in row:
                    ad = engine.internalize([s.context], chunk_tokens=1024)[0]
                    preds["engine"] = engine.generate([qa.question], adapters=[ad], max_new_tokens=16)[0]
                    row["engine_em"] += exact_match(preds["engine"], qa.answer)
                row["examples"].append({"gold": qa.answer, **{str(k): v for k, v in preds.items()}})
            for key in ("ingest_s", "memories", "needle_top1", *(f"memory_em@{k}" for k in ks), "engine_em"):
                if key in row:
                    row[key] = round(row[key] / max(1, len(samples)), 3)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
        mem.close()
    print("\n| NIAH tokens | n | memories | needle memory ranked first | "
          + " | ".join(f"Memory.answer EM, top-{k}" for k in ks) + " | engine EM (all chunks) | ingest s |")
    print("|---:|---:|---:|---:|" + "---:|" * len(ks) + "---:|---:|")
    for r in rows:
        eng = f"{r['engine_em']:.2f}" if "engine_em" in r else "n/a"
        print(f"| {r['tokens']} | {r['n']} | {r['memories']:.0f} | {r['needle_top1']:.2f} | "
              + " | ".join(f"{r[f'memory_em@{k}']:.2f}" for k in ks) + f" | {eng} | {r['ingest_s']:.1f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
