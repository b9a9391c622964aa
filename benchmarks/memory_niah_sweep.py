"""NIAH through the memory layer: a haystack far past the window, ingested as memories, then asked.

The engine's length sweep (``python -m d2l_memory.evaluation --niah-sweep``) internalizes the whole
haystack in 1k-token chunks and joins every chunk's adapter by rank concatenation. ``Memory`` instead
splits a document into memories of ``memory_tokens`` tokens, and for each question recalls the top-k by
embedding similarity and merges only those. This measures, per haystack length: whether recall ranks the
needle's memory first, and the exact match of ``Memory.answer`` at top-k 1 and 4 (the default); for
lengths that fit, also the engine path (all chunks, 1k tokens each) on the same haystacks.

    python benchmarks/memory_niah_sweep.py --lengths 1024,4096,9000,32768 --n 10,10,10,5 \
        --out benchmarks/results/memory_niah_sweep.json
    python benchmarks/memory_niah_sweep.py --rescore benchmarks/results/memory_niah_sweep.json

Exact match needs all four digits in order. Besides it, the table gives the share of the needle's digits
found in a four-digit answer (as a multiset; 0 for any other answer), against the same share for the
*other* needles of the same length (what an answer unrelated to its haystack scores).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from d2l_memory.data.niah import build_niah, needle
from d2l_memory.engine import D2L
from d2l_memory.evaluation import exact_match
from d2l_memory.memory import Memory, MemoryConfig, SentenceTransformerEmbedder


def digit_share(pred: str | None, gold: str) -> float:
    """Share of ``gold``'s digits (as a multiset) in ``pred`` when ``pred`` is a four-digit number, else 0."""
    if pred is None or not re.fullmatch(r"\s*\d{4}\s*\.?\s*", pred):
        return 0.0
    return sum((Counter(re.findall(r"\d", pred)) & Counter(gold)).values()) / len(gold)


def digit_scores(examples: list[dict], key: str) -> tuple[float, float]:
    """(own needle, other needles) mean digit share of the answers under ``key``."""
    own = [digit_share(e[key], e["gold"]) for e in examples]
    other = [digit_share(a[key], b["gold"]) for a in examples for b in examples if a is not b]
    return sum(own) / len(own), (sum(other) / len(other) if other else float("nan"))


def print_table(rows: list[dict], ks: list[int]) -> None:
    print("\n| NIAH tokens | n | memories | needle memory ranked first | "
          + " | ".join(f"Memory.answer EM, top-{k}" for k in ks)
          + " | digits, own / other needles (top-1) | engine EM (all chunks) | engine digits, own / other | ingest s |")
    print("|---:|---:|---:|---:|" + "---:|" * len(ks) + "---:|---:|---:|---:|")
    for r in rows:
        ex = r["examples"]
        own, other = digit_scores(ex, str(ks[0]))
        eng = f"{r['engine_em']:.2f}" if "engine_em" in r else "n/a"
        eng_d = "{:.2f} / {:.2f}".format(*digit_scores(ex, "engine")) if "engine_em" in r else "n/a"
        print(f"| {r['tokens']} | {r['n']} | {r['memories']:.0f} | {r['needle_top1']:.2f} | "
              + " | ".join(f"{r[f'memory_em@{k}']:.2f}" for k in ks)
              + f" | {own:.2f} / {other:.2f} | {eng} | {eng_d} | {r['ingest_s']:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--lengths", default="1024,4096,9000,32768")
    p.add_argument("--n", default="10,10,10,5", help="needles per length (one number, or one per length)")
    p.add_argument("--ks", default="1,4")
    p.add_argument("--engine-max", type=int, default=4096, help="also run the engine path up to this length")
    p.add_argument("--memory-tokens", type=int, default=MemoryConfig.memory_tokens,
                   help="MemoryConfig.memory_tokens: the size of the memories a haystack is split into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--rescore", default=None, help="only print the table of a saved --out file")
    a = p.parse_args()
    if a.rescore:
        saved = json.loads(Path(a.rescore).read_text())
        print_table(saved["rows"], [int(k) for k in saved["args"]["ks"].split(",")])
        return
    lengths = [int(x) for x in a.lengths.split(",")]
    ns = [int(x) for x in a.n.split(",")]
    ns = ns * len(lengths) if len(ns) == 1 else ns
    if len(ns) != len(lengths):
        p.error(f"--n gives {len(ns)} counts for {len(lengths)} lengths")
    ks = [int(k) for k in a.ks.split(",")]
    engine = D2L.from_pretrained(a.checkpoint)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(engine, f"sqlite:///{Path(tmp) / 'niah.db'}", SentenceTransformerEmbedder(),
                     MemoryConfig(memory_tokens=a.memory_tokens))
        for L, n in zip(lengths, ns, strict=True):
            samples = build_niah(n, token_range=(int(L * 0.9), int(L * 1.1)), seed=a.seed, split="test",
                                 count_tokens=engine.count_tokens)
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
    print_table(rows, ks)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
