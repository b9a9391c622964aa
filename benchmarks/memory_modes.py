r"""Adapters vs plain RAG vs both, through the memory layer, on the same held-out memories and questions.

Every document is ingested once for its own user (``Memory.ingest``: split into memories, internalized,
embedded). Each question is then answered four ways, side by side in one run:

    adapters  ``Memory.answer``, the default: recalled memories as a merged adapter, no memory text in the prompt
    rag       ``context_tokens=B, use_adapters=False``: the recalled memories' text in the prompt, no adapter
    hybrid    ``context_tokens=B``: both
    none      the base model with neither (the lower bound)

The same recall (embedding, top-k, threshold) feeds all three memory modes, so the difference is only how
the recalled memories reach the model. Reported per kind: exact match, "contains" (the answer appears as
words in the reply), word F1, prompt tokens and generation time per question.

    python benchmarks/memory_modes.py --kinds personal,realdoc,niah --n 16 --seed 0 \
        --out benchmarks/results/memory_modes_seed0.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from d2l_memory.engine import D2L
from d2l_memory.evaluation import Scores, heldout
from d2l_memory.memory import Memory, MemoryConfig, SentenceTransformerEmbedder

MODES = ("adapters", "rag", "hybrid", "none")


def mode_kwargs(mode: str, budget: int) -> dict:
    return {"adapters": {}, "rag": {"context_tokens": budget, "use_adapters": False},
            "hybrid": {"context_tokens": budget}}[mode]


def samples_for(kind: str, n: int, seed: int, engine: D2L, niah_tokens: int):
    if kind == "niah" and niah_tokens:
        from d2l_memory.data.niah import build_niah

        return build_niah(n, token_range=(int(niah_tokens * 0.9), int(niah_tokens * 1.1)), seed=seed + 1000,
                          split="test", count_tokens=engine.count_tokens)
    return heldout(kind, n, seed, "test", engine)


def run_kind(mem: Memory, engine: D2L, kind: str, samples, budget: int, max_new_tokens: int,
             modes: tuple[str, ...] = MODES) -> dict:
    scores = {m: Scores() for m in modes}  # exact match, contains, word F1
    acc = {m: {"prompt_tokens": 0, "generate_ms": 0.0, "in_prompt": 0} for m in modes}
    n_q, memories, examples = 0, 0, []
    for i, s in enumerate(samples):
        user = f"{kind}-{i}"
        memories += len(mem.ingest(user, s.context, kind="document"))
        for qa in s.qas:
            n_q += 1
            preds = {}
            for mode in modes:
                t0 = time.perf_counter()
                if mode == "none":
                    comp = engine.complete([{"role": "user", "content": qa.question}], None,
                                           max_new_tokens=max_new_tokens)[0]
                    text, ptoks, used = comp.text, comp.prompt_tokens, 0
                else:
                    ans = mem.answer(user, qa.question, max_new_tokens=max_new_tokens, **mode_kwargs(mode, budget))
                    text, ptoks, used = ans.text, ans.prompt_tokens, len(ans.in_prompt)
                a = acc[mode]
                a["generate_ms"] += (time.perf_counter() - t0) * 1000.0
                scores[mode].add(text, qa.answer, qa.question)
                a["prompt_tokens"] += ptoks
                a["in_prompt"] += used
                preds[mode] = text
            if len(examples) < 8:
                examples.append({"q": qa.question, "gold": qa.answer, **preds})
    out = {"n_docs": len(samples), "n_questions": n_q, "memories_per_doc": memories / max(1, len(samples)),
           "examples": examples}
    for mode, a in acc.items():
        s = scores[mode]
        out[mode] = {k: round(v / max(1, n_q), 4) for k, v in {"em": s.em, "contains": s.contains, "f1": s.f1, **a}.items()}
    return out


def print_table(results: dict, budget: int, modes: tuple[str, ...] = MODES) -> None:
    print("\n| kind (docs / questions) | mode | EM | contains | word F1 | prompt tokens | ms / answer |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        for mode in modes:
            m = r[mode]
            label = f"{mode} ({budget} tok)" if mode in ("rag", "hybrid") else mode
            print(f"| {kind} ({r['n_docs']} / {r['n_questions']}) | {label} | {m['em']:.3f} | {m['contains']:.3f} | "
                  f"{m['f1']:.3f} | {m['prompt_tokens']:.0f} | {m['generate_ms']:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--kinds", default="personal,realdoc,niah")
    p.add_argument("--n", type=int, default=16, help="held-out documents per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=1024, help="context_tokens of the rag and hybrid modes")
    p.add_argument("--niah-tokens", type=int, default=0,
                   help="NIAH haystack length (0: the evaluation's short held-out needles, 32-256 tokens)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--modes", default=",".join(MODES), help="a subset of " + ",".join(MODES))
    p.add_argument("--hybrid-adapter-scale", type=float, default=None, help="MemoryConfig.hybrid_adapter_scale")
    p.add_argument("--memory-tokens", type=int, default=None, help="MemoryConfig.memory_tokens")
    p.add_argument("--out", default=None)
    p.add_argument("--rescore", default=None, help="only print the table of a saved --out file")
    a = p.parse_args()
    if a.rescore:
        saved = json.loads(Path(a.rescore).read_text())
        print_table(saved["results"], saved["args"]["budget"], tuple(saved["args"].get("modes", ",".join(MODES)).split(",")))
        return
    modes = tuple(a.modes.split(","))
    if not set(modes) <= set(MODES):
        p.error(f"--modes: choose from {','.join(MODES)}")
    engine = D2L.from_pretrained(a.checkpoint)
    overrides = {"hybrid_adapter_scale": a.hybrid_adapter_scale, "memory_tokens": a.memory_tokens}
    cfg = MemoryConfig(**{k: v for k, v in overrides.items() if v is not None})
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(engine, f"sqlite:///{Path(tmp) / 'modes.db'}", SentenceTransformerEmbedder(), cfg)
        for kind in a.kinds.split(","):
            samples = samples_for(kind, a.n, a.seed, engine, a.niah_tokens)
            results[kind] = run_kind(mem, engine, kind, samples, a.budget, a.max_new_tokens, modes)
            print(json.dumps({kind: {m: results[kind][m] for m in modes}}), flush=True)
            if a.out:  # after every kind, so an interrupted run keeps what it measured
                Path(a.out).write_text(json.dumps({"args": vars(a), "results": results}, indent=1))
        mem.close()
    print_table(results, a.budget, modes)


if __name__ == "__main__":
    main()
