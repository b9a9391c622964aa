"""Evaluate a hypernetwork checkpoint on held-out data (digest section 5 protocol, CPU-sized).

For each held-out sample and question, four ways to answer:
  d2l        the generated adapter, no document in the prompt
  in_context the document in the prompt (the upper bound; "beyond the window" when it does not fit)
  no_doc     neither (the lower bound)
  cd         context distillation: a LoRA trained per document by gradient steps on the teacher's answers
             to the same questions (an oracle-query CD baseline, as the reference's "CD-oracle"), with its
             wall time
Metrics: exact match and word F1 after SQuAD normalisation, plus `contains` (the gold answer appears
in the prediction). Also a NIAH length sweep with fixed-size chunks, far past the base model's window.

    python -m d2l_memory.evaluation --checkpoint smollm2-135m --kinds personal,realdoc --n 40
    python -m d2l_memory.evaluation --checkpoint smollm2-135m --niah-sweep 256,1024,4096,16384,32768
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import string
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .batching import pad_ids
from .data.types import Sample
from .prompts import context_prompt
from .tokens import text_ids

log = logging.getLogger(__name__)
CONDITIONS = ("d2l", "in_context", "no_doc", "cd")


# ---- metrics -------------------------------------------------------------------------------------
def normalize(s: str) -> str:
    s = s.lower()
    s = "".join(" " if ch in string.punctuation else ch for ch in s)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalize(pred) == normalize(gold))


def contains(pred: str, gold: str) -> float:
    g = normalize(gold)
    return float(bool(g) and re.search(rf"(^| ){re.escape(g)}( |$)", normalize(pred)) is not None)


def word_f1(pred: str, gold: str) -> float:
    p, g = normalize(pred).split(), normalize(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or common == 0:
        return float(p == g)
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


@dataclass
class Scores:
    n: int = 0
    em: float = 0.0
    contains: float = 0.0
    f1: float = 0.0
    seconds: float = 0.0  # time to prepare the memory (internalize / CD training), summed over documents
    skipped: int = 0  # questions that could not run (e.g. document beyond the context window)
    examples: list = field(default_factory=list)
    keep_examples: int = 5  # predictions kept for reading (-1 = all)

    def add(self, pred: str, gold: str, question: str, doc: str | None = None) -> None:
        self.n += 1
        self.em += exact_match(pred, gold)
        self.contains += contains(pred, gold)
        self.f1 += word_f1(pred, gold)
        if self.keep_examples < 0 or len(self.examples) < self.keep_examples:
            self.examples.append({"q": question, "gold": gold, "pred": pred} | ({"doc": doc} if doc else {}))

    def summary(self) -> dict:
        n = max(self.n, 1)
        return {"n": self.n, "em": self.em / n, "contains": self.contains / n, "f1": self.f1 / n,
                "seconds": self.seconds, "skipped": self.skipped, "examples": self.examples}


@torch.no_grad()
def answer_logprob(d2l, question: str, answer: str, adapter=None) -> float:
    """Mean log-probability per token of `answer` (plus EOS) after `question`, with an optional adapter."""
    prompt = d2l.prompt_ids(question)
    ans = text_ids(d2l.tokenizer, answer.strip()) + [d2l.tokenizer.eos_token_id]
    ids = torch.tensor([prompt + ans], device=d2l.device)
    with d2l.lora_context([adapter]), d2l.autocast():
        logits = d2l.model(input_ids=ids).logits[0, len(prompt) - 1: -1].float()
    return float(torch.log_softmax(logits, -1).gather(-1, torch.tensor(ans, device=d2l.device)[:, None]).mean())


# Two users with parallel facts: each fact's question is asked with the user's own recalled adapter and
# with the other user's, so only what the adapter took from the document can make a difference.
USER_PROFILES = {
    "marta": ("The user's name is Marta Silva. Marta lives in Lisbon. She works as a pharmacist. "
              "Marta has a cat called Pimenta.", {"What city does the user live in?": "Lisbon",
                                                  "What is the user's job?": "pharmacist",
                                                  "What is the name of the user's cat?": "Pimenta"}),
    "kenji": ("The user's name is Kenji Sato. Kenji lives in Denver. He works as an electrician. "
              "Kenji has a dog called Rocket.", {"What city does the user live in?": "Denver",
                                                 "What is the user's job?": "electrician",
                                                 "What is the name of the user's dog?": "Rocket"}),
}


def user_margins(mem, profiles: dict = USER_PROFILES) -> tuple[list[tuple[float, float, float]], dict]:
    """Ingest each user's profile into the `Memory` `mem`; per fact, the mean log-prob per token of the true
    answer with the adapter recalled for that user, for another user, and with none. Returns (rows, memory
    id per user)."""
    ids = {u: mem.ingest(u, text)[0] for u, (text, _) in profiles.items()}
    rows = []
    for user, (_, facts) in profiles.items():
        other = next(u for u in profiles if u != user)
        for q, a in facts.items():
            own, theirs = mem.recall(user, q), mem.recall(other, q)
            rows.append((answer_logprob(mem.engine, q, a, own.adapter),
                         answer_logprob(mem.engine, q, a, theirs.adapter), answer_logprob(mem.engine, q, a, None)))
    return rows, ids


# ---- the CD baseline -------------------------------------------------------------------------------
def cd_adapter(d2l, sample: Sample, steps: int = 30, lr: float = 1e-3, rank: int = 8, k: int = 16):
    """Per-document context distillation: train a fresh LoRA (rank 8 on the hypernet's target modules,
    PEFT-style init A ~ small random, B = 0, scale 2 as the reference's alpha 16 / r 8) on the teacher's
    top-k distributions for the document's questions. Returns (Adapter, seconds)."""
    from .adapter import Adapter
    from .lora import apply_lora
    from .training.teacher import generate_targets
    from .training.trainer import student_answer_losses

    t0 = time.time()
    targets = generate_targets(d2l, [sample], k=k)
    paths = d2l.module_paths
    A = {t: (torch.randn(len(ps), rank, d2l.config.feature_sizes[t][0]) / d2l.config.feature_sizes[t][0] ** 0.5
             ).requires_grad_() for t, ps in paths.items()}
    B = {t: torch.zeros(len(ps), rank, d2l.config.feature_sizes[t][1], requires_grad=True) for t, ps in paths.items()}
    opt = torch.optim.AdamW([*A.values(), *B.values()], lr=lr, weight_decay=0.0)
    rows = [(d2l.prompt_ids(qa.question), targets[f"{sample.id}#{i}"]) for i, qa in enumerate(sample.qas)
            if f"{sample.id}#{i}" in targets]
    body = getattr(d2l.model, d2l.model.base_model_prefix)
    scale = 2.0
    for _ in range(steps if rows else 0):
        opt.zero_grad()
        ids, attn = pad_ids([p + t.answer_ids for p, t in rows], d2l.tokenizer.pad_token_id)
        bA = {t: a[None].expand(len(rows), -1, -1, -1) for t, a in A.items()}
        bB = {t: b[None].expand(len(rows), -1, -1, -1) for t, b in B.items()}
        with apply_lora(d2l.model, paths, bA, bB, scale), d2l.autocast():
            hidden = body(input_ids=ids.to(d2l.device), attention_mask=attn.to(d2l.device)).last_hidden_state
            loss = student_answer_losses(d2l, hidden, [len(p) for p, _ in rows], [t for _, t in rows],
                                         ce_weight=0.0, kl_weight=1.0).mean()
        loss.backward()
        opt.step()
    ad = Adapter(A={t: a.detach() for t, a in A.items()}, B={t: b.detach() for t, b in B.items()}, alpha=scale,
                 module_paths=paths, base_model=d2l.base_model, hypernet_sha="cd-baseline")
    return ad, time.time() - t0


# ---- evaluation ------------------------------------------------------------------------------------
def evaluate(d2l, samples: Sequence[Sample], conditions: Sequence[str] = CONDITIONS[:3], max_new_tokens: int = 48,
             batch_size: int = 8, chunk_tokens: int | None = None, cd_steps: int = 30,
             adapter_scale: float = 1.0, keep_examples: int = 5) -> dict[str, dict]:
    """Scores per condition over all questions of `samples`.

    `adapter_scale` multiplies the strength of the generated adapters (condition "d2l"; 1 = as generated);
    `keep_examples` is how many (question, gold, prediction) rows each condition keeps (-1 = all of them).
    """
    bad = set(conditions) - set(CONDITIONS)
    if bad:
        raise ValueError(f"unknown conditions {sorted(bad)}; choose from {CONDITIONS}")
    if keep_examples < -1:
        raise ValueError(f"keep_examples must be >= 0, or -1 for all; got {keep_examples}")
    scores = {c: Scores(keep_examples=keep_examples) for c in conditions}
    window = d2l.context_window
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        qs = [(s, qa) for s in batch for qa in s.qas]
        questions = [qa.question for _, qa in qs]
        if "d2l" in conditions:
            t0 = time.time()
            ads = d2l.internalize([s.context for s in batch], chunk_tokens=chunk_tokens)
            if adapter_scale != 1.0:
                ads = [a.scaled(adapter_scale) for a in ads]
            scores["d2l"].seconds += time.time() - t0
            by_id = {s.id: a for s, a in zip(batch, ads, strict=False)}
            preds = d2l.generate(questions, adapters=[by_id[s.id] for s, _ in qs], max_new_tokens=max_new_tokens)
            for (s, qa), p in zip(qs, preds, strict=False):
                scores["d2l"].add(p, qa.answer, qa.question, s.id)
        if "no_doc" in conditions:
            for (s, qa), p in zip(qs, d2l.generate(questions, max_new_tokens=max_new_tokens), strict=False):
                scores["no_doc"].add(p, qa.answer, qa.question, s.id)
        if "in_context" in conditions:
            fits = [(s, qa) for s, qa in qs
                    if len(d2l.prompt_ids(context_prompt(s.context, qa.question))) + max_new_tokens <= window]
            scores["in_context"].skipped += len(qs) - len(fits)
            for i in range(0, len(fits), batch_size):
                part = fits[i:i + batch_size]
                preds = d2l.generate([context_prompt(s.context, qa.question) for s, qa in part],
                                     max_new_tokens=max_new_tokens)
                for (s, qa), p in zip(part, preds, strict=False):
                    scores["in_context"].add(p, qa.answer, qa.question, s.id)
        if "cd" in conditions:
            for s in batch:
                ad, sec = cd_adapter(d2l, s, steps=cd_steps)
                scores["cd"].seconds += sec
                preds = d2l.generate([qa.question for qa in s.qas], adapters=ad, max_new_tokens=max_new_tokens)
                for qa, p in zip(s.qas, preds, strict=False):
                    scores["cd"].add(p, qa.answer, qa.question, s.id)
        log.info("evaluated %d/%d documents", min(start + batch_size, len(samples)), len(samples))
    out = {c: sc.summary() for c, sc in scores.items()}
    for c in out:
        out[c]["seconds_per_doc"] = out[c]["seconds"] / max(1, len(samples))
    return out


def niah_sweep(d2l, lengths: Sequence[int], n: int = 10, chunk_tokens: int = 1024, seed: int = 0,
               in_context: bool = True) -> list[dict]:
    """NIAH exact match by haystack length with fixed-size chunks; in-context where the window allows."""
    from .data.niah import build_niah

    rows = []
    for L in lengths:
        lo, hi = int(L * 0.9), int(L * 1.1)
        samples = build_niah(n, token_range=(lo, hi), seed=seed, split="test", count_tokens=d2l.count_tokens)
        conds = ["d2l", "in_context"] if in_context else ["d2l"]
        res = evaluate(d2l, samples, conditions=conds, max_new_tokens=16, batch_size=4, chunk_tokens=chunk_tokens)
        # "contains": the needle number appears in the answer (in context SmolLM2 answers in a sentence)
        row = {"tokens": L, "n": len(samples), "d2l_em": res["d2l"]["em"], "d2l_contains": res["d2l"]["contains"],
               "d2l_internalize_s": res["d2l"]["seconds_per_doc"]}
        if in_context:
            ic = res["in_context"]
            row["in_context_em"] = ic["em"] if ic["n"] else "beyond the window"
            row["in_context_contains"] = ic["contains"] if ic["n"] else "beyond the window"
        rows.append(row)
        log.info("NIAH %s", row)
    return rows


def to_markdown(results: dict) -> str:
    lines = ["| data | condition | n | EM | contains | F1 | prep s/doc |", "|---|---|---|---|---|---|---|"]
    for kind, res in results.items():
        if kind == "niah_sweep":
            continue
        for c, r in res.items():
            lines.append(f"| {kind} | {c} | {r['n']} | {r['em']:.3f} | {r['contains']:.3f} | {r['f1']:.3f} | "
                         f"{r['seconds_per_doc']:.2f} |")
    if "niah_sweep" in results:
        lines += ["", "| NIAH tokens | n | D2L EM | D2L contains | in-context EM | in-context contains | internalize s |",
                  "|---|---|---|---|---|---|---|"]
        fmt = lambda x: f"{x:.3f}" if isinstance(x, float) else x  # noqa: E731
        for r in results["niah_sweep"]:
            lines.append(f"| {r['tokens']} | {r['n']} | {r['d2l_em']:.3f} | {r['d2l_contains']:.3f} | "
                         f"{fmt(r.get('in_context_em', '-'))} | {fmt(r.get('in_context_contains', '-'))} | "
                         f"{r['d2l_internalize_s']:.2f} |")
    return "\n".join(lines)


def heldout(kind: str, n: int, seed: int, split: str, d2l) -> list[Sample]:
    if kind == "personal":
        from .data.personal import build_personal
        return build_personal(n, seed=seed + 1000, split=split)
    if kind == "niah":
        from .data.niah import build_niah
        return build_niah(n, token_range=(32, 256), seed=seed + 1000, split=split, count_tokens=d2l.count_tokens)
    if kind == "realdoc":
        from .data.realdocs import build_realdocs
        return build_realdocs(n, seed=seed + 1000, split=split)
    raise ValueError(f"unknown kind {kind!r}; choose personal, niah or realdoc")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--base-model", default=None)
    p.add_argument("--kinds", default="personal,niah,realdoc")
    p.add_argument("--n", type=int, default=40, help="held-out documents per kind")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conditions", default="d2l,in_context,no_doc")
    p.add_argument("--cd-kinds", default="", help="kinds that also run the CD baseline (slow)")
    p.add_argument("--cd-n", type=int, default=8, help="documents per kind for the CD baseline")
    p.add_argument("--niah-sweep", default="", help="comma-separated haystack lengths in tokens")
    p.add_argument("--niah-n", type=int, default=10)
    p.add_argument("--examples", type=int, default=5,
                   help="predictions kept per kind and condition in the JSON (-1 = all; for error analysis)")
    p.add_argument("--out", default=None, help="write results JSON (and .md) here")
    a = p.parse_args(argv)
    if a.examples < -1:
        p.error(f"--examples must be >= 0, or -1 for all; got {a.examples}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from .engine import D2L

    d2l = D2L.from_pretrained(a.checkpoint, base_model=a.base_model)
    results: dict = {}
    conds = [c for c in a.conditions.split(",") if c]
    for kind in [k for k in a.kinds.split(",") if k]:
        samples = heldout(kind, a.n, a.seed, a.split, d2l)
        results[kind] = evaluate(d2l, samples, conditions=[c for c in conds if c != "cd"], keep_examples=a.examples)
        if kind in a.cd_kinds.split(","):
            cd_samples = samples[: a.cd_n]
            results[kind]["cd"] = evaluate(d2l, cd_samples, conditions=["cd"], keep_examples=a.examples)["cd"]
            results[kind]["d2l_on_cd_subset"] = evaluate(d2l, cd_samples, conditions=["d2l"],
                                                         keep_examples=a.examples)["d2l"]
    if a.niah_sweep:
        results["niah_sweep"] = niah_sweep(d2l, [int(x) for x in a.niah_sweep.split(",")], n=a.niah_n)
    md = to_markdown(results)
    print(md)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=2))
        Path(a.out).with_suffix(".md").write_text(md + "\n")
    return results


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
