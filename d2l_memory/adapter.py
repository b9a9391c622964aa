"""The Adapter value object: a generated LoRA for every layer of some target modules.

Layout follows the reference: A[t] is [L, R, d_in] and B[t] is [L, R, d_out] (B transposed relative to
PEFT's lora_B.weight [d_out, R]); the weight delta of layer l is alpha * B[t][l]^T @ A[t][l].
Adapters leave the process as standard PEFT LoRA directories, or as safetensors bytes for the store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load, save

from .config import is_number
from .errors import AdapterError

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"


@dataclass
class Adapter:
    A: dict[str, torch.Tensor]  # target -> [L, R, d_in]
    B: dict[str, torch.Tensor]  # target -> [L, R, d_out]
    alpha: float  # used directly: delta = alpha * B^T A
    module_paths: dict[str, list[str]]  # target -> full module path of each layer in the base model
    base_model: str = ""
    hypernet_sha: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.A) != set(self.B) or not self.A:
            raise AdapterError("A and B must name the same, non-empty set of target modules")
        for t in self.A:
            a, b = self.A[t], self.B[t]
            if a.dim() != 3 or b.dim() != 3 or a.shape[:2] != b.shape[:2]:
                raise AdapterError(f"{t!r}: A {tuple(a.shape)} and B {tuple(b.shape)} must be [L, R, d_in] and "
                                   "[L, R, d_out] with the same L and R")
            if t not in self.module_paths or len(self.module_paths[t]) != a.shape[0]:
                raise AdapterError(f"{t!r}: module_paths must list one module path per layer ({a.shape[0]})")

    # ---- shape -------------------------------------------------------------------------------
    @property
    def targets(self) -> list[str]:
        return list(self.A)

    @property
    def rank(self) -> int:
        return next(iter(self.A.values())).shape[1]

    @property
    def num_layers(self) -> int:
        return next(iter(self.A.values())).shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.A.values())).dtype

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for d in (self.A, self.B) for t in d.values())

    def _replace(self, A, B, **kw) -> Adapter:
        args = dict(alpha=self.alpha, module_paths=self.module_paths, base_model=self.base_model,
                    hypernet_sha=self.hypernet_sha, meta=dict(self.meta))
        args.update(kw)
        return Adapter(A=A, B=B, **args)

    def to(self, device=None, dtype=None) -> Adapter:
        return self._replace({t: a.to(device=device, dtype=dtype) for t, a in self.A.items()},
                             {t: b.to(device=device, dtype=dtype) for t, b in self.B.items()})

    def scaled(self, factor: float) -> Adapter:
        """The same adapter at `factor` times the strength (alpha * factor; the tensors are shared, not copied)."""
        if not is_number(factor) or factor <= 0:
            raise AdapterError(f"scale factor must be a positive finite number, got {factor!r}")
        return self._replace(dict(self.A), dict(self.B), alpha=self.alpha * float(factor))

    def delta_weight(self, target: str, layer: int) -> torch.Tensor:
        """The dense weight delta [d_out, d_in] of one layer (fp32)."""
        return self.alpha * self.B[target][layer].float().T @ self.A[target][layer].float()

    # ---- composition -------------------------------------------------------------------------
    @classmethod
    def concat(cls, adapters: Sequence[Adapter], weights: Sequence[float] | None = None) -> Adapter:
        """Rank concatenation: delta = sum_i w_i * delta_i. Weights scale A only, as in the reference."""
        if not adapters:
            raise AdapterError("concat needs at least one adapter")
        if weights is not None and len(weights) != len(adapters):
            raise AdapterError(f"got {len(weights)} weights for {len(adapters)} adapters")
        first = adapters[0]
        for ad in adapters[1:]:
            if (ad.targets != first.targets or ad.num_layers != first.num_layers or ad.alpha != first.alpha
                    or any(ad.A[t].shape[-1] != first.A[t].shape[-1] or ad.B[t].shape[-1] != first.B[t].shape[-1]
                           for t in first.targets)):
                raise AdapterError("adapters to concatenate must share targets, layers, widths and alpha "
                                   "(were they made for the same base model and hypernetwork?)")
        w = [1.0] * len(adapters) if weights is None else [float(x) for x in weights]
        A = {t: torch.cat([ad.A[t] * wi for ad, wi in zip(adapters, w, strict=False)], dim=1) for t in first.targets}
        B = {t: torch.cat([ad.B[t] for ad in adapters], dim=1) for t in first.targets}
        return first._replace(A, B, meta={"parents": [ad.meta.get("id") for ad in adapters], "weights": w})

    def truncate(self, rank: int) -> tuple[Adapter, float]:
        """Best rank-`rank` approximation of every layer's delta (truncated SVD).

        Returns the new adapter and the fraction of the squared Frobenius norm of the delta it keeps.
        """
        if rank <= 0:
            raise AdapterError(f"rank must be positive, got {rank}")
        A, B, kept, total = {}, {}, 0.0, 0.0
        for t in self.targets:
            a, b = self.A[t].float(), self.B[t].float()  # [L, R, i], [L, R, o]
            # delta^T = A^T B  ([i, o]); thin SVD via QR of the factors keeps this cheap.
            qa, ra = torch.linalg.qr(a.transpose(1, 2))  # A^T = qa ra: [L, i, R], [L, R, R]
            qb, rb = torch.linalg.qr(b.transpose(1, 2))  # B^T = qb rb: [L, o, R], [L, R, R]
            u, s, vh = torch.linalg.svd(rb @ ra.transpose(1, 2))  # core [L, R, R]: B^T A = qb core qa^T
            k = min(rank, s.shape[-1])
            total += float((s ** 2).sum())
            kept += float((s[:, :k] ** 2).sum())
            root = s[:, :k].sqrt()
            B[t] = ((qb @ u[:, :, :k]) * root[:, None, :]).transpose(1, 2).to(self.dtype)  # [L, k, o]
            A[t] = ((qa @ vh[:, :k, :].transpose(1, 2)) * root[:, None, :]).transpose(1, 2).to(self.dtype)
        frac = kept / total if total > 0 else 1.0
        return self._replace(A, B), frac

    # ---- serialisation -----------------------------------------------------------------------
    def _meta(self) -> dict[str, str]:
        return {"format": "d2l-adapter", "alpha": repr(float(self.alpha)),
                "module_paths": json.dumps(self.module_paths), "base_model": self.base_model,
                "hypernet_sha": self.hypernet_sha, "meta": json.dumps(self.meta, default=str)}

    def to_bytes(self) -> bytes:
        """Safetensors bytes (A/B per target + metadata), the form the store keeps."""
        tensors = {}
        for t in self.targets:
            tensors[f"{t}.A"] = self.A[t].contiguous().cpu()
            tensors[f"{t}.B"] = self.B[t].contiguous().cpu()
        return save(tensors, metadata=self._meta())

    @classmethod
    def from_bytes(cls, data: bytes) -> Adapter:
        try:
            tensors = load(data)
            header_len = int.from_bytes(data[:8], "little")
            meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
        except Exception as e:  # safetensors raises several types on bad input
            raise AdapterError(f"not a valid d2l adapter (safetensors) payload: {e}") from e
        if meta.get("format") != "d2l-adapter":
            raise AdapterError("payload is safetensors but not a d2l adapter (missing format=d2l-adapter metadata)")
        targets = sorted({k.rsplit(".", 1)[0] for k in tensors})
        return cls(A={t: tensors[f"{t}.A"] for t in targets}, B={t: tensors[f"{t}.B"] for t in targets},
                   alpha=float(meta["alpha"]), module_paths=json.loads(meta["module_paths"]),
                   base_model=meta.get("base_model", ""), hypernet_sha=meta.get("hypernet_sha", ""),
                   meta=json.loads(meta.get("meta", "{}")))

    def save_peft(self, directory: str | Path, pad_rank_to: int | None = None) -> Path:
        """Write a standard PEFT LoRA directory (adapter_config.json + adapter_model.safetensors).

        PEFT computes delta = (lora_alpha / r) * lora_B @ lora_A, so lora_alpha = alpha * r reproduces ours.
        `pad_rank_to` zero-pads the rank (e.g. to a rank a serving engine accepts).
        """
        from peft import LoraConfig

        r = self.rank
        if pad_rank_to is not None:
            if pad_rank_to < r:
                raise AdapterError(f"pad_rank_to ({pad_rank_to}) is below the adapter rank ({r})")
            r = pad_rank_to
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for t in self.targets:
            for layer, path in enumerate(self.module_paths[t]):
                a = self.A[t][layer]  # [R, d_in]
                b = self.B[t][layer].T  # [d_out, R]
                if r > a.shape[0]:
                    a = torch.cat([a, a.new_zeros(r - a.shape[0], a.shape[1])])
                    b = torch.cat([b, b.new_zeros(b.shape[0], r - b.shape[1])], dim=1)
                tensors[f"base_model.model.{path}.lora_A.weight"] = a.contiguous().cpu()
                tensors[f"base_model.model.{path}.lora_B.weight"] = b.contiguous().cpu()
        cfg = LoraConfig(r=r, lora_alpha=float(self.alpha) * r, target_modules=sorted(self.targets),
                         lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                         base_model_name_or_path=self.base_model or None)
        cfg.save_pretrained(str(d))
        from safetensors.torch import save_file
        save_file(tensors, str(d / PEFT_WEIGHTS), metadata={"format": "pt"})
        return d

    @classmethod
    def load_peft(cls, directory: str | Path) -> Adapter:
        """Read a PEFT LoRA directory (as written by `save_peft`, or any plain LoRA on per-layer linears)."""
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / PEFT_CONFIG).is_file() or not (d / PEFT_WEIGHTS).is_file():
            raise AdapterError(f"{d} is not a PEFT adapter directory: it needs {PEFT_CONFIG} and {PEFT_WEIGHTS}")
        cfg = json.loads((d / PEFT_CONFIG).read_text())
        if cfg.get("use_rslora") or cfg.get("use_dora"):
            raise AdapterError("rsLoRA/DoRA adapters are not supported; export a plain LoRA")
        r, lora_alpha = int(cfg["r"]), float(cfg["lora_alpha"])
        tensors = load_file(str(d / PEFT_WEIGHTS))
        by_target: dict[str, list[tuple[int, str]]] = {}
        for key in tensors:
            if not key.endswith(".lora_A.weight"):
                continue
            path = key[len("base_model.model."):-len(".lora_A.weight")]
            m = re_layer(path)
            by_target.setdefault(path.rsplit(".", 1)[-1], []).append((m, path))
        if not by_target:
            raise AdapterError(f"{d / PEFT_WEIGHTS} holds no lora_A weights")
        A, B, paths = {}, {}, {}
        for t, items in by_target.items():
            items.sort()
            paths[t] = [p for _, p in items]
            A[t] = torch.stack([tensors[f"base_model.model.{p}.lora_A.weight"] for p in paths[t]])
            B[t] = torch.stack([tensors[f"base_model.model.{p}.lora_B.weight"].T for p in paths[t]])
        return cls(A=A, B=B, alpha=lora_alpha / r, module_paths=paths,
                   base_model=cfg.get("base_model_name_or_path") or "")


def re_layer(path: str) -> int:
    from .lora import _LAYER_RE

    m = _LAYER_RE.search(path + ".")
    if m is None:
        raise AdapterError(f"module path {path!r} has no `.layers.<i>.` component")
    return int(m.group(1))

