"""Where the recall threshold sits: similarity of held-out questions to their own document vs small talk.

For each held-out document (seed 0 test split, as in ``memory_modes.py``), the cosine similarity (the
memory layer's default embedder) of each of its questions to it, and of 16 chit-chat messages to it.
``MemoryConfig.min_similarity`` recalls a memory at or over the threshold, so the own-question share over it
is recall, and the chit-chat share over it is how often small talk gets a memory it did not ask for.

    python benchmarks/recall_threshold.py --n 16 --seed 0
"""

from __future__ import annotations

import argparse

import numpy as np

from d2l_memory.data.personal import build_personal
from d2l_memory.data.realdocs import build_realdocs
from d2l_memory.memory import SentenceTransformerEmbedder

CHIT_CHAT = ["Hello", "Hi there!", "How are you today?", "Tell me a joke.", "What is 2+2?", "Thanks!",
             "What's the capital of France?", "Write a haiku about autumn.", "Can you help me with my homework?",
             "Good morning", "Translate 'cat' into Spanish.", "Explain photosynthesis.", "What time is it?",
             "Who wrote Hamlet?", "Recommend a good movie.", "ok"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thresholds", default="0.1,0.15,0.2,0.25")
    a = p.parse_args()
    emb = SentenceTransformerEmbedder()
    chat = unit(emb.embed(CHIT_CHAT))
    ths = [float(t) for t in a.thresholds.split(",")]
    print("| kind | questions | own median | chit-chat median | " +
          " | ".join(f"own >= {t} / chit-chat >= {t}" for t in ths) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(ths))
    for kind, build in (("personal", build_personal), ("realdoc", build_realdocs)):
        samples = build(a.n, seed=a.seed + 1000, split="test")
        docs = unit(emb.embed([s.context for s in samples]))
        own = np.concatenate([unit(emb.embed([qa.question for qa in s.qas])) @ docs[i] for i, s in enumerate(samples)])
        junk = (chat @ docs.T).ravel()
        shares = " | ".join(f"{(own >= t).mean():.3f} / {(junk >= t).mean():.3f}" for t in ths)
        print(f"| {kind} | {len(own)} | {np.median(own):.3f} | {np.median(junk):.3f} | {shares} |")


if __name__ == "__main__":
    main()
