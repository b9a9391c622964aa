"""Can recall find a fact anywhere in a long document? Retrieval only: no LLM, no hypernetwork.

A long document is ingested as memories of ``memory_tokens`` SmolLM2 tokens (``Memory``'s own splitter);
each memory gets one embedding. MiniLM reads 256 word pieces at most, fewer than a default 384-token
memory, so with sentence-transformers' truncation the end of each memory is invisible to recall. This
script measures it on real documents: the Python FAQ, Debian FAQ and FOLDOC entries, joined into
one long document per source (one user's memories), queried with each entry's real question. A query hits
when the memory holding its entry (the one holding the start of the entry's answer) ranks in the top k.
Hits are split by where the entry starts in its memory: inside the embedder's window ("head") or past it
("tail").

    python benchmarks/recall_long_docs.py --entries 200 --out benchmarks/results/recall_long_docs.json

Variants, side by side on the same documents and queries: ``truncate`` (sentence-transformers' default,
the behaviour before this benchmark), ``windows`` (``SentenceTransformerEmbedder(long_text="windows")``,
the default now: token-weighted mean of window embeddings) and smaller memories that fit the window.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import time

import numpy as np

from d2l_memory.data.realdocs import load_docs
from d2l_memory.memory import SentenceTransformerEmbedder
from d2l_memory.memory.sources import load_source, split_source
from d2l_memory.models import load_tokenizer
from d2l_memory.tokens import count_tokens

SOURCES = ("python_faq", "debian_faq", "foldoc")


def _squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def build_user(source: str, n_entries: int, memory_tokens: int, tokenizer) -> tuple[list[str], list[dict]]:
    """One long document from ``n_entries`` entries, split into memories; the queries and their gold memory.

    Entries of both splits are used (nothing here was trained on them), test split first.
    """
    docs = sorted((d for d in load_docs(source) if d.question), key=lambda d: d.split != "test")[:n_entries]
    text = "\n\n".join(d.context for d in docs)
    pieces = split_source(load_source(text, 50_000_000), memory_tokens, tokenizer)
    flat = [_squash(p) for p in pieces]
    queries = []
    for d in docs:
        body = _squash(d.context.split("\n\n", 1)[-1])[:80]  # the start of the entry's body
        gold = next((i for i, p in enumerate(flat) if body in p), None)
        if gold is not None:
            queries.append({"question": d.question, "gold": gold, "anchor": body})
    return pieces, queries


def offset_tokens(piece: str, anchor: str, tokenizer) -> int:
    """Embedder tokens before ``anchor`` in ``piece``."""
    flat = _squash(piece)
    return len(tokenizer(flat[:flat.index(anchor)], add_special_tokens=False, verbose=False)["input_ids"])


def score(emb: SentenceTransformerEmbedder, pieces: list[str], queries: list[dict], window: int,
          ks: tuple[int, ...]) -> dict:
    t0 = time.perf_counter()
    P = emb.embed(pieces)  # [n_memories, dim]
    seconds = time.perf_counter() - t0
    Q = emb.embed([q["question"] for q in queries])  # [n_queries, dim]
    sims = Q @ P.T
    ranks = [int((sims[i] > sims[i, q["gold"]]).sum()) for i, q in enumerate(queries)]
    out = {"memories": len(pieces), "queries": len(queries), "embed_s": round(seconds, 2)}
    for k in ks:
        out[f"hit@{k}"] = float(np.mean([r < k for r in ranks]))
    for part in ("head", "tail"):
        idx = [i for i, q in enumerate(queries) if (q["offset"] >= window) == (part == "tail")]
        out[f"{part}_n"] = len(idx)
        for k in ks:
            out[f"{part}_hit@{k}"] = float(np.mean([ranks[i] < k for i in idx])) if idx else None
    return out


def niah_rows(embedders: dict, tokenizer, lengths: list[int], n: int, memory_tokens: int, ks: tuple[int, ...]
              ) -> list[dict]:
    """The NIAH haystacks of the length sweep ingested as memories: does the needle's memory rank in the top k?"""
    from d2l_memory.data.niah import build_niah, needle

    count = functools.partial(count_tokens, tokenizer)
    rows = []
    for L in lengths:
        samples = build_niah(n, token_range=(int(L * 0.9), int(L * 1.1)), seed=0, split="test", count_tokens=count)
        for mode, emb in embedders.items():
            ranks, n_mem = [], []
            for smp in samples:
                pieces = split_source(load_source(smp.context, 50_000_000), memory_tokens, tokenizer)
                gold = next(i for i, p in enumerate(pieces) if needle(smp.qas[0].answer) in p)
                sims = (emb.embed([smp.qas[0].question]) @ emb.embed(pieces).T)[0]
                ranks.append(int((sims > sims[gold]).sum()))
                n_mem.append(len(pieces))
            r = {"niah_tokens": L, "memory_tokens": memory_tokens, "embedding": mode, "needles": len(samples),
                 "memories": float(np.mean(n_mem)), **{f"hit@{k}": float(np.mean([x < k for x in ranks])) for k in ks}}
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=200, help="held-out entries per source (one user each)")
    p.add_argument("--memory-tokens", default="384,192", help="memory sizes to compare (SmolLM2 tokens)")
    p.add_argument("--ks", default="1,4")
    p.add_argument("--niah", default="1024,4096,9000,32768", help="NIAH haystack lengths ('' to skip)")
    p.add_argument("--niah-n", type=int, default=10)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    ks = tuple(int(k) for k in a.ks.split(","))
    tok = load_tokenizer()
    embedders = {m: SentenceTransformerEmbedder(long_text=m) for m in ("truncate", "windows")}
    etok = embedders["truncate"].model.tokenizer
    window = embedders["windows"]._window_tokens()
    rows = []
    for source in SOURCES:
        for mt in (int(x) for x in a.memory_tokens.split(",")):
            pieces, queries = build_user(source, a.entries, mt, tok)
            for q in queries:
                q["offset"] = offset_tokens(pieces[q["gold"]], q["anchor"], etok)
            for mode, emb in embedders.items():
                r = {"source": source, "memory_tokens": mt, "embedding": mode,
                     **score(emb, pieces, queries, window, ks)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    print("\n| source | memory tokens | embedding | memories | queries | hit@1 | hit@4 | tail queries | tail hit@4 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tail = "n/a" if r["tail_hit@4"] is None else f"{r['tail_hit@4']:.2f}"
        print(f"| {r['source']} | {r['memory_tokens']} | {r['embedding']} | {r['memories']} | {r['queries']} | "
              f"{r['hit@1']:.2f} | {r['hit@4']:.2f} | {r['tail_n']} | {tail} |")
    lengths = [int(x) for x in a.niah.split(",") if x.strip()]
    niah = niah_rows(embedders, tok, lengths, a.niah_n, 384, ks) if lengths else []
    if niah:
        print("\n| NIAH tokens | embedding | memories | needles | hit@1 | hit@4 |\n|---:|---|---:|---:|---:|---:|")
        for r in niah:
            print(f"| {r['niah_tokens']} | {r['embedding']} | {r['memories']:.0f} | {r['needles']} | {r['hit@1']:.2f} | "
                  f"{r['hit@4']:.2f} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "embedder_window_tokens": window, "rows": rows, "niah": niah}, f, indent=1)


if __name__ == "__main__":
    main()
