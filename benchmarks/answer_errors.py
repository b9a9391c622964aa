"""What the wrong D2L answers are: the needle's digits in another order, another value of the same document,
a value of another held-out document, or something the document never said.

Runs the d2l condition of `d2l_memory.evaluation` on held-out draws with every prediction kept (each draw's
file is the usual evaluation JSON, so it doubles as an exact-match draw), then sorts the wrong answers:

    python benchmarks/answer_errors.py --checkpoint smollm2-135m --seeds 0,7,11 --n 16 \
        --out benchmarks/results/answer_errors_shipped.json

Categories of a wrong answer (the first that applies):
  order      the same characters as the gold answer (digits for NIAH, letters for words), in another order
  own_doc    a phrase of the question's own document that is not the gold answer (another fact, mis-bound)
  other_doc  a phrase of another held-out document of the same draw (one document's memory in another's answer)
  absent     in no held-out document: the base model's prior, or a garbled copy
and, across wrong answers, how often the first token is still the gold answer's first token.

`--scale NAME=FACTOR` multiplies the hypernetwork parameters whose name starts with NAME before anything runs,
a probe of what a learned gain does (`--scale copy_key_gain=4`: the key path that says *when* to write).
`--contrast ALPHA` decodes adapter-contrastively: each greedy token maximises
(1 + ALPHA) log p(token | adapter) - ALPHA log p(token | base model) among tokens with
p(token | adapter) >= `--plausibility` x the most likely one's (context-aware decoding, Shi et al. 2023,
with the adapter in the document's place; the plausibility cut of contrastive decoding, Li et al. 2023).
`--beams N` decodes by beam search (N beams) instead of greedily; `--chunk-tokens N` internalizes documents in
chunks of at most N tokens (the hypernetwork trained on 1-4 chunks a document; the default, 1024, makes one).
`--doc-gain K` amplifies the document-specific part of the head's inputs: each unit input u becomes
c + K (u - c), with c the mean unit input of `--doc-gain-calib` training-split documents of the same kind
(K = 1: unchanged); a probe of whether the part that tells two documents apart is under-weighted.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from d2l_memory.evaluation import evaluate, heldout, normalize

CATEGORIES = ("order", "own_doc", "other_doc", "absent")


def _in_text(phrase: str, text: str) -> bool:
    return bool(phrase) and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def classify(gold: str, pred: str, own_doc: str, other_docs: list[str]) -> str | None:
    """The category of a wrong answer (None if it is right); documents are compared after `normalize`."""
    g, p = normalize(gold), normalize(pred)
    if p == g:
        return None
    if p and sorted(p.replace(" ", "")) == sorted(g.replace(" ", "")):
        return "order"
    if _in_text(p, normalize(own_doc)):
        return "own_doc"
    if any(_in_text(p, normalize(d)) for d in other_docs):
        return "other_doc"
    return "absent"


def digit_positions(gold: str, pred: str) -> list[bool]:
    """Per position of the gold number: is the predicted digit there the same (missing digits are wrong)."""
    p = re.sub(r"\D", "", pred)
    return [i < len(p) and p[i] == c for i, c in enumerate(gold)]


def analyse(rows: list[dict], docs: dict[str, str], first_token) -> dict:
    """rows: {"gold", "pred", "doc"} predictions of one kind; docs: id -> context; first_token: text -> id."""
    counts, first_same, wrong = Counter(), 0, 0
    for r in rows:
        cat = classify(r["gold"], r["pred"], docs[r["doc"]], [t for i, t in docs.items() if i != r["doc"]])
        if cat is None:
            counts["right"] += 1
            continue
        wrong += 1
        counts[cat] += 1
        first_same += first_token(r["pred"].strip()) == first_token(r["gold"].strip())
    out = {"n": len(rows), "right": counts["right"], "wrong": wrong, **{c: counts[c] for c in CATEGORIES},
           "wrong_first_token_right": first_same}
    if rows and all(r["gold"].isdigit() for r in rows):
        pos = [digit_positions(r["gold"], r["pred"]) for r in rows]
        width = max(len(x) for x in pos)
        out["digit_right_by_position"] = [sum(x[i] for x in pos if i < len(x)) for i in range(width)]
    return out


def pool(per_draw: list[dict]) -> dict:
    """`analyse` results of several draws summed: counts added, per-position lists added position by position."""
    return {k: [sum(col) for col in zip(*(x[k] for x in per_draw), strict=False)] if isinstance(v, list)
            else sum(x[k] for x in per_draw) for k, v in per_draw[0].items()}


def contrastive(d2l, alpha: float, plausibility: float) -> None:
    """Make `d2l.generate` with adapters decode adapter-contrastively: each prompt runs twice in one batch,
    with its adapter and with none, and both rows take the token chosen from the pair's combined scores."""
    import math

    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class PairContrast(LogitsProcessor):
        def __call__(self, input_ids, scores):
            b = scores.shape[0] // 2
            lp_ad, lp_base = scores[:b].float().log_softmax(-1), scores[b:].float().log_softmax(-1)
            comb = (1 + alpha) * lp_ad - alpha * lp_base
            cut = lp_ad.max(-1, keepdim=True).values + math.log(plausibility)
            comb = comb.masked_fill(lp_ad < cut, float("-inf"))
            return torch.cat([comb, comb]).to(scores.dtype)

    plain = d2l.generate

    def generate(prompts, adapters=None, **kw):
        if adapters is None or not isinstance(adapters, list):
            return plain(prompts, adapters, **kw)
        n = len(prompts)
        out = plain(list(prompts) * 2, adapters=list(adapters) + [None] * n,
                    logits_processor=LogitsProcessorList([PairContrast()]), **kw)
        return out[:n]

    d2l.generate = generate


