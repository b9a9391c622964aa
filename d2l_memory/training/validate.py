"""Held-out loss: the training objective on documents the hypernetwork never trained on.

Exact match on a few dozen held-out questions moves in steps of several percent; the held-out loss (the
cross-entropy the trainer minimises, on test-split documents chunked as at inference) and the document gap
(the same loss with another document's adapter, minus the loss with the document's own) move smoothly. They
compare checkpoints, and `--val-every` in the recipe draws a held-out learning curve with them.

    python -m d2l_memory.training.validate smollm2-135m runs/x/final --personal 64 --niah 32 --facts 64 \\
        --realdoc 8 --data runs/val_s0 --out runs/val.json

The held-out samples are the builders' test split (names and numbers disjoint from training); real-document
targets are the teacher's answers (the base model with the document in its prompt), cached under `--data`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from ..data.personal import QUESTION_PERSONS
from ..data.types import Sample
from .teacher import Target
from .trainer import TrainConfig, batch_loss, target_questions

log = logging.getLogger(__name__)


def label(sample: Sample) -> str:
    """The group a held-out sample is reported in: its kind, with single facts (personal samples cut from a
    `source` profile) apart from whole profiles. Real documents carry a `source` too (the corpus)."""
    return "facts" if sample.kind == "personal" and sample.meta.get("source") else sample.kind


@torch.no_grad()
def heldout_loss(d2l, samples: list[Sample], targets: dict[str, Target], batch_size: int = 8) -> dict[str, dict]:
    """Per group (see `label`): {"docs", "own", "gap"}, the mean per-document task loss with the document's
    own adapter and the mean (swapped - own) loss over questions answered with the next document's adapter
    of the same batch. Every question with a target counts; documents are chunked as at inference.
    """
    cfg = TrainConfig(contrast_weight=1.0)  # the contrast pass yields the gap; the weights do not matter
    groups: dict[str, list[tuple[Sample, list[int], None]]] = {}
    for s in samples:
        if qs := target_questions(s, targets):
            groups.setdefault(label(s), []).append((s, qs, None))  # None: chunked as at inference
    was_training = d2l.hypernet.training
    d2l.hypernet.eval()
    out = {}
    try:
        for name, group in groups.items():
            own = gap = 0.0
            n_gap = 0
            for i in range(0, len(group), batch_size):
                batch = group[i:i + batch_size]
                _, info = batch_loss(d2l, d2l.hypernet, d2l.hypernet, batch, targets, cfg)
                own += info["task"] * len(batch)
                if "gap" in info:
                    gap += info["gap"] * len(batch)
                    n_gap += len(batch)
            out[name] = {"docs": len(group), "own": own / len(group), "gap": gap / n_gap if n_gap else None}
    finally:
        d2l.hypernet.train(was_training)
    return out


def heldout_data(d2l, personal: int = 64, niah: int = 32, realdoc: int = 0, facts: int = 64, seed: int = 0,
                 data_dir: str | Path | None = None, phrasing: str = "third") -> tuple[list[Sample], dict[str, Target]]:
    """Test-split samples and their targets (cached under `data_dir` when given: the teacher's real-document
    answers cost a generation each)."""
    import tempfile

    from .recipe import DataSpec, prepare

    spec = DataSpec(personal=personal, niah=niah, realdoc=realdoc, single_facts=facts, seed=seed,
                    phrasing=phrasing)
    if data_dir is not None:
        samples, targets = prepare(d2l, spec, Path(data_dir), split="test")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            samples, targets = prepare(d2l, spec, Path(tmp), split="test")
    return samples, targets


def load_checkpoints(checkpoints: list[str], base_model: str | None = None, dtype: torch.dtype | None = None):
    """Yield (checkpoint, D2L) for each checkpoint, all on the first one's frozen base model (loaded once)."""
    from ..engine import D2L

    base: dict = {}
    for ck in checkpoints:
        d2l = D2L.from_pretrained(ck, base_model=base_model, dtype=dtype, **base)
        base = {"model": d2l.model, "tokenizer": d2l.tokenizer}
        yield ck, d2l


def format_table(results: dict[str, dict]) -> str:
    """Markdown: one row per checkpoint, own loss and gap per group."""
    names = sorted({g for r in results.values() for g in r})
    head = "| checkpoint | " + " | ".join(f"{g} own | {g} gap" for g in names) + " |"
    rows = [head, "|---|" + "---:|---:|" * len(names)]
    for ck, r in results.items():
        cells = []
        for g in names:
            v = r.get(g)
            cells += ["" if v is None else f"{v['own']:.3f}",
                      "" if v is None or v["gap"] is None else f"{v['gap']:+.3f}"]
        rows.append(f"| {ck} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="checkpoint directories or shipped names")
    p.add_argument("--base-model", default=None, help="override the checkpoints' base model (id or path)")
    p.add_argument("--personal", type=int, default=64, help="held-out profiles and transcripts")
    p.add_argument("--niah", type=int, default=32)
    p.add_argument("--realdoc", type=int, default=0, help="held-out real documents (teacher answers: slow on CPU)")
    p.add_argument("--facts", type=int, default=64, help="single facts cut from held-out profiles")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phrasing", choices=QUESTION_PERSONS, default="third",
                   help="how the personal questions name the person (data.personal.build_personal)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--data", default=None, help="cache directory of the held-out samples and targets")
    p.add_argument("--base-dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dtype = None if a.base_dtype == "auto" else getattr(torch, a.base_dtype)
    results: dict[str, dict] = {}
    data = None
    for ck, d2l in load_checkpoints(a.checkpoints, a.base_model, dtype):
        if data is None:  # the targets depend on the base model only, not on the checkpoint
            data = heldout_data(d2l, a.personal, a.niah, a.realdoc, a.facts, a.seed, a.data, a.phrasing)
        results[ck] = heldout_loss(d2l, *data, batch_size=a.batch_size)
        log.info("%s: %s", ck, json.dumps(results[ck]))
    print(format_table(results))
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "results": results}, indent=1) + "\n")
    return results


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
