"""Context encoder: a document -> chat-templated token chunks -> the frozen base model's per-layer activations.

As in the reference (digest 1.1 and 2): the document is a user turn of the model's own chat template with
the generation prompt; long documents are split into even contiguous token chunks, and every chunk is
re-wrapped in the template's affixes so that it looks like a complete user turn. The affixes are derived
from the tokenizer's template (render it around a sentinel and split), not from a per-model table.
Activations: entry l is the residual stream entering decoder layer l, so layer l's features make layer
l's LoRA ("layer to layer").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InputError
from .tokens import text_ids

_SENTINEL = "\u2063D2L_DOCUMENT\u2063"


@dataclass(frozen=True)
class TemplateAffixes:
    prefix: tuple[int, ...]  # token ids before the document (e.g. system turn + "<|im_start|>user\n")
    suffix: tuple[int, ...]  # token ids after it (end of turn + generation prompt)


def template_affixes(tokenizer) -> TemplateAffixes:
    """Chat-template affixes of a user turn, derived by rendering the template around a sentinel."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tokenize=False,
                                             add_generation_prompt=True)
        if _SENTINEL in text:
            pre, suf = text.split(_SENTINEL, 1)
            return TemplateAffixes(tuple(text_ids(tokenizer, pre)), tuple(text_ids(tokenizer, suf)))
    # No chat template (a base model): BOS before the document, a newline after it.
    bos = (tokenizer.bos_token_id,) if tokenizer.bos_token_id is not None else ()
    return TemplateAffixes(bos, tuple(text_ids(tokenizer, "\n")))


def check_text(text) -> str:
    """Validate one document: a non-empty str, or UTF-8 bytes."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"document is not valid UTF-8 (byte {e.start}); decode it first or pass str") from e
    if not isinstance(text, str):
        raise InputError(f"document must be str or UTF-8 bytes, got {type(text).__name__}")
    if not text.strip():
        raise InputError("document is empty (or only whitespace); nothing to internalize")
    return text


def split_even(ids: list[int], chunk_tokens: int, n_chunks: int | None = None) -> list[list[int]]:
    """Split token ids into n = ceil(len / chunk_tokens) (or `n_chunks`) even contiguous chunks."""
    n = n_chunks or max(1, math.ceil(len(ids) / chunk_tokens))
    n = max(1, min(n, len(ids)))
    size = math.ceil(len(ids) / n)
    return [ids[i:i + size] for i in range(0, len(ids), size)]


class ContextEncoder:
    """Tokenizes and chunks documents, and returns the frozen base model's per-layer activations."""

    def __init__(self, model, tokenizer, num_layers: int):
        self.model = model
        self.tokenizer = tokenizer
        self.num_layers = num_layers
        self.affixes = template_affixes(tokenizer)

    def tokenize(self, text: str) -> list[int]:
        return text_ids(self.tokenizer, check_text(text))

    def chunk(self, ids: list[int], chunk_tokens: int, n_chunks: int | None = None) -> list[list[int]]:
        """Chunks of document ids, each wrapped in the template affixes."""
        if not ids:
            raise InputError("document tokenizes to nothing; nothing to internalize")
        pre, suf = list(self.affixes.prefix), list(self.affixes.suffix)
        return [pre + c + suf for c in split_even(ids, chunk_tokens, n_chunks)]

    @torch.no_grad()
    def activations(self, chunks: list[list[int]], input_modules: dict[str, list] | None = None) -> tuple:
        """Per-layer activations of a batch of chunks.

        Returns feats [n, L, T, D] (the residual stream entering each layer) and mask [n, T] that is True on
        the document's own tokens; with `input_modules` ({name: one module per layer}, e.g. every down_proj)
        also {name: their inputs [n, L, T, d_in]}, recorded by forward pre-hooks during the same pass.

        The template affixes go through the base model (they give the document its context) but are masked
        out for the hypernetwork: they are the same for every document (SmolLM2's default system turn alone
        is ~20 tokens), and with them in view the Perceiver's summaries of different documents differed by
        0.5% (measured), so adapters were nearly document-independent. A deviation from the reference,
        which attends to every token.
        """
        device = next(self.model.parameters()).device
        T = max(len(c) for c in chunks)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(chunks), T), pad, dtype=torch.long, device=device)
        mask = torch.zeros((len(chunks), T), dtype=torch.bool, device=device)
        doc = torch.zeros_like(mask)
        pre, suf = len(self.affixes.prefix), len(self.affixes.suffix)
        for i, c in enumerate(chunks):  # right padding: real tokens keep positions 0..len-1
            ids[i, : len(c)] = torch.tensor(c, device=device)
            mask[i, : len(c)] = True
            doc[i, pre: len(c) - suf] = True
        body = getattr(self.model, self.model.base_model_prefix, self.model)
        seen: dict[str, list[torch.Tensor]] = {name: [] for name in input_modules or {}}
        hooks = [m.register_forward_pre_hook(lambda _m, args, rec=seen[name]: rec.append(args[0]))
                 for name, mods in (input_modules or {}).items() for m in mods]
        try:
            out = body(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True, use_cache=False)
        finally:
            for h in hooks:
                h.remove()
        hs = out.hidden_states[: self.num_layers]  # L x [n, T, D]: entering layer 0 .. L-1
        feats = torch.stack(hs, dim=1)  # [n, L, T, D]
        if input_modules is None:
            return feats, doc  # [n, L, T, D], [n, T]
        for name, rec in seen.items():
            if len(rec) != len(input_modules[name]):
                raise RuntimeError(f"{name}: expected one input per module ({len(input_modules[name])}), "
                                   f"recorded {len(rec)}")
        return feats, doc, {name: torch.stack(rec, dim=1) for name, rec in seen.items()}  # [n, L, T, d_in]