def head_input_centre(d2l, texts: list[str]):
    """The mean unit head input [L, M*r, d] of `texts` (each text's first chunk), unpatched hypernetwork."""
    from latent_similarity import first_chunk_latents  # a sibling script (this one runs from benchmarks/)

    hn = d2l.hypernet
    plain = type(hn).head_inputs.__get__(hn)  # the class's method, even if `doc_gain` patched the instance
    return plain(first_chunk_latents(d2l, texts)).mean(0)


def doc_gain(d2l, centre, gain: float) -> None:
    """Make `d2l.hypernet.head_inputs` return c + gain * (u - c) for its unit inputs u, c = `centre`."""
    hn = d2l.hypernet
    plain = type(hn).head_inputs.__get__(hn)
    hn.head_inputs = lambda z: centre + gain * (plain(z) - centre)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--kinds", default="personal,niah")
    p.add_argument("--seeds", default="0,7,11")
    p.add_argument("--n", type=int, default=16, help="held-out documents per kind and draw")
    p.add_argument("--scale", action="append", default=[], metavar="NAME=FACTOR",
                   help="multiply the hypernetwork parameters named NAME* by FACTOR (repeatable)")
    p.add_argument("--contrast", type=float, default=0.0, help="adapter-contrastive decoding strength (0 = off)")
    p.add_argument("--plausibility", type=float, default=0.1)
    p.add_argument("--beams", type=int, default=1, help="beam search with this many beams (1 = greedy)")
    p.add_argument("--chunk-tokens", type=int, default=None, help="chunk size for internalizing (default: the engine's)")
    p.add_argument("--doc-gain", type=float, default=1.0, help="amplify the head inputs' document part (1 = off)")
    p.add_argument("--doc-gain-calib", type=int, default=32, help="training documents per kind for its centre")
    p.add_argument("--out", required=True, help="summary JSON; each draw's predictions go next to it")
    a = p.parse_args()
    from d2l_memory.engine import D2L
    from d2l_memory.tokens import text_ids

    d2l = D2L.from_pretrained(a.checkpoint)
    for item in a.scale:
        name, _, factor = item.partition("=")
        params = [t for n, t in d2l.hypernet.named_parameters() if n.startswith(name)]
        if not params or not factor:
            p.error(f"--scale {item!r}: want NAME=FACTOR with NAME a prefix of a hypernetwork parameter name")
        for t in params:
            t.data.mul_(float(factor))
    if a.beams > 1:
        greedy = d2l.generate
        d2l.generate = lambda prompts, adapters=None, **kw: greedy(prompts, adapters, num_beams=a.beams, **kw)
    if a.contrast:
        contrastive(d2l, a.contrast, a.plausibility)
    first = lambda t: (text_ids(d2l.tokenizer, t) or [None])[0]  # noqa: E731
    out, pooled, centres = Path(a.out), {}, {}
    for seed in [int(s) for s in a.seeds.split(",")]:
        draw = {}
        for kind in [k for k in a.kinds.split(",") if k]:
            if a.doc_gain != 1.0:
                if kind not in centres:
                    calib = heldout(kind, a.doc_gain_calib, 0, "train", d2l)
                    centres[kind] = head_input_centre(d2l, [s.context for s in calib])
                doc_gain(d2l, centres[kind], a.doc_gain)
            samples = heldout(kind, a.n, seed, "test", d2l)
            draw[kind] = evaluate(d2l, samples, conditions=["d2l"], keep_examples=-1, chunk_tokens=a.chunk_tokens)
            docs = {s.id: s.context for s in samples}
            pooled.setdefault(kind, []).append((draw[kind]["d2l"]["examples"], docs))
        out.with_name(f"{out.stem}_seed{seed}.json").write_text(json.dumps(draw, indent=2))
    summary = {"checkpoint": a.checkpoint, "seeds": a.seeds, "n": a.n, "scale": a.scale,
               "contrast": a.contrast, "plausibility": a.plausibility, "beams": a.beams, "chunk_tokens": a.chunk_tokens,
               "doc_gain": a.doc_gain, "doc_gain_calib": a.doc_gain_calib}
    for kind, parts in pooled.items():
        summary[kind] = pool([analyse(rows, docs, first) for rows, docs in parts])
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
