"""Validated configuration dataclasses of the hypernetwork."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


def is_number(v: Any) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"`{name}` {msg}")


@dataclass
class HypernetConfig:
    """Sizes of the D2L hypernetwork (Perceiver aggregator + per-layer head).

    The base-model fields (`num_layers`, `hidden_size`, `feature_sizes`) are filled from the base model by
    `HypernetConfig.for_model`; the rest are free choices. Defaults are sized for SmolLM2-135M so the
    checkpoint stays well under 80 MB in bf16.
    """

    num_layers: int  # L: base-model decoder layers (one LoRA per layer and target module)
    hidden_size: int  # D: base-model residual width (the context features)
    feature_sizes: dict[str, tuple[int, int]]  # target module -> (d_in, d_out)
    rank: int = 8  # r: LoRA rank per chunk (one Perceiver output query per rank slot)
    latent_size: int = 256  # d_lat: Perceiver width
    num_latents: int = 8  # learned latents of the Perceiver encoder
    num_blocks: int = 4  # cross-attention blocks of the encoder (the decoder has one)
    num_heads: int = 4  # attention heads (queries)
    num_kv_heads: int = 2  # grouped KV heads
    ff_mult: int = 4  # SwiGLU hidden = ff_mult * latent_size inside the Perceiver
    proj_hidden: int = 576  # SwiGLU hidden of the D -> d_lat input projection (reference: 4*D)
    layer_mlp_hidden: int = 512  # hidden width of the per-layer residual MLP (reference: 2048)
    alpha: float | None = None  # LoRA scale used directly (not divided by r); default 2 * r**1.5
    normalize_ctx: bool = True  # parameter-free RMS norm of each context activation before projection
    center_latents: bool = True  # subtract a running mean of the latents before the L2 norm (see HyperLoRA)
    latent_momentum: float = 0.02  # EMA rate of that running mean during training
    copy_values: bool = False  # add a copy path to B: attention over the document's token embeddings
    copy_key_size: int = 64  # query/key width of that attention
    copy_keys: bool = False  # with copy_values: also write each read token's predecessor activation into A
    attn_impl: str = "auto"  # "auto" (xformers on CUDA when installed, else SDPA), "sdpa", "xformers"

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "rank", "latent_size", "num_latents", "num_blocks",
                     "num_heads", "num_kv_heads", "ff_mult", "proj_hidden", "layer_mlp_hidden", "copy_key_size"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v > 0, name, f"must be a positive int, got {v!r}")
        _check(isinstance(self.feature_sizes, dict) and len(self.feature_sizes) > 0, "feature_sizes",
               "must map at least one target module name to (d_in, d_out)")
        self.feature_sizes = {str(k): (int(v[0]), int(v[1])) for k, v in self.feature_sizes.items()}
        _check(self.latent_size % self.num_heads == 0, "latent_size",
               f"({self.latent_size}) must be divisible by num_heads ({self.num_heads})")
        _check(self.num_heads % self.num_kv_heads == 0, "num_heads",
               f"({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        _check(self.attn_impl in ("auto", "sdpa", "xformers"), "attn_impl",
               f"must be 'auto', 'sdpa' or 'xformers', got {self.attn_impl!r}")
        _check(0.0 < float(self.latent_momentum) <= 1.0, "latent_momentum",
               f"must be in (0, 1], got {self.latent_momentum!r}")
        _check(not self.copy_keys or self.copy_values, "copy_keys",
               "needs copy_values=True (it keys the copy path's reads); set both or neither")
        if self.alpha is None:
            self.alpha = 2.0 * self.rank ** 1.5
        _check(float(self.alpha) > 0, "alpha", f"must be > 0, got {self.alpha!r}")

    @property
    def targets(self) -> list[str]:
        return list(self.feature_sizes)

    @property
    def head_dim(self) -> int:
        return self.latent_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["feature_sizes"] = {k: list(v) for k, v in self.feature_sizes.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HypernetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown HypernetConfig fields {sorted(unknown)}; known fields: {sorted(known)}")
        d = dict(d)
        d.setdefault("center_latents", False)  # checkpoints written before the field existed
        d.setdefault("copy_values", False)
        d.setdefault("copy_keys", False)
        return cls(**d)

    @classmethod
    def for_model(cls, model, target_modules: list[str] | tuple[str, ...] = ("down_proj",), **overrides
                  ) -> HypernetConfig:
        """Fill the base-model fields from a loaded HF causal LM."""
        from .lora import find_target_modules

        paths = find_target_modules(model, target_modules)
        feature_sizes = {t: (mods[0].in_features, mods[0].out_features) for t, mods in paths.items()}
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        overrides.setdefault("proj_hidden", cfg.hidden_size)
        return cls(num_layers=len(next(iter(paths.values()))), hidden_size=cfg.hidden_size,
                   feature_sizes=feature_sizes, **overrides)


@dataclass
class EncoderConfig:
    """How documents are turned into context-encoder inputs."""

    chunk_tokens: int = 1024  # max tokens of document text per chunk (affixes excluded)
    chunk_batch_size: int = 8  # chunks encoded per forward pass
    max_chunks: int = 512  # refuse documents that would need more chunks than this

    def __post_init__(self) -> None:
        for name in ("chunk_tokens", "chunk_batch_size", "max_chunks"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v > 0, name, f"must be a positive int, got {v!r}")

