"""Engine benchmark on SmolLM2-135M: internalize latency, and answering with the adapter vs the document in
the prompt vs neither, side by side in one run.

    python benchmarks/bench_engine.py --checkpoint smollm2-135m --lengths 256,1024,4096,16384

For each document length: internalize latency (1k-token chunks); time to first token (TTFT) and decode
tokens/s for a question answered (a) with the adapter and no document, (b) with the document in the prompt
(only where it fits SmolLM2's 8k window), (c) with neither; peak memory of (a) and (b) during generation
above the loaded model (CUDA: max_memory_allocated; CPU: peak RSS of a forked child). Prints a markdown table
with the ratios a/c and b/c.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import threading
import time

import torch

from d2l_memory.engine import D2L
from d2l_memory.prompts import context_prompt

QUESTION = "What is the special magic number? Reply with only the number."


def haystack(d2l: D2L, tokens: int) -> str:
    from d2l_memory.data.niah import build_niah

    return build_niah(1, token_range=(int(tokens * 0.95), int(tokens * 1.05)), seed=7, split="test",
                      count_tokens=d2l.count_tokens)[0].context


def timed(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def gen_stats(d2l: D2L, prompt: str, adapter, new_tokens: int, repeat: int) -> tuple[float, float]:
    """(TTFT seconds, decode tokens/s) with greedy decoding forced to `new_tokens` tokens."""
    run = lambda n: d2l.complete(prompt, adapter, max_new_tokens=n, min_new_tokens=n)  # noqa: E731
    ttft = timed(lambda: run(1), repeat)
    total = timed(lambda: run(new_tokens), repeat)
    return ttft, (new_tokens - 1) / max(total - ttft, 1e-9)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory_mb(d2l: D2L, prompt: str, adapter, new_tokens: int) -> float:
    """Extra memory while generating, beyond what is already allocated (MB).

    CUDA: max_memory_allocated. CPU: peak resident set sampled every 2 ms by a thread during generation.
    """
    run = lambda: d2l.complete(prompt, adapter, max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # noqa: E731
    if d2l.device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    gc.collect()
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    run()
    done.set()
    th.join()
    return max(0.0, max(peak[0], _rss_mb()) - base)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--lengths", default="256,1024,4096,16384")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--chunk-tokens", type=int, default=1024)
    a = p.parse_args()
    d2l = D2L.from_pretrained(a.checkpoint)
    window = d2l.model.config.max_position_embeddings
    d2l.generate("warm up", max_new_tokens=2)
    rows = []
    for L in [int(x) for x in a.lengths.split(",")]:
        doc = haystack(d2l, L)
        n_tok = len(d2l.encoder.tokenize(doc))
        d2l.internalize(doc[:2000], chunk_tokens=a.chunk_tokens)  # warm-up
        t_int = timed(lambda doc=doc: d2l.internalize(doc, chunk_tokens=a.chunk_tokens), max(1, a.repeat - 1))
        ad = d2l.internalize(doc, chunk_tokens=a.chunk_tokens)
        ta, ra = gen_stats(d2l, QUESTION, ad, a.new_tokens, a.repeat)
        tc, rc = gen_stats(d2l, QUESTION, None, a.new_tokens, a.repeat)
        ma = peak_memory_mb(d2l, QUESTION, ad, a.new_tokens)
        ctx = context_prompt(doc, QUESTION)
        fits = len(d2l.prompt_ids(ctx)) + a.new_tokens <= window
        if fits:
            tb, rb = gen_stats(d2l, ctx, None, a.new_tokens, a.repeat)
            mb = peak_memory_mb(d2l, ctx, None, a.new_tokens)
        rows.append(dict(tokens=n_tok, chunks=ad.meta["n_chunks"], rank=ad.rank, internalize_s=t_int,
                         ttft_a=ta, ttft_b=tb if fits else None, ttft_c=tc, tps_a=ra, tps_b=rb if fits else None,
                         tps_c=rc, mem_a=ma, mem_b=mb if fits else None, adapter_mb=ad.nbytes / 2**20))
        print(rows[-1], flush=True)
    f = lambda x, spec=".3f": "beyond window" if x is None else format(x, spec)  # noqa: E731
    print(f"\nDevice: {d2l.device}, autocast bf16: {d2l.use_autocast}, threads: {torch.get_num_threads()}, "
          f"new tokens: {a.new_tokens}, median of {a.repeat}\n")
    print("| doc tokens | chunks | adapter rank | adapter MB | internalize s | TTFT a (adapter) | TTFT b (in prompt) "
          "| TTFT c (none) | TTFT a/c | TTFT b/c | tok/s a | tok/s b | tok/s c | c/a decode | peak MB a | peak MB b |")
    print("|" + "---|" * 16)
    for r in rows:
        print(f"| {r['tokens']} | {r['chunks']} | {r['rank']} | {r['adapter_mb']:.1f} | {r['internalize_s']:.2f} | "
              f"{r['ttft_a']:.3f} | {f(r['ttft_b'])} | {r['ttft_c']:.3f} | {r['ttft_a'] / r['ttft_c']:.2f} | "
              f"{f(r['ttft_b'] and r['ttft_b'] / r['ttft_c'], '.2f')} | {r['tps_a']:.1f} | {f(r['tps_b'], '.1f')} | "
              f"{r['tps_c']:.1f} | {r['tps_c'] / r['tps_a']:.2f} | {r['mem_a']:.0f} | {f(r['mem_b'], '.0f')} |")


if __name__ == "__main__":
    main()
