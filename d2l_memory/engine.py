"""The public engine: `D2L` internalizes text into adapters and generates with them.

    d2l = D2L.from_pretrained("smollm2-135m")          # shipped checkpoint + its base model
    ad = d2l.internalize("Alice lives in Lisbon.")      # one forward pass -> Adapter
    d2l.generate("Where does Alice live?", adapters=ad)  # no document in the prompt
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .adapter import Adapter
from .batching import pad_ids
from .config import EncoderConfig, HypernetConfig
from .encoder import ContextEncoder, check_text
from .errors import CheckpointError, InputError
from .hypernet import HyperLoRA
from .lora import apply_lora, find_target_modules, find_target_paths, pad_rank
from .models import DEFAULT_MODEL, load_base_model, model_fingerprint
from .tokens import count_tokens, text_ids

log = logging.getLogger(__name__)

Messages = list[dict]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


def _cpu_bf16_ok() -> bool:
    try:
        a = torch.ones(2, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return (a @ a).dtype == torch.bfloat16
    except Exception:  # noqa: BLE001
        return False


class D2L:
    """A frozen base causal LM + a D2L hypernetwork that writes LoRA adapters for it."""

    def __init__(self, model, tokenizer, hypernet: HyperLoRA, *, base_model: str = DEFAULT_MODEL,
                 encoder_config: EncoderConfig | None = None, hypernet_sha: str = "untrained",
                 autocast: bool | None = None):
        self.model, self.tokenizer, self.hypernet = model, tokenizer, hypernet
        self.config: HypernetConfig = hypernet.cfg
        self.base_model = base_model
        self.encoder_config = encoder_config or EncoderConfig()
        self.hypernet_sha = hypernet_sha
        self.module_paths = find_target_paths(model, self.config.targets)
        self.encoder = ContextEncoder(model, tokenizer, self.config.num_layers)
        # copy_keys: the copy targets' per-layer modules, whose inputs the encoder records to key A
        self.key_modules = find_target_modules(model, hypernet.copy_targets) if self.config.copy_keys else None
        self.device = next(model.parameters()).device
        # bf16 autocast by default: on CPU ~1.7-2x faster here, on CUDA the base model is bf16 and the
        # hypernetwork fp32 (tensor cores, and the trainer's measured path). fp32 stays exact with autocast=False.
        if autocast is None:
            autocast = self.device.type == "cuda" or (self.device.type == "cpu" and _cpu_bf16_ok())
        self.use_autocast = autocast
        self.hypernet.to(self.device)

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_base_model(cls, base_model: str = DEFAULT_MODEL, *, target_modules: Sequence[str] = ("down_proj",),
                        device=None, dtype=None, encoder_config: EncoderConfig | None = None,
                        autocast: bool | None = None, seed: int | None = None, model=None, tokenizer=None,
                        **hypernet_overrides) -> D2L:
        """A fresh (untrained) hypernetwork for any HF causal LM."""
        if model is None:
            model, tokenizer = load_base_model(base_model, device=device, dtype=dtype)
        cfg = HypernetConfig.for_model(model, target_modules, **hypernet_overrides)
        if seed is not None:
            torch.manual_seed(seed)
        return cls(model, tokenizer, HyperLoRA(cfg), base_model=base_model, encoder_config=encoder_config,
                   autocast=autocast)

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path = DEFAULT_MODEL, *, base_model: str | None = None,
                        device=None, dtype=None, autocast: bool | None = None, model=None, tokenizer=None) -> D2L:
        """Load a hypernetwork checkpoint (a directory or a shipped name) and its base model.

        `base_model` overrides the model named in the checkpoint (e.g. a local copy); it must have the same
        architecture, or a CheckpointError says which field differs.
        """
        directory = ckpt.resolve_checkpoint(checkpoint)
        cfg = ckpt.read_config(directory)
        try:
            hcfg = HypernetConfig.from_dict(cfg["hypernet"])
            ecfg = EncoderConfig(**cfg.get("encoder", {}))
            base_name = base_model or cfg["base_model"]["name"]
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{directory / ckpt.CONFIG_NAME} lacks a required field: {e}") from e
        state = ckpt.load_state(directory, cfg)
        if model is None:
            model, tokenizer = load_base_model(base_name, device=device, dtype=dtype)
        want, got = cfg["base_model"].get("fingerprint", {}), model_fingerprint(model)
        diff = {k: (want[k], got.get(k)) for k in want if want[k] != got.get(k)}
        if diff:
            raise CheckpointError(f"checkpoint {directory} was trained for base model {cfg['base_model']['name']!r}; "
                                  f"{base_name!r} differs in {diff} (checkpoint, given). Use the matching base model "
                                  "or train a hypernetwork for this one")
        hyper = HyperLoRA(hcfg)
        missing, unexpected = hyper.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"checkpoint {directory} does not match the hypernetwork config: missing "
                                  f"{missing[:5]}, unexpected {unexpected[:5]}")
        return cls(model, tokenizer, hyper, base_model=base_name, encoder_config=ecfg,
                   hypernet_sha=ckpt.checkpoint_sha(cfg), autocast=autocast)

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = torch.bfloat16,
                        extra: dict | None = None) -> Path:
        cfg = {"format": "d2l-memory/hypernet", "version": 1, "hypernet": self.config.to_dict(),
               "encoder": vars(self.encoder_config),
               "base_model": {"name": self.base_model, "fingerprint": model_fingerprint(self.model)},
               **(extra or {})}
        return ckpt.save_checkpoint(directory, self.hypernet.state_dict(), cfg, dtype=dtype)

    # ---- helpers --------------------------------------------------------------------------------
    def autocast(self):
        if self.use_autocast:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def doc_chunks(self, text: str, chunk_tokens: int | None = None, n_chunks: int | None = None) -> list[list[int]]:
        """A document's template-wrapped token chunks."""
        chunks = self.encoder.chunk(self.encoder.tokenize(text), chunk_tokens or self.encoder_config.chunk_tokens,
                                    n_chunks)
        if len(chunks) > self.encoder_config.max_chunks:
            raise InputError(f"document needs {len(chunks)} chunks, more than encoder max_chunks="
                             f"{self.encoder_config.max_chunks}; raise max_chunks or split the document")
        return chunks

    def encode(self, chunks: list[list[int]]) -> tuple:
        """The hypernetwork's inputs for a batch of chunks: (feats, mask) or, with copy_keys, (feats, mask,
        inputs). Call under `autocast()`."""
        return self.encoder.activations(chunks, self.key_modules)

    def chunk_loras(self, chunks: list[list[int]]) -> tuple[dict, dict]:
        """Encoder + hypernetwork over chunks in micro-batches -> A[t] [n, L, r, d_in], B[t] [n, L, r, d_out].

        Differentiable w.r.t. the hypernetwork (the base model runs without grad).
        """
        outs = []
        bs = self.encoder_config.chunk_batch_size
        for i in range(0, len(chunks), bs):
            with self.autocast():
                outs.append(self.hypernet(*self.encode(chunks[i:i + bs])))
        A = {t: torch.cat([o[0][t] for o in outs]) for t in self.config.targets}
        B = {t: torch.cat([o[1][t] for o in outs]) for t in self.config.targets}
        return A, B

    def doc_loras(self, chunks_per_doc: list[list[list[int]]]) -> tuple[list[dict], list[dict]]:
        """Per document: rank-concatenated chunk LoRAs plus the bias block, [L, (K+1)*r, d]."""
        flat = [c for doc in chunks_per_doc for c in doc]
        A, B = self.chunk_loras(flat)
        return self.hypernet.combine(A, B, [len(doc) for doc in chunks_per_doc])

    def _adapter(self, A: dict, B: dict, dtype: torch.dtype) -> Adapter:
        return Adapter(A={t: a.detach().to(dtype) for t, a in A.items()},
                       B={t: b.detach().to(dtype) for t, b in B.items()}, alpha=float(self.config.alpha),
                       module_paths=self.module_paths, base_model=self.base_model, hypernet_sha=self.hypernet_sha)

    @torch.no_grad()
    def calibrate(self, texts: Sequence[str], max_tokens: int = 256) -> None:
        """Fit the hypernetwork's per-layer feature standardisation on sample documents (before training)."""
        chunks = [self.doc_chunks(t)[0][: max_tokens] for t in texts]
        bs = self.encoder_config.chunk_batch_size
        feats, masks = [], []
        for i in range(0, len(chunks), bs):
            with self.autocast():
                f, m = self.encoder.activations(chunks[i:i + bs])
            T = max(len(c) for c in chunks)
            feats.append(torch.nn.functional.pad(f.float(), (0, 0, 0, T - f.shape[2])))
            masks.append(torch.nn.functional.pad(m, (0, T - m.shape[1])))
        self.hypernet.calibrate(torch.cat(feats), torch.cat(masks))

    # ---- public API -----------------------------------------------------------------------------
    @torch.no_grad()
    def internalize(self, text: str | bytes | Sequence[str], *, chunk_tokens: int | None = None,
                    dtype: torch.dtype = torch.float32) -> Adapter | list[Adapter]:
        """Turn a document (or a list of documents, batched) into LoRA adapters in one forward pass each.

        Documents longer than `chunk_tokens` are split into even chunks whose adapters are rank-concatenated.
        """
        single = isinstance(text, (str, bytes, bytearray))
        if not single and not isinstance(text, Sequence):
            raise InputError(f"internalize takes a str, UTF-8 bytes or a list of them, got {type(text).__name__}")
        docs = [text] if single else list(text)
        if not docs:
            raise InputError("internalize needs at least one document")
        chunks = [self.doc_chunks(check_text(d), chunk_tokens) for d in docs]
        was_training = self.hypernet.training
        self.hypernet.eval()
        try:
            As, Bs = self.doc_loras(chunks)
        finally:
            self.hypernet.train(was_training)
        adapters = [self._adapter(a, b, dtype) for a, b in zip(As, Bs, strict=False)]
        for ad, c in zip(adapters, chunks, strict=False):
            ad.meta.update(n_chunks=len(c), n_tokens=sum(len(x) for x in c))
        return adapters[0] if single else adapters

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text (no special tokens, no chat template): for budgets and haystack lengths."""
        return count_tokens(self.tokenizer, text)

    @property
    def context_window(self) -> int:
        """The base model's context length (``max_position_embeddings``; 2048 when its config has none)."""
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        return int(getattr(cfg, "max_position_embeddings", None) or 2048)

    def prompt_ids(self, prompt: str | Messages) -> list[int]:
        """Token ids of a prompt (a user message string, or chat messages) with the generation prompt."""
        if isinstance(prompt, str):
            if not prompt.strip():
                raise InputError("prompt is empty")
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
            messages = prompt
        else:
            raise InputError("a prompt must be a non-empty str or a list of {'role', 'content'} dicts")
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return text_ids(self.tokenizer, text)
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return self.tokenizer(text)["input_ids"]

    def batch_lora(self, adapters: Sequence[Adapter | None]) -> tuple[dict, dict] | None:
        """Stack per-row adapters (None = base model) into padded [b, L, R, d] tensors."""
        real = [a for a in adapters if a is not None]
        if not real:
            return None
        for a in real:
            if set(a.targets) - set(self.module_paths):
                raise InputError(f"adapter targets {a.targets} are not all in this engine's {list(self.module_paths)}")
        R = max(a.rank for a in real)
        ref = real[0]
        A, B = {}, {}
        for t in ref.targets:
            zero_a = ref.A[t].new_zeros(ref.A[t].shape[0], 0, ref.A[t].shape[-1])
            zero_b = ref.B[t].new_zeros(ref.B[t].shape[0], 0, ref.B[t].shape[-1])
            A[t] = pad_rank([a.A[t] if a is not None else zero_a for a in adapters], R).to(self.device)
            B[t] = pad_rank([a.B[t] if a is not None else zero_b for a in adapters], R).to(self.device)
        return A, B

    def lora_context(self, adapters: Sequence[Adapter | None]):
        """Context manager applying one adapter (or None) per batch row inside the base model."""
        batch = self.batch_lora(adapters)
        if batch is None:
            return contextlib.nullcontext()
        alphas = {a.alpha for a in adapters if a is not None}
        if len(alphas) > 1:
            raise InputError(f"adapters in one batch must share alpha, got {sorted(alphas)}")
        return apply_lora(self.model, self.module_paths, batch[0], batch[1], alphas.pop())

    @torch.no_grad()
    def complete(self, prompts: str | Messages | Sequence[str | Messages],
                 adapters: Adapter | None | Sequence[Adapter | None] = None, *, max_new_tokens: int = 64,
                 temperature: float = 0.0, stop: Sequence[str] | None = None, **generate_kwargs) -> list[Completion]:
        """Generate for a batch of prompts, each with its own adapter (or none). Greedy when temperature == 0."""
        single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
        plist = [prompts] if single else list(prompts)
        if not plist:
            raise InputError("no prompts given")
        if adapters is None or isinstance(adapters, Adapter):
            alist = [adapters] * len(plist)
        else:
            alist = list(adapters)
            if len(alist) != len(plist):
                raise InputError(f"got {len(alist)} adapters for {len(plist)} prompts; pass one per prompt (or None)")
        ids = [self.prompt_ids(p) for p in plist]
        pad = self.tokenizer.pad_token_id
        input_ids, attn = pad_ids(ids, pad, left=True)
        T = input_ids.shape[1]
        kw = dict(max_new_tokens=max_new_tokens, pad_token_id=pad)
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=temperature)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kw.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        kw.update(generate_kwargs)
        with self.lora_context(alist), self.autocast():
            out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attn.to(self.device), **kw)
        results = []
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        for i, x in enumerate(ids):
            new = out[i, T:].tolist()
            while new and new[-1] == pad and pad not in eos:
                new.pop()
            finish = "stop" if (any(t in eos for t in new) or len(new) < max_new_tokens) else "length"
            cut = next((j for j, t in enumerate(new) if t in eos), len(new))
            text = self.tokenizer.decode(new[:cut], skip_special_tokens=True)
            if stop:
                for s in stop:
                    if s and s in text:
                        text, finish = text[: text.index(s)], "stop"
            results.append(Completion(text=text.strip(), prompt_tokens=len(x), completion_tokens=cut,
                                      finish_reason=finish))
        return results

    def generate(self, prompts: str | Messages | Sequence[str | Messages],
                 adapters: Adapter | None | Sequence[Adapter | None] = None, **kwargs) -> str | list[str]:
        """Like `complete`, returning only the text (a str for a single prompt)."""
        res = self.complete(prompts, adapters, **kwargs)
        single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
        return res[0].text if single else [r.text for r in res]
