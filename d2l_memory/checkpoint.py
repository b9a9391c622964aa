"""Hypernetwork checkpoints: sharded safetensors + a JSON config, no pickles.

    <dir>/d2l_config.json          hypernet + encoder config, base model name and fingerprint, shard index
    <dir>/hypernet-00001-of-0000N.safetensors

The index records each shard's sha256 so that a corrupt or truncated shard is caught on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CheckpointError

CONFIG_NAME = "d2l_config.json"
SHIPPED_DIR = Path(__file__).parent / "checkpoints"
MAX_SHARD_BYTES = 15 * 1024 * 1024  # below the 16 MiB commit limit


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def save_checkpoint(directory: str | Path, state: dict[str, torch.Tensor], config: dict,
                    dtype: torch.dtype | None = None, max_shard_bytes: int = MAX_SHARD_BYTES) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("hypernet-*.safetensors"):
        old.unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    split: dict[str, int] = {}  # tensors larger than a shard are cut along dim 0 into "<key>@<i>" parts
    pieces: list[tuple[str, torch.Tensor]] = []
    for k, v in state.items():
        v = v.detach().to("cpu", dtype=dtype or v.dtype).contiguous()
        nb = v.numel() * v.element_size()
        if nb > max_shard_bytes and v.dim() > 0 and v.shape[0] > 1:
            n = min(v.shape[0], -(-nb // max_shard_bytes))
            parts = torch.tensor_split(v, n, dim=0)
            split[k] = len(parts)
            pieces += [(f"{k}@{i}", p.contiguous()) for i, p in enumerate(parts)]
        else:
            pieces.append((k, v))
    for k, v in pieces:
        nb = v.numel() * v.element_size()
        if shards[-1] and size + nb > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nb
    index = []
    for i, shard in enumerate(shards):
        name = f"hypernet-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        data = st_save(shard)
        (d / name).write_bytes(data)
        index.append({"file": name, "sha256": sha256_bytes(data), "keys": sorted(shard)})
    cfg = dict(config, shards=index, split_tensors=split)
    (d / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    return d


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint directory, or the name of a shipped one (e.g. "smollm2-135m")."""
    p = Path(name_or_path).expanduser()
    if (p / CONFIG_NAME).is_file():
        return p
    shipped = SHIPPED_DIR / str(name_or_path)
    if (shipped / CONFIG_NAME).is_file():
        return shipped
    known = sorted(x.name for x in SHIPPED_DIR.iterdir() if (x / CONFIG_NAME).is_file()) if SHIPPED_DIR.is_dir() else []
    raise CheckpointError(f"no hypernetwork checkpoint at {name_or_path!r}: expected a directory with {CONFIG_NAME} "
                          f"or a shipped name {known}")


def read_config(directory: Path) -> dict:
    try:
        return json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{directory / CONFIG_NAME} is unreadable or not JSON: {e}") from e


def load_state(directory: Path, config: dict) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for entry in config.get("shards", []):
        f = directory / entry["file"]
        if not f.is_file():
            raise CheckpointError(f"checkpoint shard {f} is missing; re-download or re-save the checkpoint")
        data = f.read_bytes()
        if sha256_bytes(data) != entry["sha256"]:
            raise CheckpointError(f"checkpoint shard {f} is corrupt or truncated (sha256 mismatch); "
                                  "re-download or re-save the checkpoint")
        try:
            state.update(st_load(data))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint shard {f} is not valid safetensors: {e}") from e
    if not state:
        raise CheckpointError(f"{directory / CONFIG_NAME} lists no weight shards")
    for k, n in config.get("split_tensors", {}).items():
        try:
            state[k] = torch.cat([state.pop(f"{k}@{i}") for i in range(n)], dim=0)
        except KeyError as e:
            raise CheckpointError(f"checkpoint {directory} misses part {e} of tensor {k!r}") from e
    return state


def checkpoint_sha(config: dict) -> str:
    """A short identity of a checkpoint's weights (hash of its shard hashes)."""
    return sha256_bytes("".join(s["sha256"] for s in config.get("shards", [])).encode())[:16]
