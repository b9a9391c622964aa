"""Does the hypernetwork learn to *use the document*?  A short training run that reports, on held-out
samples, the answer loss with each sample's own adapter vs. with another sample's adapter ("swapped"),
and NIAH exact match. A gap of zero means the adapters are document-independent (only the answer format
was learned), whatever the training loss says.

    python benchmarks/probe_training.py --steps 150 --kinds facts,niah --lr 2.5e-4 --out runs/probe_a
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import replace
from pathlib import Path

import torch

from d2l_memory.data.niah import build_niah
from d2l_memory.data.personal import build_personal
from d2l_memory.data.types import read_jsonl
from d2l_memory.engine import D2L
from d2l_memory.evaluation import exact_match
from d2l_memory.training.recipe import single_fact_samples
from d2l_memory.training.teacher import compute_targets, load_targets
from d2l_memory.training.trainer import TrainConfig, Trainer


def heldout(d2l, n_facts: int, n_niah: int, seed: int = 0):
    facts = single_fact_samples(build_personal(max(8, n_facts // 2), seed=seed, split="test"), n_facts, seed)
    niah = build_niah(n_niah, token_range=(32, 256), seed=seed, split="test", count_tokens=d2l.count_tokens)
    return facts, niah


@torch.no_grad()
def doc_gap(trainer: Trainer, samples) -> tuple[float, float]:
    """Mean task loss with own vs. swapped (rotated by one) documents, one chunk each."""
    trainer.model.eval()
    own = swapped = 0.0
    bs = 8
    for i in range(0, len(samples), bs):
        b = samples[i:i + bs]
        if len(b) < 2:
            continue
        qs = [list(range(len(s.qas))) for s in b]
        _, info = trainer.loss_for([(s, q, 1) for s, q in zip(b, qs, strict=True)])
        rot = [replace(s, context=b[(j + 1) % len(b)].context) for j, s in enumerate(b)]
        _, info2 = trainer.loss_for([(s, q, 1) for s, q in zip(rot, qs, strict=True)])
        own += info["task"] * len(b)
        swapped += info2["task"] * len(b)
    trainer.model.train()
    n = sum(len(samples[i:i + bs]) for i in range(0, len(samples), bs) if len(samples[i:i + bs]) >= 2)
    return own / n, swapped / n


@torch.no_grad()
def niah_em(d2l, samples, max_new_tokens: int = 8) -> float:
    """Greedy exact match of each sample's first question, with the adapter of its own document
    (`internalize` runs the hypernetwork in eval mode and restores the caller's mode)."""
    ads = d2l.internalize([s.context for s in samples])
    preds = d2l.generate([s.qas[0].question for s in samples], ads, max_new_tokens=max_new_tokens)
    return sum(exact_match(p, s.qas[0].answer) for p, s in zip(preds, samples, strict=True)) / len(samples)


def report(trainer, d2l, facts, niah, losses, t0, log) -> None:
    f_own, f_sw = doc_gap(trainer, facts)
    n_own, n_sw = doc_gap(trainer, niah[:16])
    em = niah_em(d2l, niah[:16])
    rec = dict(step=trainer.step, train_task=sum(losses) / max(1, len(losses)),
               facts_own=f_own, facts_swapped=f_sw, niah_own=n_own, niah_swapped=n_sw, niah_em=em,
               s_per_step=(time.time() - t0) / max(1, trainer.step))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}), flush=True)
    log.write(json.dumps(rec) + "\n")
    log.flush()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--data", default="runs/smollm2/data")
    p.add_argument("--kinds", default="facts,niah")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--lr", type=float, default=2.5e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--docs-per-step", type=int, default=8)
    p.add_argument("--qas-per-doc", type=int, default=1)
    p.add_argument("--max-chunks", type=int, default=8)
    p.add_argument("--l1", type=float, default=0.1)
    p.add_argument("--contrast-weight", type=float, default=0.0)
    p.add_argument("--overrides", default="{}", help="HypernetConfig overrides as JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint", default=None, help="only evaluate this checkpoint (no training)")
    p.add_argument("--base-dtype", default="float32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    if a.checkpoint:
        d2l = D2L.from_pretrained(a.checkpoint, dtype=getattr(torch, a.base_dtype))
    else:
        d2l = D2L.from_base_model("smollm2-135m", seed=0, dtype=getattr(torch, a.base_dtype), **json.loads(a.overrides))
    data = Path(a.data)
    pool = read_jsonl(data / "train.jsonl")
    kinds = a.kinds.split(",")
    samples = []
    if "facts" in kinds:
        samples += single_fact_samples(pool, 3000, 0)
    if "niah" in kinds:
        samples += [s for s in pool if s.kind == "niah"]
    if "personal" in kinds:
        samples += [s for s in pool if s.kind == "personal"]
    targets = load_targets(data / "targets")
    missing = [s for s in samples if f"{s.id}#0" not in targets]
    targets.update(compute_targets(d2l, missing, use_teacher=False))
    facts, niah = heldout(d2l, 48, 24)
    targets.update(compute_targets(d2l, facts + niah, use_teacher=False))
    cfg = TrainConfig(out_dir=a.out, steps=a.steps, lr=a.lr, warmup=a.warmup, docs_per_step=a.docs_per_step,
                      qas_per_doc=a.qas_per_doc, max_chunks=a.max_chunks, l1_coef=a.l1, save_every=10**9,
                      contrast_weight=a.contrast_weight,
                      log_every=10**9)
    trainer = Trainer(d2l, samples, targets, cfg)
    if a.checkpoint:
        a.steps = 0
    else:
        d2l.calibrate([s.context for s in random.Random(0).sample(samples, min(64, len(samples)))])
    Path(a.out).mkdir(parents=True, exist_ok=True)
    log = open(Path(a.out) / "probe.jsonl", "a")
    t0, losses = time.time(), []
    if a.checkpoint:
        report(trainer, d2l, facts, niah, [], t0, log)
    while trainer.step < a.steps:
        info = trainer.train_step()
        losses.append(info["task"])
        if trainer.step % a.eval_every == 0 or trainer.step == a.steps:
            report(trainer, d2l, facts, niah, losses[-a.eval_every:], t0, log)


if __name__ == "__main__":
    main()
