"""Can the hypernetwork learn to read one word out of a document at all, and how fast?

Every document says "The secret word is <w>." among filler sentences and every question is the same
("What is the secret word?"), so nothing but the document tells the answer: the bias LoRA cannot learn it
and a document-independent adapter scores exactly chance. Reports, along a short SmolLM2 run, the answer
loss with each document's own adapter vs. a neighbour's, and exact match, on the training words and on
words never trained on.

    python benchmarks/probe_capacity.py --out runs/capacity --steps 150 --contrast-weight 1.0
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import torch
from probe_training import doc_gap, niah_em

from d2l_memory.data.types import QA, Sample
from d2l_memory.engine import D2L
from d2l_memory.training.teacher import compute_targets
from d2l_memory.training.trainer import TrainConfig, Trainer

WORDS = """apple banana cherry grape lemon mango melon orange peach pear plum berry olive onion garlic pepper
carrot potato tomato bean rice bread cheese butter honey sugar salt coffee tea milk water juice wine beer
soup cake pie candy cookie pizza pasta salad egg fish meat chicken beef pork lamb duck goose horse cow pig
sheep goat dog cat mouse rat rabbit fox wolf bear lion tiger zebra monkey snake frog turtle whale shark
dolphin eagle owl crow swan parrot bee ant spider moth butterfly river lake ocean sea island mountain hill
valley forest desert beach cave field garden park road bridge tower castle church temple school office
bank market shop hotel house cabin tent barn farm city village town harbor station airport train bus car
truck bike boat ship plane rocket wheel engine motor battery lamp candle mirror window door wall roof floor
table chair bed sofa desk shelf clock watch phone radio camera piano guitar violin drum flute trumpet bell
book paper pencil pen brush paint canvas letter card stamp coin ring necklace crown hat coat shirt dress
shoe boot glove scarf belt bag box basket bottle cup glass plate bowl spoon fork knife pot pan kettle oven
stove fridge sink towel soap brush comb key lock chain rope wire nail hammer saw drill shovel ladder tent
silver gold copper iron steel stone marble glass wood cotton wool silk leather plastic rubber diamond pearl
ruby emerald winter summer spring autumn morning evening night storm rain snow wind cloud thunder rainbow
star moon sun planet comet galaxy""".split()
FILLER = ["The weather was mild that day.", "Nobody remembered who had left the door open.",
          "A train passed slowly in the distance.", "The meeting ran late again.",
          "Someone had painted the fence blue.", "The library closes at six.",
          "It took an hour to find a parking spot.", "The soup needed more salt.",
          "Two birds sat on the wire.", "The printer was out of paper."]
QUESTION = "What is the secret word?"


def samples(words: list[str], seed: int, tag: str) -> list[Sample]:
    rng = random.Random(f"{tag}-{seed}")
    out = []
    for i, w in enumerate(words):
        sents = rng.sample(FILLER, 2)
        sents.insert(rng.randrange(3), f"The secret word is {w}.")
        out.append(Sample(context=" ".join(sents), qas=(QA(QUESTION, w),), kind="niah", id=f"{tag}{i}"))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--train-words", type=int, default=200)
    p.add_argument("--lr", type=float, default=2.5e-4)
    p.add_argument("--docs-per-step", type=int, default=8)
    p.add_argument("--contrast-weight", type=float, default=1.0)
    p.add_argument("--overrides", default="{}", help="HypernetConfig overrides as JSON")
    p.add_argument("--checkpoint", default=None, help="start from this checkpoint instead of a fresh hypernet")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    words = list(dict.fromkeys(WORDS))
    random.Random(0).shuffle(words)
    train_w, test_w = words[:a.train_words], words[a.train_words:a.train_words + 48]
    if a.checkpoint:
        d2l = D2L.from_pretrained(a.checkpoint, dtype=torch.bfloat16)
    else:
        d2l = D2L.from_base_model("smollm2-135m", seed=0, dtype=torch.bfloat16, **json.loads(a.overrides))
    train, test = samples(train_w, 0, "cap-train"), samples(test_w, 0, "cap-test")
    targets = compute_targets(d2l, train + test, use_teacher=False)
    # --steps 0 evaluates only: the schedule then just has to be valid (steps >= 1, warmup < steps)
    cfg = TrainConfig(out_dir=a.out, steps=max(1, a.steps), lr=a.lr, warmup=min(10, max(0, a.steps - 1)),
                      docs_per_step=a.docs_per_step,
                      qas_per_doc=1, max_chunks=1, save_every=10**9, log_every=10**9,
                      contrast_weight=a.contrast_weight)
    trainer = Trainer(d2l, train, targets, cfg)
    if not a.checkpoint:
        d2l.calibrate([s.context for s in train[:64]])
    Path(a.out).mkdir(parents=True, exist_ok=True)
    log = open(Path(a.out) / "capacity.jsonl", "a")
    t0, losses = time.time(), []
    seen = train[:48]
    while True:
        if trainer.step % a.eval_every == 0:
            tr_own, tr_sw = doc_gap(trainer, seen)
            te_own, te_sw = doc_gap(trainer, test)
            rec = dict(step=trainer.step, train_task=sum(losses[-a.eval_every:]) / max(1, len(losses[-a.eval_every:])),
                       seen_own=tr_own, seen_swapped=tr_sw, seen_em=niah_em(d2l, seen[:24], max_new_tokens=6),
                       new_own=te_own, new_swapped=te_sw, new_em=niah_em(d2l, test[:24], max_new_tokens=6),
                       s_per_step=(time.time() - t0) / max(1, trainer.step))
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if trainer.step >= a.steps:  # --steps 0: evaluate only
            break
        losses.append(trainer.train_step()["task"])


if __name__ == "__main__":
    main()
