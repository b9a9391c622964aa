"""Meta-training by context distillation (digest section 4).

Per step: a few documents, each split into a random number of chunks (1-8, as the reference does so that
long documents work at inference), go through the frozen encoder and the hypernetwork; each document's
adapter is applied to its questions (no document in the prompt), and the student is trained to produce
the answer tokens: cross-entropy on the answer, plus token-level cross-entropy against the teacher's
top-k distribution when teacher targets exist. Losses are averaged per question, then per document
(the reference's per-context average). An L1 penalty on the generated A/B keeps adapters small.

Every source of randomness is a function of (seed, step), so resuming from a saved state reproduces
the uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..batching import pad_ids
from ..config import ConfigError
from ..data.types import Sample
from ..lora import apply_lora, pad_rank
from . import state as train_state
from .teacher import Target

log = logging.getLogger(__name__)

# Reference chunk-count distribution: 1 chunk half the time, 2 at 1/8, 3..8 at 1/16 each.
CHUNK_PROBS = {1: 0.5, 2: 0.125, 3: 0.0625, 4: 0.0625, 5: 0.0625, 6: 0.0625, 7: 0.0625, 8: 0.0625}
NO_DECAY = ("scaler", "gain", "bias", "layernorm", "rmsnorm", "latents_q", "ln_in", "ln_out", "b1", "b2")


@dataclass
class TrainConfig:
    out_dir: str = "runs/d2l"
    steps: int = 1000
    docs_per_step: int = 4  # documents per step and process
    qas_per_doc: int = 2  # questions per document per step
    lr: float = 3e-4
    min_lr: float = 1e-6
    warmup: int = 30
    weight_decay: float = 0.01
    gain_lr_mult: float = 1.0  # lr multiplier of the copy/key path gains (scalars from 0 that Adam moves slowly)
    grad_clip: float = 1.0
    ce_weight: float = 1.0  # cross-entropy on the answer tokens
    kl_weight: float = 1.0  # cross-entropy against the teacher's top-k (when targets carry it)
    l1_coef: float = 0.1  # L1 on the generated A and B
    # Document-contrast term (not in the reference): each question is also answered with the adapter of
    # another document of the batch, and relu(margin - (loss_swapped - loss_own)) is added, weighted.
    # Anything document-independent (answer format) cancels in the difference, so this term's gradient
    # is all about using the document; 0 turns it off (and saves the extra student pass).
    contrast_weight: float = 0.0
    contrast_margin: float = 1.0  # nats per answer token
    max_chunks: int = 8
    min_chunk_tokens: int = 25
    save_every: int = 50
    log_every: int = 10
    val_every: int = 0  # held-out loss every this many steps (0: never; needs the Trainer's `val` data)
    keep_every: int = 0  # the recipe keeps a loadable checkpoint `out/step_NNNNN` every this many steps (0: never)
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes stored with the run (data seeds, command)

    def __post_init__(self) -> None:
        for name in ("steps", "docs_per_step", "qas_per_doc", "save_every", "log_every", "max_chunks",
                     "min_chunk_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"`{name}` must be a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.val_every, int) or self.val_every < 0:
            raise ConfigError(f"`val_every` must be an int >= 0 (0 = no held-out loss), got {self.val_every!r}")
        if not isinstance(self.keep_every, int) or self.keep_every < 0:
            raise ConfigError(f"`keep_every` must be an int >= 0 (0 = keep only `final`), got {self.keep_every!r}")
        if not self.gain_lr_mult > 0:
            raise ConfigError(f"`gain_lr_mult` must be > 0, got {self.gain_lr_mult!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ConfigError(f"`lr` must be > 0 and `min_lr` in [0, lr]; got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup < 0 or self.warmup >= self.steps:
            raise ConfigError(f"`warmup` must be in [0, steps), got {self.warmup}")
        if self.ce_weight < 0 or self.kl_weight < 0 or self.ce_weight + self.kl_weight == 0:
            raise ConfigError("`ce_weight` and `kl_weight` must be >= 0 and not both 0")
        if self.contrast_weight < 0 or self.contrast_margin < 0:
            raise ConfigError("`contrast_weight` and `contrast_margin` must be >= 0")
        if self.contrast_weight > 0 and self.docs_per_step < 2:
            raise ConfigError("`contrast_weight` > 0 needs `docs_per_step` >= 2 (a question is contrasted with "
                              "another document's adapter from the same step)")

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine to min_lr."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        p = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(1.0, p)))


def param_groups(model: torch.nn.Module, weight_decay: float, gain_lr_mult: float = 1.0) -> list[dict]:
    """The reference's weight-decay exclusions: scalers, biases, norms and latents are not decayed. With
    `gain_lr_mult` != 1 the copy/key path gains get their own group with that lr multiplier."""
    decay, no_decay, gains = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if gain_lr_mult != 1.0 and name.startswith(("copy_gain.", "copy_key_gain.")):
            gains.append(p)
        else:
            (no_decay if any(k in name.lower() for k in NO_DECAY) or p.dim() < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if gains:
        groups.append({"params": gains, "weight_decay": 0.0, "lr_mult": gain_lr_mult})
    return groups


def sample_n_chunks(rng: random.Random, n_tokens: int, max_chunks: int, min_chunk_tokens: int) -> int:
    allowed = {k: p for k, p in CHUNK_PROBS.items() if k <= max_chunks and k <= max(1, n_tokens // min_chunk_tokens)}
    ks, ps = zip(*allowed.items(), strict=False)
    return rng.choices(ks, weights=ps)[0]


def answer_losses(logits: torch.Tensor, targets: list[Target], ce_weight: float, kl_weight: float) -> torch.Tensor:
    """Per row, the mean over its answer tokens of ce_weight * CE(answer) + kl_weight * CE(teacher top-k ->
    student).

    logits [n_ans, V] are the student's logits predicting every answer token of the rows, row after row
    (len(targets[i].answer_ids) each) -> [n_rows]. One log-softmax and one gather for the whole batch; rows
    whose target has no top-k (exact answers) get the cross-entropy term alone.
    """
    dev = logits.device
    lens = torch.tensor([len(t.answer_ids) for t in targets], device=dev)
    logp = torch.log_softmax(logits.float(), dim=-1)  # [n_ans, V]
    ans = torch.tensor([i for t in targets for i in t.answer_ids], device=dev)
    loss = ce_weight * F.nll_loss(logp, ans, reduction="none")  # [n_ans]
    if kl_weight > 0 and any(t.topk_ids is not None for t in targets):
        k = max(t.topk_ids.shape[1] for t in targets if t.topk_ids is not None)
        ids, p_t = [], []  # [n_ans, k]; tokens without a teacher distribution get p = 0
        for t in targets:
            n = len(t.answer_ids)
            if t.topk_ids is None:
                ids.append(torch.zeros(n, k, dtype=torch.long))
                p_t.append(torch.zeros(n, k))
            else:  # not renormalised (reference)
                pad = (0, k - t.topk_ids.shape[1])
                ids.append(F.pad(t.topk_ids.long(), pad))
                p_t.append(F.pad(t.topk_logprobs.float().exp(), pad))
        ids, p_t = torch.cat(ids).to(dev), torch.cat(p_t).to(dev)
        loss = loss - kl_weight * (p_t * logp.gather(-1, ids)).sum(-1)
    row = torch.repeat_interleave(torch.arange(len(targets), device=dev), lens)  # [n_ans]: each token's row
    return torch.zeros(len(targets), device=dev).index_add(0, row, loss) / lens


def student_answer_losses(d2l, hidden: torch.Tensor, prompt_lens: list[int], targets: list[Target],
                          ce_weight: float, kl_weight: float) -> torch.Tensor:
    """hidden [rows, T, D], the student's last hidden states over `prompt + answer` per row (right-padded)
    -> per-row answer loss [rows] (`answer_losses`).

    The states that predict each answer token are taken with one index_select and go through the LM head in
    one call (the head is the largest matrix; per row it was re-cast to bf16 under autocast each time, and
    each row's slice cost a full-size zero gradient in backward).
    """
    T = hidden.shape[1]
    pos = [i * T + p - 1 + j for i, (p, t) in enumerate(zip(prompt_lens, targets, strict=True))
           for j in range(len(t.answer_ids))]
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, torch.tensor(pos, device=hidden.device))
    return answer_losses(d2l.model.lm_head(h), targets, ce_weight, kl_weight)


def target_questions(sample: Sample, targets: dict[str, Target]) -> list[int]:
    """Indices of the sample's questions that have a target (a teacher answer that never finished has none)."""
    return [i for i in range(len(sample.qas)) if f"{sample.id}#{i}" in targets]


def batch_loss(d2l, model, core, batch, targets: dict[str, Target], cfg: TrainConfig) -> tuple[torch.Tensor, dict]:
    """The training objective on one batch of (sample, question indices, n_chunks or None for the inference
    chunking): (loss, info with "task", "l1" and, with cfg.contrast_weight > 0, "gap" and "contrast").

    `model` runs the hypernetwork (a DDP wrapper while training), `core` is the unwrapped module (its `combine`).
    """
    chunks = [d2l.doc_chunks(s.context, n_chunks=k) for s, _, k in batch]
    flat = [c for doc in chunks for c in doc]
    with d2l.autocast():
        A, B = model(*d2l.encode(flat))  # per chunk [n, L, r, d]
    docA, docB = core.combine(A, B, [len(c) for c in chunks])  # per doc [L, (K+1) r, d]
    l1 = torch.stack([torch.cat([a[t].abs().flatten() for t in a]).mean() + torch.cat(
        [b[t].abs().flatten() for t in b]).mean() for a, b in zip(docA, docB, strict=False)]).mean()

    rows, row_doc, row_target = [], [], []
    for di, (s, qs, _) in enumerate(batch):
        for qi in qs:
            tgt = targets[f"{s.id}#{qi}"]
            prompt = d2l.prompt_ids(s.qas[qi].question)
            rows.append((prompt, tgt.answer_ids))
            row_doc.append(di)
            row_target.append(tgt)
    R = max(a[d2l.config.targets[0]].shape[1] for a in docA)
    # Contrast partner of each row: the next document of the batch of the same kind and chunk count, so
    # that neither answer format (kinds differ) nor adapter size (deltas of K chunks add up) decides
    # which adapter fits better; rows without a partner get no contrast term.
    partner = [_partner(batch, d) for d in row_doc] if cfg.contrast_weight > 0 else []
    crows = [i for i, p in enumerate(partner) if p is not None]
    contrast = bool(crows)
    adapter_of = row_doc + [partner[i] for i in crows]  # own, then swapped
    rowA = {t: pad_rank([docA[i][t] for i in adapter_of], R) for t in d2l.config.targets}
    rowB = {t: pad_rank([docB[i][t] for i in adapter_of], R) for t in d2l.config.targets}
    rows_in = rows + [rows[i] for i in crows]
    target_in = row_target + [row_target[i] for i in crows]
    ids, attn = pad_ids([p + a for p, a in rows_in], d2l.tokenizer.pad_token_id)
    body = getattr(d2l.model, d2l.model.base_model_prefix)
    with apply_lora(d2l.model, d2l.module_paths, rowA, rowB, d2l.config.alpha), d2l.autocast():
        hidden = body(input_ids=ids.to(d2l.device), attention_mask=attn.to(d2l.device), use_cache=False
                      ).last_hidden_state  # [rows, T, D]
        per_row = student_answer_losses(d2l, hidden, [len(p) for p, _ in rows_in], target_in, cfg.ce_weight,
                                        cfg.kl_weight)  # [rows]
    info = {}
    if contrast:
        per_row, swapped = per_row[: len(rows)], per_row[len(rows):]
        gap = swapped - per_row[crows]  # > 0: the own document's adapter fits the answer better
        contrast_loss = torch.relu(cfg.contrast_margin - gap).mean()
        info = {"gap": gap.mean().item(), "contrast": contrast_loss.item()}
    doc_ids = torch.tensor(row_doc, device=per_row.device)
    per_doc = torch.zeros(len(batch), device=per_row.device).index_add(0, doc_ids, per_row)
    per_doc = per_doc / torch.bincount(doc_ids, minlength=len(batch)).clamp(min=1)
    task = per_doc.mean()
    loss = task + cfg.l1_coef * l1
    if contrast:
        loss = loss + cfg.contrast_weight * contrast_loss
    return loss, {"loss": loss.item(), "task": task.item(), "l1": l1.item(), **info}


def _partner(batch, d: int) -> int | None:
    s, _, k = batch[d]
    for j in range(1, len(batch)):
        o, _, ko = batch[(d + j) % len(batch)]
        if o.kind == s.kind and ko == k and o.context != s.context:
            return (d + j) % len(batch)
    return None


class Trainer:
    """Trains `d2l.hypernet` on samples with their per-question targets (`targets[f"{id}#{qi}"]`).

    `val` = (held-out samples, their targets) is scored every `config.val_every` steps (`validate.heldout_loss`)
    into `val_history` and `val.jsonl`, and drawn on the learning curve.
    """

    def __init__(self, d2l, samples: list[Sample], targets: dict[str, Target], config: TrainConfig,
                 accelerator=None, val: tuple[list[Sample], dict[str, Target]] | None = None):
        if not samples:
            raise ConfigError("no training samples")
        self.d2l, self.samples, self.targets, self.cfg = d2l, samples, targets, config
        # Questions without a target (e.g. a teacher answer that never finished) are skipped; a document
        # with none left is dropped.
        self.available = {s.id: target_questions(s, targets) for s in samples}
        self.samples = samples = [s for s in samples if self.available[s.id]]
        if not samples:
            raise ConfigError("no training sample has targets; compute them first (training.teacher)")
        from accelerate import Accelerator

        self.acc = accelerator or Accelerator(cpu=d2l.device.type == "cpu")
        self.d2l.hypernet.train()
        groups = param_groups(d2l.hypernet, config.weight_decay, config.gain_lr_mult)
        self.opt = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
        self.model, self.opt = self.acc.prepare(self.d2l.hypernet, self.opt)
        self.step = 0
        self.history: list[dict] = []
        self.val = val
        self.val_history: list[dict] = []
        self.out = Path(config.out_dir)

    # ---- data -------------------------------------------------------------------------------------
    def batch_for(self, step: int) -> list[tuple[Sample, list[int], int]]:
        """(sample, question indices, n_chunks) for this process at `step`; a pure function of (seed, step)."""
        n, world, rank = len(self.samples), self.acc.num_processes, self.acc.process_index
        per = self.cfg.docs_per_step
        out = []
        for j in range(per):
            pos = (step * world + rank) * per + j
            epoch, idx = divmod(pos, n)
            order = list(range(n))
            random.Random(f"{self.cfg.seed}-epoch-{epoch}").shuffle(order)
            s = self.samples[order[idx]]
            rng = random.Random(f"{self.cfg.seed}-{step}-{rank}-{j}")
            avail = self.available[s.id]
            qs = rng.sample(avail, min(self.cfg.qas_per_doc, len(avail)))
            n_tok = len(self.d2l.encoder.tokenize(s.context))
            out.append((s, qs, sample_n_chunks(rng, n_tok, self.cfg.max_chunks, self.cfg.min_chunk_tokens)))
        return out

    # ---- one step ---------------------------------------------------------------------------------
    def loss_for(self, batch) -> tuple[torch.Tensor, dict]:
        return batch_loss(self.d2l, self.model, self.acc.unwrap_model(self.model), batch, self.targets, self.cfg)

    def train_step(self) -> dict:
        t0 = time.time()
        lr = self.cfg.lr_at(self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        self.opt.zero_grad(set_to_none=True)
        loss, info = self.loss_for(self.batch_for(self.step))
        self.acc.backward(loss)
        gn = self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.step += 1
        info.update(step=self.step, lr=lr, grad_norm=float(gn), sec=time.time() - t0)
        return info

    # ---- loop, checkpoints ------------------------------------------------------------------------
    @property
    def resume_dir(self) -> Path:
        return self.out / "resume"

    def save(self) -> None:
        if not self.acc.is_main_process:
            return
        core = self.acc.unwrap_model(self.model)
        train_state.save_state(self.resume_dir, core, self.opt,
                               {"step": self.step, "config": asdict(self.cfg), "history": self.history,
                                "val_history": self.val_history})
        self.plot()

    def maybe_resume(self) -> bool:
        if not (self.resume_dir / "state.json").is_file():
            return False
        info = train_state.load_state(self.resume_dir, self.acc.unwrap_model(self.model), self.opt)
        self.step, self.history = info["step"], info.get("history", [])
        self.val_history = info.get("val_history", [])
        log.info("resumed from %s at step %d", self.resume_dir, self.step)
        return True

    def plot(self) -> Path | None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        if not self.history:
            return None
        steps = [h["step"] for h in self.history]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, [h["task"] for h in self.history], label="task loss", lw=0.8)
        k = 20
        if len(steps) > k:
            sm = [sum(h["task"] for h in self.history[i - k:i]) / k for i in range(k, len(steps) + 1)]
            ax.plot(steps[k - 1:], sm, label=f"task loss ({k}-step mean)", lw=1.5)
        for g in sorted({g for v in self.val_history for g in v["val"]}):
            pts = [(v["step"], v["val"][g]["own"]) for v in self.val_history if g in v["val"]]
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, lw=1, label=f"held-out {g}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.out / "learning_curve.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def train(self, on_step: Callable[[dict], None] | None = None, until: int | None = None) -> list[dict]:
        """Run to `cfg.steps` (or `until`), saving every `save_every` steps; returns the step log."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.acc.is_main_process:
            (self.out / "train_config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        end = min(self.cfg.steps, until or self.cfg.steps)
        if self.val and self.cfg.val_every and not self.val_history:
            self.validate()  # the starting point of the held-out curve
        with open(self.out / "log.jsonl", "a") as logf:
            while self.step < end:
                info = self.train_step()
                self.history.append({k: info[k] for k in ("step", "loss", "task", "l1", "lr", "grad_norm", "sec",
                                                          "gap") if k in info})
                if self.acc.is_main_process:
                    logf.write(json.dumps(self.history[-1]) + "\n")
                    logf.flush()
                if on_step:
                    on_step(info)
                if self.step % self.cfg.log_every == 0:
                    recent = self.history[-self.cfg.log_every:]
                    log.info("step %d loss %.4f task %.4f %.2fs/step", self.step, info["loss"],
                             sum(h["task"] for h in recent) / len(recent), sum(h["sec"] for h in recent) / len(recent))
                if self.val and self.cfg.val_every and self.step % self.cfg.val_every == 0:
                    self.validate()
                if self.step % self.cfg.save_every == 0 or self.step == end:
                    self.save()
        return self.history

    def validate(self) -> dict | None:
        """Held-out loss and document gap per group now (main process only); appended to `val_history`."""
        if not self.val or not self.acc.is_main_process:
            return None
        from .validate import heldout_loss

        t0 = time.time()
        entry = {"step": self.step, "val": heldout_loss(self.d2l, *self.val), "sec": time.time() - t0}
        self.val_history.append(entry)
        with open(self.out / "val.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        log.info("step %d held-out %s (%.0fs)", self.step, ", ".join(
            f"{g} {v['own']:.3f}" + ("" if v["gap"] is None else f" gap {v['gap']:+.2f}")
            for g, v in entry["val"].items()), entry["sec"])
        return entry
