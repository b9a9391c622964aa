"""Teacher targets for context distillation, computed once and cached on disk.

The teacher is the frozen base model with the document in its prompt (`prompts.context_prompt`). For
every (document, question) pair we store the answer tokens the student must produce and, at each of
them, the teacher's top-k log-probs (digest 4.1: top-16, not renormalised). Answers are either gold
(teacher-forced: exact-answer data such as personal facts) or generated greedily by the teacher itself
with the document in context (self-generated answers, as the reference does for real documents).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..batching import pad_ids
from ..data.types import Sample
from ..prompts import context_prompt
from ..tokens import text_ids

log = logging.getLogger(__name__)


@dataclass
class Target:
    """What the student learns for one question."""

    answer_ids: list[int]  # answer tokens + EOS (what the student is trained to emit)
    topk_ids: torch.Tensor | None  # [len(answer_ids), k] int32, or None (plain cross-entropy only)
    topk_logprobs: torch.Tensor | None  # [len(answer_ids), k] fp16


def _key(sample: Sample, qi: int) -> str:
    return f"{sample.id}#{qi}"


@torch.no_grad()
def generate_targets(d2l, samples: list[Sample], k: int = 16, max_new_tokens: int = 48,
                     batch_size: int = 8) -> dict[str, Target]:
    """Self-generated answers: the teacher answers greedily with the document in its prompt, and the top-k
    log-probs of each generated token come from the same generation pass (no second forward)."""
    tok = d2l.tokenizer
    eos = tok.eos_token_id
    pairs = [(s, qi, qa) for s in samples for qi, qa in enumerate(s.qas)]
    out: dict[str, Target] = {}
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        ids = [d2l.prompt_ids(context_prompt(s.context, qa.question)) for s, _, qa in chunk]
        input_ids, attn = pad_ids(ids, tok.pad_token_id, left=True)
        T = input_ids.shape[1]
        with d2l.autocast():
            gen = d2l.model.generate(input_ids=input_ids.to(d2l.device), attention_mask=attn.to(d2l.device),
                                     max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=tok.pad_token_id, output_scores=True,
                                     return_dict_in_generate=True)
        scores = torch.stack(gen.scores, dim=1).float()  # [b, steps, V] raw logits (greedy, no processors)
        for j, (s, qi, _) in enumerate(chunk):
            new = gen.sequences[j, T:].tolist()
            if eos not in new:
                continue  # unfinished answers are dropped, as the reference drops finish_reason != "stop"
            n = new.index(eos) + 1
            top = torch.log_softmax(scores[j, :n], dim=-1).topk(k, dim=-1)
            out[_key(s, qi)] = Target(new[:n], top.indices.int().cpu(), top.values.half().cpu())
    return out


@torch.no_grad()
def compute_targets(d2l, samples: list[Sample], k: int = 16, batch_size: int = 8, use_teacher: bool = True,
                    answers: dict[str, str] | None = None) -> dict[str, Target]:
    """Teacher-forced top-k log-probs at each answer token (gold answers, or `answers` overrides)."""
    tok = d2l.tokenizer
    eos = tok.eos_token_id
    rows = []
    for s in samples:
        for qi, qa in enumerate(s.qas):
            ans = (answers or {}).get(_key(s, qi), qa.answer)
            ans_ids = text_ids(tok, ans.strip())[:64] + [eos]
            rows.append((_key(s, qi), s, qa, ans_ids))
    targets: dict[str, Target] = {}
    if not use_teacher:
        return {key: Target(ans_ids, None, None) for key, _, _, ans_ids in rows}
    for i in range(0, len(rows), batch_size):
        batch = rows[i:i + batch_size]
        prompts = [d2l.prompt_ids(context_prompt(s.context, qa.question)) for _, s, qa, _ in batch]
        seqs = [p + a for p, (_, _, _, a) in zip(prompts, batch, strict=False)]
        ids, mask = pad_ids(seqs, tok.pad_token_id)
        with d2l.autocast():
            logits = d2l.model(input_ids=ids.to(d2l.device), attention_mask=mask.to(d2l.device)).logits
        for j, (key, _, _, ans_ids) in enumerate(batch):
            start = len(prompts[j]) - 1  # logits at position p predict token p+1
            lp = torch.log_softmax(logits[j, start:start + len(ans_ids)].float(), dim=-1)
            top = lp.topk(k, dim=-1)
            targets[key] = Target(ans_ids, top.indices.int().cpu(), top.values.half().cpu())
    return targets


def save_targets(targets: dict[str, Target], path: str | Path) -> None:
    """One safetensors file (top-k tensors) + a JSON sidecar (answer ids) - no pickles."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, meta = {}, {}
    for key, t in targets.items():
        meta[key] = t.answer_ids
        if t.topk_ids is not None:
            tensors[f"{key}.ids"] = t.topk_ids.contiguous()
            tensors[f"{key}.lp"] = t.topk_logprobs.contiguous()
    if tensors:
        save_file(tensors, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps(meta))


def load_targets(path: str | Path) -> dict[str, Target]:
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    st = path.with_suffix(".safetensors")
    tensors = load_file(str(st)) if st.is_file() else {}
    return {k: Target(v, tensors.get(f"{k}.ids"), tensors.get(f"{k}.lp")) for k, v in meta.items()}
