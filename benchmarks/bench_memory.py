"""Memory-layer benchmark: ingest throughput, recall and answer latency vs all documents in the prompt.

    nice -n 15 python benchmarks/bench_memory.py --sizes 1,10,100 --queries 3 --new-tokens 64

For N = 1, 10, 100 memories per user (synthetic personal profiles, one memory each): ingest throughput
(tokens/s through Memory.ingest_many: batched hypernetwork passes + embedding + store), recall latency
(embed the query, search, merge the adapters; median), and answer latency (recall + generation forced to
exactly --new-tokens tokens; median) against the in-context baseline, where all N documents are put into the
prompt (only while they fit SmolLM2's 8k window). Also reports prompt tokens and whether the answer contains
the reference (meaningful only with a trained checkpoint). Engine: the shipped checkpoint if present, else
runs/smollm2/final, else an untrained hypernetwork (latency does not depend on training).
Prints a markdown table and, unless --no-write, replaces its generated block (between the markers) in the
"## Memory layer" section of benchmarks/RESULTS.md; the hand-written reading around it stays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTION = "## Memory layer"
CONTEXT_LIMIT = 8192  # SmolLM2-135M's context window


def pick_engine(checkpoint: str | None, device: str | None):
    """(engine, description): --checkpoint, else the shipped checkpoint, else runs/smollm2/final, else untrained."""
    from d2l_memory.checkpoint import SHIPPED_DIR
    from d2l_memory.engine import D2L

    if checkpoint:
        return D2L.from_pretrained(checkpoint, device=device), checkpoint
    for c in (SHIPPED_DIR / "smollm2-135m", HERE.parent / "runs" / "smollm2" / "final"):
        if (c / "d2l_config.json").is_file():
            return D2L.from_pretrained(c, device=device), str(c.relative_to(HERE.parent) if c.is_relative_to(
                HERE.parent) else c)
    return D2L.from_base_model("smollm2-135m", device=device, seed=0), "untrained (seed 0)"


def questions(sample, k: int):
    """Up to k (question, answer) pairs; they name the person, so that they are unambiguous among many profiles."""
    return [(qa.question, qa.answer) for qa in sample.qas[:k]]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def contains(answer: str, gold: str) -> bool:
    norm = lambda s: re.sub(r"[^a-z0-9 ]", "", s.lower())  # noqa: E731
    return norm(gold) in norm(answer)


def run(args) -> dict:
    import torch

    from d2l_memory.data.personal import build_personal
    from d2l_memory.memory import Memory, MemoryConfig, SentenceTransformerEmbedder
    from d2l_memory.prompts import context_prompt

    torch.manual_seed(0)
    t0 = time.perf_counter()
    engine, ckpt = pick_engine(args.checkpoint, args.device)
    print(f"engine: {ckpt} on {engine.device} (loaded in {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    samples = build_personal(max(args.sizes), seed=11, split="test", style="profile", question_person="named")
    rows = []
    gen = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    engine.complete("Warm up.", None, max_new_tokens=2)
    for n in args.sizes:
        docs = samples[:n]
        qas = [q for d in docs[:args.queries] for q in questions(d, 1)]
        qas += questions(docs[0], args.queries)[1:args.queries - len(qas) + 1]
        with tempfile.TemporaryDirectory() as tmp:
            mem = Memory(engine, f"sqlite:///{tmp}/bench.db", embedder, MemoryConfig(
                adapter_dtype="bfloat16", top_k=args.top_k, min_similarity=0.2, memory_tokens=512))
            user = f"user-{n}"
            reports = mem.ingest_many(user, [d.context for d in docs])
            ingest_s = sum(r.seconds for r in reports)
            tokens = sum(r.n_tokens for r in reports)
            assert sum(len(r.ids) for r in reports) == n, "one memory per profile expected"
            recall_ms, mem_s, mem_prompt, mem_hits, n_sel = [], [], [], [], []
            for question, gold in qas:
                t = time.perf_counter()
                rec = mem.recall(user, question)
                recall_ms.append((time.perf_counter() - t) * 1000)
                n_sel.append(len(rec.memories))
                t = time.perf_counter()
                ans = mem.answer(user, question, **gen)
                mem_s.append(time.perf_counter() - t)
                mem_prompt.append(ans.prompt_tokens)
                mem_hits.append(contains(ans.text, gold))
            all_docs = "\n\n".join(d.context for d in docs)
            ctx_tokens = engine.count_tokens(context_prompt(all_docs, qas[0][0]))
            ctx_s, ctx_hits = [], []
            if ctx_tokens + args.new_tokens <= CONTEXT_LIMIT:
                for question, gold in qas:
                    t = time.perf_counter()
                    comp = engine.complete(context_prompt(all_docs, question), None, **gen)[0]
                    ctx_s.append(time.perf_counter() - t)
                    ctx_hits.append(contains(comp.text, gold))
            mem.close()
        row = dict(memories=n, doc_tokens=tokens, ingest_s=ingest_s, ingest_tok_s=tokens / ingest_s,
                   recall_ms_p50=median(recall_ms), selected_mean=statistics.mean(n_sel),
                   memory_answer_s_p50=median(mem_s), memory_prompt_tokens=round(statistics.mean(mem_prompt)),
                   memory_hit=statistics.mean(mem_hits), context_prompt_tokens=ctx_tokens,
                   context_answer_s_p50=median(ctx_s) if ctx_s else None,
                   context_hit=statistics.mean(ctx_hits) if ctx_hits else None)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {"checkpoint": ckpt, "device": str(engine.device), "threads": torch.get_num_threads(), "rows": rows}


def table(res: dict, new_tokens: int) -> str:
    head = ("| memories/user | doc tokens | ingest tok/s | recall p50 (ms) | answer p50, memory (s) | prompt tok, "
            "memory | answer p50, all docs in prompt (s) | prompt tok, all docs | hit memory / in-prompt |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in res["rows"]:
        ctx = f"{r['context_answer_s_p50']:.2f}" if r["context_answer_s_p50"] is not None else "n/a (> 8k window)"
        hit_c = f"{r['context_hit']:.0%}" if r["context_hit"] is not None else "n/a"
        lines.append(f"| {r['memories']} | {r['doc_tokens']:,} | {r['ingest_tok_s']:,.0f} | {r['recall_ms_p50']:.1f} | "
                     f"{r['memory_answer_s_p50']:.2f} | {r['memory_prompt_tokens']} | {ctx} | "
                     f"{r['context_prompt_tokens']:,} | {r['memory_hit']:.0%} / {hit_c} |")
    return "\n".join(lines) + f"\n\nAnswers are forced to exactly {new_tokens} new tokens (greedy) on both sides."


BEGIN, END = "<!-- bench_memory.py: generated, begin -->", "<!-- bench_memory.py: generated, end -->"


def write_section(path: Path, body: str) -> None:
    """Put `body` between the BEGIN/END markers under SECTION, leaving every hand-written line alone: the
    markers' old content is replaced; without markers the block goes right under the heading (or the heading
    and the block at the end of the file)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    block = f"{BEGIN}\n{body.strip()}\n{END}\n"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        start, end = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + block.rstrip("\n") + text[end:]
    elif m := re.search(rf"^{re.escape(SECTION)}[ \t]*\n", text, flags=re.M):
        text = text[:m.end()] + "\n" + block + "\n" + text[m.end():].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + SECTION + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,10,100", help="memories per user, comma-separated")
    p.add_argument("--queries", type=int, default=3, help="questions per size")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--top-k", type=int, default=4)
    p.add_argument("--checkpoint", default=None, help="checkpoint dir or name (default: shipped, runs/, untrained)")
    p.add_argument("--device", default=None)
    p.add_argument("--results", default=str(HERE / "RESULTS.md"))
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    res = run(args)
    load_after = os.getloadavg()[0]
    md = table(res, args.new_tokens)
    print(md)
    if not args.no_write:
        cmd = "python benchmarks/bench_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
        body = (f"Command: `{cmd.strip()}` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
                f"{res['device']}, {res['threads']} torch threads, {time.perf_counter() - t0:.0f} s in all).\n"
                f"Engine: SmolLM2-135M-Instruct + hypernetwork `{res['checkpoint']}`; embedder all-MiniLM-L6-v2; "
                "store SQLite; one synthetic personal profile per memory (`build_personal`, test split); "
                "memories stored in bfloat16; top-k 4, threshold 0.2, concat merge. "
                f"Load average {load_before:.1f} at the start, {load_after:.1f} at the end "
                f"({os.cpu_count()} CPUs).\n\n" + md)
        if max(load_before, load_after) > (os.cpu_count() or 1) + 1:  # this run alone keeps ~1 load per core
            body += ("\n\nThe machine was oversubscribed during this run (other jobs held the cores), so the "
                     "absolute times measure CPU share as much as code; compare the columns of one row, and "
                     "prefer the prompt-token columns, which do not depend on load.")
        write_section(Path(args.results), body)
        print(f"wrote the generated block of '{SECTION}' in {args.results}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
