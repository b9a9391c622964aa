"""Input validation for the store API. Everything is checked before anything is written."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ValidationError
from .models import MEMORY_KINDS

MAX_USER_ID = 255
MAX_MODEL_NAME = 255


def check_user_id(value: Any) -> str:
    """A non-empty user id string (at most 255 characters, no surrounding whitespace)."""
    if not isinstance(value, str):
        raise ValidationError("user_id", f"expected a str, got {type(value).__name__}", "pass the user id as a str")
    if not value.strip():
        raise ValidationError("user_id", "empty user id", "pass a non-empty user id such as 'alice'")
    if value != value.strip():
        raise ValidationError("user_id", f"{value!r} has surrounding whitespace", "strip the user id")
    if len(value) > MAX_USER_ID:
        raise ValidationError("user_id", f"{len(value)} characters", f"use at most {MAX_USER_ID} characters")
    return value


def check_memory_id(value: Any, field: str = "memory_id") -> str:
    """A memory id as returned by the store (a str)."""
    if not isinstance(value, str) or not value:
        raise ValidationError(field, f"expected a non-empty str, got {value!r}",
                              "pass the id of a MemoryRecord (record.id)")
    return value


def check_kind(value: Any) -> str:
    """One of ``document``, ``conversation``, ``consolidated``."""
    if value not in MEMORY_KINDS:
        raise ValidationError("kind", f"{value!r} is not a memory kind", f"use one of {', '.join(MEMORY_KINDS)}")
    return value


def check_kinds(value: Any) -> tuple[str, ...] | None:
    """``None``, one kind or a sequence of kinds (a search/list filter)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (check_kind(value),)
    if isinstance(value, Sequence) and value:
        return tuple(check_kind(v) for v in value)
    raise ValidationError("kind", f"{value!r} is not a kind filter", f"pass None, one of {MEMORY_KINDS} or a list")


def check_ttl_seconds(value: Any) -> float | None:
    """``None`` (never expires) or a non-negative finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError("ttl_seconds", f"{value!r} is not a number", "pass seconds as an int, or None")
    if value < 0:
        raise ValidationError("ttl_seconds", f"negative ttl {value}", "pass ttl_seconds >= 0, or None for no expiry")
    return float(value)


def check_payload(value: Any) -> bytes:
    """Adapter bytes (the bytes of a safetensors file); bytes, bytearray or memoryview, non-empty."""
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise ValidationError(
            "adapter_bytes", f"expected bytes, got {type(value).__name__}",
            "pass the safetensors file's bytes (e.g. safetensors.torch.save(state_dict))",
        )
    if not value:
        raise ValidationError("adapter_bytes", "empty payload", "pass the non-empty safetensors bytes")
    return value


def check_positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValidationError(field, f"{value!r} is not a positive int", f"pass {field} as an int > 0")
    return int(value)


def check_non_empty_str(value: Any, field: str, max_len: int = 512) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"expected a non-empty str, got {value!r}", f"pass {field} as a str")
    if len(value) > max_len:
        raise ValidationError(field, f"{len(value)} characters", f"use at most {max_len} characters")
    return value


def check_optional_str(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValidationError(field, f"expected a str or None, got {type(value).__name__}", f"pass {field} as a str")
    return value


def check_target_modules(value: Any) -> list[str]:
    """A non-empty list of module names such as ``["q_proj", "v_proj"]``."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValidationError("target_modules", f"{value!r} is not a non-empty list of str",
                              "pass e.g. ['q_proj', 'v_proj']")
    for m in value:
        if not isinstance(m, str) or not m:
            raise ValidationError("target_modules", f"{m!r} is not a module name", "pass module names as str")
    return list(value)


