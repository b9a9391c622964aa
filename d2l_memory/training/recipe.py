"""The training recipe behind the shipped checkpoint: data mix, teacher targets, training, export.

    python -m d2l_memory.training.recipe --out runs/smollm2 --steps 1200      # resumable: rerun to continue
    d2l-memory train --out runs/smollm2 --steps 1200                           # same, through the CLI
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data.niah import build_niah
from ..data.personal import QUESTION_PERSONS, build_personal
from ..data.types import Sample, read_jsonl, write_jsonl
from ..engine import D2L
from ..tokens import count_tokens
from .teacher import compute_targets, generate_targets, load_targets, save_targets
from .trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


def single_fact_samples(samples: list[Sample], n: int, seed: int = 0, distractors: int = 2) -> list[Sample]:
    """A curriculum of short contexts: for one question of a personal sample, the sentence (or chat line)
    that holds the answer plus up to `distractors` other sentences of the same profile, shuffled.

    With ~10-40-token contexts the document-specific part of the hypernetwork's input is large, so the
    document path starts to matter within a few hundred CPU steps (on full profiles alone it did not:
    the loss was the same with the right and a swapped document after 75 steps).
    """
    from ..data.textutil import split_sentences
    from ..data.types import QA

    rng = random.Random(f"single-facts-{seed}")
    pool = [s for s in samples if s.kind == "personal"]
    out: list[Sample] = []
    for s in pool:
        units = [u.strip() for u in (s.context.split("\n") if s.context.startswith("User:")
                                      else split_sentences(s.context)) if u.strip()]
        for qi, qa in enumerate(s.qas):
            hits = [u for u in units if qa.answer.lower() in u.lower()]
            if not hits:
                continue
            hit = hits[-1]  # the latest statement wins for updated facts
            others = [u for u in units if u not in hits]
            ctx = [hit] + rng.sample(others, min(distractors, len(others)))
            rng.shuffle(ctx)
            out.append(Sample(context=" ".join(ctx), qas=(QA(qa.question, qa.answer),), kind="personal",
                              id=f"{s.id}-fact{qi}", meta={"source": s.id}))
    rng.shuffle(out)
    return out[:n]


@dataclass
class DataSpec:
    personal: int = 2000  # synthetic profiles and chat transcripts (gold answers: cross-entropy)
    niah: int = 800  # magic-number haystacks, 32-256 tokens (gold answers: cross-entropy)
    realdoc: int = 400  # FAQ answers and dictionary definitions (teacher answers: top-k distillation)
    single_facts: int = 0  # short single-fact contexts cut from the personal samples (curriculum)
    facts_only: bool = False  # train on the single facts alone (the full samples only supply them)
    seed: int = 0
    top_k: int = 16
    phrasing: str = "third"  # personal questions: "third" (the user), "first" (my), "named" or "mixed"

    def __post_init__(self) -> None:
        for name in ("personal", "niah", "realdoc", "single_facts", "top_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"DataSpec.{name} must be a non-negative int, got {getattr(self, name)!r}")
        if self.phrasing not in QUESTION_PERSONS:
            raise ValueError(f"DataSpec.phrasing must be one of {QUESTION_PERSONS}, got {self.phrasing!r}")
        if self.facts_only and not (self.single_facts and self.personal):
            raise ValueError("DataSpec.facts_only trains on single facts cut from the personal samples: "
                             "set single_facts > 0 and personal > 0 (--single-facts N --personal N)")
        if self.single_facts and not self.personal:
            raise ValueError("DataSpec.single_facts are cut from the personal samples: set personal > 0 "
                             "(--personal N; in --val, give personal=N too)")


def build_samples(tokenizer, spec: DataSpec, split: str = "train") -> list[Sample]:
    """The spec's samples (no targets); `tokenizer` (the base model's) sizes the NIAH haystacks."""
    count = functools.partial(count_tokens, tokenizer)
    samples: list[Sample] = []
    if spec.personal:
        samples += build_personal(spec.personal, seed=spec.seed, split=split, question_person=spec.phrasing)
    if spec.niah:
        samples += build_niah(spec.niah, token_range=(32, 256), seed=spec.seed, split=split, count_tokens=count)
    if spec.realdoc:
        from ..data.realdocs import build_realdocs

        samples += build_realdocs(spec.realdoc, seed=spec.seed, split=split)
    return samples


# The DataSpec fields that decide the cached train.jsonl and targets (single facts are cut after loading).
CACHE_FIELDS = ("personal", "niah", "realdoc", "seed", "top_k", "phrasing")
CACHE_DEFAULTS = {"split": "train", "phrasing": "third"}  # for caches written before these were recorded


def _check_cached_spec(spec: DataSpec, data_dir: Path, split: str = "train") -> None:
    """Refuse to reuse a data cache built for other counts, seeds or split (it would silently use other data)."""
    want = {k: getattr(spec, k) for k in CACHE_FIELDS} | {"split": split}
    path = data_dir / "spec.json"
    if path.is_file():
        have = CACHE_DEFAULTS | json.loads(path.read_text())
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if diff:
            raise ValueError(
                f"{data_dir} caches data built with other settings ("
                + ", ".join(f"{k}: cached {a!r}, asked {b!r}" for k, (a, b) in diff.items())
                + "): pass the cached values, or use a new --out directory (or delete its data/ to rebuild)")
    elif (data_dir / "train.jsonl").is_file():
        log.warning("%s has no spec.json (an older cache): assuming it matches %s", data_dir, want)
    path.write_text(json.dumps(want, indent=1) + "\n")


def write_samples(base_model: str, spec: DataSpec, data_dir: Path, split: str = "train") -> Path:
    """Only the samples of `prepare` (`split`.jsonl + spec.json, no targets, the tokenizer but no model
    loaded): build the data on a CPU machine, let a GPU machine compute the teacher targets. (Real documents
    come from Debian packages fetched on first use, so an offline GPU machine can only use them this way.)"""
    from ..models import load_tokenizer

    data_dir.mkdir(parents=True, exist_ok=True)
    _check_cached_spec(spec, data_dir, split)
    samples = build_samples(load_tokenizer(base_model), spec, split)
    write_jsonl(samples, data_dir / f"{split}.jsonl")
    log.info("%d samples written to %s", len(samples), data_dir)
    return data_dir / f"{split}.jsonl"


def prepare(d2l: D2L, spec: DataSpec, data_dir: Path, split: str = "train") -> tuple[list[Sample], dict]:
    """Build (or reload) the samples of `split` and their targets, cached under `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _check_cached_spec(spec, data_dir, split)
    sp = data_dir / f"{split}.jsonl"
    if sp.is_file():
        samples = read_jsonl(sp)
    else:
        samples = build_samples(d2l.tokenizer, spec, split)
        write_jsonl(samples, sp)
    if spec.single_facts:
        facts = single_fact_samples(samples, spec.single_facts, spec.seed)
        samples = facts if spec.facts_only else samples + facts
    tp = data_dir / "targets"
    if tp.with_suffix(".json").is_file():
        targets = load_targets(tp)
        extra = [s for s in samples if f"{s.id}#0" not in targets and s.kind != "realdoc"]
        targets.update(compute_targets(d2l, extra, use_teacher=False))
        return samples, targets
    gold = [s for s in samples if s.kind != "realdoc"]
    real = [s for s in samples if s.kind == "realdoc"]
    t0 = time.time()
    targets = compute_targets(d2l, gold, use_teacher=False)
    if real:
        log.info("teacher answers for %d real-document questions ...", sum(len(s.qas) for s in real))
        batch = 64 if d2l.device.type == "cuda" else 8  # greedy generation is launch-bound on a GPU
        targets.update(generate_targets(d2l, real, k=spec.top_k, batch_size=batch))
    log.info("targets for %d questions in %.0fs", len(targets), time.time() - t0)
    save_targets(targets, tp)
    return samples, targets


def run(out: str, base_model: str = "smollm2-135m", spec: DataSpec | None = None,
        config: TrainConfig | None = None, until: int | None = None, hypernet_overrides: dict | None = None,
        on_step=None, base_dtype: torch.dtype | None = None, init_from: str | None = None,
        val_spec: DataSpec | None = None) -> Path:
    """Train (resuming if `out` holds a state) and export the final checkpoint to `out/final`.

    `init_from` starts from a trained checkpoint (a directory or a shipped name) instead of a fresh
    hypernetwork, with a fresh optimizer and schedule: a second curriculum stage, or fine-tuning the shipped
    checkpoint on your own data. Its architecture is kept: `hypernet_overrides` may only add parts that start
    as a no-op (e.g. `{"copy_keys": true}`), never change the shape of a trained one.

    `config.keep_every` > 0 also keeps a loadable checkpoint `out/step_NNNNN` every that many steps, so the
    best point of the held-out curve can be picked afterwards (the held-out loss often turns before the end).

    `val_spec` (with `config.val_every` > 0) builds held-out documents from the builders' test split, cached in
    `out/val_data`, whose loss is logged every `val_every` steps (`out/val.jsonl`, the learning curve).

    `base_dtype` is the frozen base model's weight dtype (None: the loader's default). bf16 weights on CPU
    spare bf16 autocast re-casting every frozen matrix on each call (the hypernetwork stays fp32).
    """
    spec = spec or DataSpec()
    config = config or TrainConfig(out_dir=out)
    config.out_dir = out
    torch.manual_seed(config.seed)
    if init_from is not None:
        d2l = D2L.from_pretrained(init_from, base_model=base_model, dtype=base_dtype)
        if hypernet_overrides:
            d2l = extend(d2l, hypernet_overrides, init_from)
        d2l.hypernet.train()
        config.extra = dict(config.extra, init_from=str(init_from))
    else:
        d2l = D2L.from_base_model(base_model, seed=config.seed, dtype=base_dtype, **(hypernet_overrides or {}))
    samples, targets = prepare(d2l, spec, Path(out) / "data")
    config.extra = dict(config.extra, data=asdict(spec), n_samples=len(samples), n_targets=len(targets))
    val = prepare(d2l, val_spec, Path(out) / "val_data", split="test") if val_spec and config.val_every else None
    trainer = Trainer(d2l, samples, targets, config, val=val)
    if not trainer.maybe_resume() and init_from is None:  # states and checkpoints carry the calibration
        calib = random.Random(config.seed).sample(samples, min(64, len(samples)))
        d2l.calibrate([s.context for s in calib])

    def hook(info):
        if on_step:
            on_step(info)
        if trainer.step % config.save_every == 0 or trainer.step == config.steps:
            export(d2l, trainer, Path(out) / "final", spec)
        if config.keep_every and trainer.step % config.keep_every == 0:  # snapshots to pick the best one from
            export(d2l, trainer, Path(out) / f"step_{trainer.step:05d}", spec)

    trainer.train(on_step=hook, until=until)
    return export(d2l, trainer, Path(out) / "final", spec)


def extend(d2l: D2L, overrides: dict, source: str) -> D2L:
    """A trained hypernetwork with new parts switched on by `overrides`: every trained weight is kept and
    the new ones start at their initialisation (`copy_values` and `copy_keys` start with gains of 0, so the
    function is unchanged at step 0). Overrides that would change or drop a trained weight are refused."""
    from ..config import HypernetConfig
    from ..hypernet import HyperLoRA

    cfg = HypernetConfig.from_dict({**d2l.config.to_dict(), **overrides})
    hyper = HyperLoRA(cfg)
    try:
        missing, unexpected = hyper.load_state_dict(d2l.hypernet.state_dict(), strict=False)
    except RuntimeError as e:  # size mismatch
        raise ValueError(f"init_from={source!r} keeps the checkpoint's architecture; the hypernet overrides "
                         f"{sorted(overrides)} change the shape of trained weights: {e}") from e
    if unexpected:
        raise ValueError(f"init_from={source!r} keeps the checkpoint's architecture; the hypernet overrides "
                         f"{sorted(overrides)} would drop trained weights {unexpected[:5]}")
    log.info("extending %s with %s: new parameters %s", source, overrides, missing)
    return D2L(d2l.model, d2l.tokenizer, hyper, base_model=d2l.base_model, encoder_config=d2l.encoder_config,
               autocast=d2l.use_autocast)


def export(d2l: D2L, trainer: Trainer, directory: Path, spec: DataSpec) -> Path:
    d2l.hypernet.eval()
    path = d2l.save_pretrained(directory, extra={"training": {"steps": trainer.step, "config": asdict(trainer.cfg),
                                                              "data": asdict(spec)}})
    d2l.hypernet.train()
    return path


def parse_val(text: str, seed: int, fail, phrasing: str = "third") -> DataSpec:
    """`--val "personal=48,niah=16,facts=48,realdoc=0"` -> the held-out DataSpec (facts: single facts)."""
    counts = {"personal": 0, "niah": 0, "facts": 0, "realdoc": 0}
    for part in filter(None, (x.strip() for x in text.split(","))):
        key, _, value = part.partition("=")
        if key.strip() not in counts or not value.strip().isdigit():
            fail(f"--val takes kind=count pairs of {sorted(counts)}, e.g. 'personal=48,niah=16'; got {part!r}")
        counts[key.strip()] = int(value)
    if not any(counts.values()):
        fail("--val names no held-out documents")
    try:
        return DataSpec(personal=counts["personal"], niah=counts["niah"], realdoc=counts["realdoc"],
                        single_facts=counts["facts"], seed=seed, phrasing=phrasing)
    except ValueError as e:
        fail(f"--val {text!r}: {e}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--base-model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--until", type=int, default=None, help="stop at this step (resume later)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--docs-per-step", type=int, default=4)
    p.add_argument("--qas-per-doc", type=int, default=2)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--personal", type=int, default=2000)
    p.add_argument("--niah", type=int, default=800)
    p.add_argument("--realdoc", type=int, default=400)
    p.add_argument("--single-facts", type=int, default=0)
    p.add_argument("--phrasing", choices=QUESTION_PERSONS, default="third",
                   help="how personal questions name the person: the user, my (first), the first name, or a mix "
                        "(held-out documents of --val-every are phrased the same way)")
    p.add_argument("--facts-only", action="store_true",
                   help="train on the --single-facts samples alone (a first stage: the document path forms "
                        "on short contexts)")
    p.add_argument("--contrast-weight", type=float, default=0.0,
                   help="weight of the own-vs-other-document contrast term (TrainConfig.contrast_weight)")
    p.add_argument("--contrast-margin", type=float, default=1.0)
    p.add_argument("--gain-lr-mult", type=float, default=1.0,
                   help="lr multiplier of the copy/key path gains (TrainConfig.gain_lr_mult)")
    p.add_argument("--max-chunks", type=int, default=8,
                   help="most chunks a training document is split into (TrainConfig.max_chunks; 1-8)")
    p.add_argument("--base-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="frozen base-model weights; auto = the loader's default (fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--init-from", default=None,
                   help="start from this trained checkpoint (directory or shipped name) with a fresh optimizer")
    p.add_argument("--hypernet", default="{}", help="HypernetConfig overrides as JSON, e.g. '{\"rank\": 16}'")
    p.add_argument("--val-every", type=int, default=0,
                   help="held-out loss every N steps (OUT/val.jsonl and the learning curve; 0 = off)")
    p.add_argument("--keep-every", type=int, default=0,
                   help="also keep a checkpoint OUT/step_NNNNN every N steps, to pick from (0 = only OUT/final)")
    p.add_argument("--val", default="personal=48,niah=16,facts=48,realdoc=0",
                   help="held-out documents for --val-every, from the test split (realdoc needs teacher passes)")
    p.add_argument("--samples-only", action="store_true",
                   help="only build OUT/data/train.jsonl (with --val-every, OUT/val_data/test.jsonl too; no "
                        "model, no targets, no training): the targets are computed where the training runs")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:  # a bad flag value: one line naming the field, before anything is built or written
        cfg = TrainConfig(out_dir=a.out, steps=a.steps, lr=a.lr, warmup=min(a.warmup, a.steps - 1), docs_per_step=a.docs_per_step,
                          qas_per_doc=a.qas_per_doc, save_every=a.save_every, seed=a.seed,
                          contrast_weight=a.contrast_weight, contrast_margin=a.contrast_margin,
                          gain_lr_mult=a.gain_lr_mult,
                          max_chunks=a.max_chunks, val_every=a.val_every, keep_every=a.keep_every,
                          extra={"command": "python -m d2l_memory.training.recipe " + " ".join(argv or [])})
        spec = DataSpec(personal=a.personal, niah=a.niah, realdoc=a.realdoc, single_facts=a.single_facts,
                        facts_only=a.facts_only, seed=a.seed, phrasing=a.phrasing)
    except ValueError as e:  # ConfigError is one
        p.error(str(e))
    if a.samples_only:
        out = {"samples": str(write_samples(a.base_model, spec, Path(a.out) / "data"))}
        if a.val_every:  # the held-out documents too (OUT/val_data, where the training run looks for them)
            val_spec = parse_val(a.val, a.seed, p.error, a.phrasing)
            out["val_samples"] = str(write_samples(a.base_model, val_spec, Path(a.out) / "val_data", "test"))
        print(json.dumps(out))
        return
    try:
        overrides = json.loads(a.hypernet)
    except json.JSONDecodeError as e:
        p.error(f"--hypernet must be a JSON object of HypernetConfig fields, e.g. '{{\"rank\": 16}}': {e}")
    if not isinstance(overrides, dict):
        p.error(f"--hypernet must be a JSON object of HypernetConfig fields, got {a.hypernet!r}")
    dtype = None if a.base_dtype == "auto" else getattr(torch, a.base_dtype)
    val_spec = parse_val(a.val, a.seed, p.error, a.phrasing) if a.val_every else None
    path = run(a.out, a.base_model, spec, cfg, until=a.until, hypernet_overrides=overrides, base_dtype=dtype,
               init_from=a.init_from, val_spec=val_spec)
    print(json.dumps({"checkpoint": str(path)}))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
