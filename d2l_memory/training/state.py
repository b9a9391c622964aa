"""Resumable training state without pickles: safetensors for tensors, JSON for the rest.

    <dir>/hypernet.safetensors   fp32 master weights
    <dir>/optim.safetensors      AdamW moments per parameter index
    <dir>/state.json             step, data position, optimizer hyper-parameters, torch RNG (hex), history
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_state(directory: str | Path, hypernet: torch.nn.Module, optimizer: torch.optim.Optimizer,
               info: dict) -> None:
    d = Path(directory)
    tmp = d.with_name(d.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in hypernet.state_dict().items()},
              str(tmp / "hypernet.safetensors"))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    moments = {}
    for i, p in enumerate(params):
        for k, v in optimizer.state.get(p, {}).items():
            moments[f"{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    save_file(moments, str(tmp / "optim.safetensors"))
    groups = [{k: v for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])}
              for g in optimizer.param_groups]
    info = dict(info, param_groups=groups, torch_rng=torch.get_rng_state().numpy().tobytes().hex())
    (tmp / "state.json").write_text(json.dumps(info))
    if d.exists():  # swap in atomically-ish: a crash leaves either the old or the new state complete
        old = d.with_name(d.name + ".old")
        if old.exists():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        os.replace(d, old)
        os.replace(tmp, d)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, d)


def load_state(directory: str | Path, hypernet: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    d = Path(directory)
    hypernet.load_state_dict(load_file(str(d / "hypernet.safetensors")))
    info = json.loads((d / "state.json").read_text())
    moments = load_file(str(d / "optim.safetensors"))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = {k.split(".", 1)[1]: v.to(p.device) for k, v in moments.items() if k.split(".", 1)[0] == str(i)}
        if st:
            optimizer.state[p] = st
    for g, saved in zip(optimizer.param_groups, info["param_groups"], strict=False):
        for k, v in saved.items():
            if k != "n_params":
                g[k] = tuple(v) if isinstance(v, list) else v
    torch.set_rng_state(torch.frombuffer(bytearray(bytes.fromhex(info["torch_rng"])), dtype=torch.uint8))
    return info