def check_metadata(value: Any, field: str = "metadata") -> dict[str, Any]:
    """A JSON-serialisable dict with str keys (``None`` means empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"expected a dict, got {type(value).__name__}", "pass a dict of JSON values")
    for key in value:
        if not isinstance(key, str):
            raise ValidationError(field, f"key {key!r} is not a str", "use str keys")
    try:
        # Round trip: the stored value is exactly what JSON can represent.
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"not JSON-serialisable ({exc})",
                              "use only str, int, float, bool, None, lists and dicts") from None


def check_metadata_filter(value: Any) -> dict[str, Any] | None:
    """Equality filter on metadata keys: scalar values only (str, int, float, bool, None)."""
    if value is None or value == {}:
        return None
    value = check_metadata(value, "metadata filter")
    for key, v in value.items():
        if '"' in key or "\\" in key:
            raise ValidationError("metadata filter", f"key {key!r} contains a quote or backslash",
                                  "filter on keys without quotes/backslashes")
        if isinstance(v, (dict, list)):
            raise ValidationError("metadata filter", f"value of {key!r} is a {type(v).__name__}",
                                  "filter on scalar values (str, int, float, bool, None)")
    return value


def check_embedding(value: Any, field: str = "embedding") -> np.ndarray:
    """A finite, non-zero 1-D vector, returned as contiguous little-endian float32."""
    try:
        arr = np.asarray(value, dtype="<f4")
    except (TypeError, ValueError):
        raise ValidationError(field, f"cannot convert {type(value).__name__} to a float vector",
                              "pass a 1-D numpy array of floats") from None
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise ValidationError(field, f"shape {arr.shape} is not a non-empty 1-D vector", "pass shape (dim,)")
    if not np.all(np.isfinite(arr)):
        raise ValidationError(field, "contains NaN or infinity", "pass finite values")
    if not np.any(arr):
        raise ValidationError(field, "is all zeros (no direction for cosine similarity)", "pass a non-zero vector")
    return np.ascontiguousarray(arr)


def check_embedding_model(value: Any, field: str = "embedding_model") -> str:
    """The name embeddings are stored and searched under."""
    model = check_non_empty_str(value, field, MAX_MODEL_NAME)
    if "\x1f" in model:
        raise ValidationError(field, "contains the control character \\x1f", "remove it")
    return model


def check_parents(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError("parents", f"{value!r} is not a list of memory ids", "pass a list of record ids")
    out = [check_memory_id(p, "parents") for p in value]
    if len(set(out)) != len(out):
        raise ValidationError("parents", "duplicate ids", "list each parent once")
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PreparedMemory:
    """A validated ``add_memory`` request with its hashes computed."""

    kind: str
    adapter_bytes: bytes
    adapter_sha256: str
    rank: int
    target_modules: list[str]
    dtype: str
    base_model: str
    hypernet_sha: str
    embedding: np.ndarray | None
    embedding_model: str | None
    text: str | None
    title: str | None
    summary: str | None
    metadata: dict[str, Any]
    ttl_seconds: float | None
    parents: list[str]
    content_sha256: str


def prepare(*, kind: Any, adapter_bytes: Any, rank: Any, target_modules: Any, dtype: Any, base_model: Any,
            hypernet_sha: Any, embedding: Any = None, embedding_model: Any = None, text: Any = None,
            title: Any = None, summary: Any = None, metadata: Any = None, ttl_seconds: Any = None,
            parents: Any = None) -> PreparedMemory:
    """Validate every field of a new memory; the content sha is of the text, else of the adapter."""
    data = check_payload(adapter_bytes)
    vec = None
    model = None
    if embedding is not None:
        vec = check_embedding(embedding)
        model = check_embedding_model(embedding_model)
    elif embedding_model is not None:
        raise ValidationError("embedding_model", "given without an embedding", "pass embedding= as well, or neither")
    text_v = check_optional_str(text, "text")
    adapter_sha = sha256(data)
    content_sha = sha256(text_v.encode("utf-8")) if text_v else adapter_sha
    return PreparedMemory(
        kind=check_kind(kind),
        adapter_bytes=data,
        adapter_sha256=adapter_sha,
        rank=check_positive_int(rank, "rank"),
        target_modules=check_target_modules(target_modules),
        dtype=check_non_empty_str(dtype, "dtype", 32),
        base_model=check_non_empty_str(base_model, "base_model", 512),
        hypernet_sha=check_non_empty_str(hypernet_sha, "hypernet_sha", 128),
        embedding=vec,
        embedding_model=model,
        text=text_v,
        title=check_optional_str(title, "title"),
        summary=check_optional_str(summary, "summary"),
        metadata=check_metadata(metadata),
        ttl_seconds=check_ttl_seconds(ttl_seconds),
        parents=check_parents(parents),
        content_sha256=content_sha,
    )
