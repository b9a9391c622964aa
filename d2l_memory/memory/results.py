"""Results returned by :class:`~d2l_memory.memory.Memory` and its errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import D2LError

if TYPE_CHECKING:
    from ..adapter import Adapter


class UnknownUserError(D2LError, LookupError):
    """The user has no (live) memories, so there is nothing to recall or forget."""

    def __init__(self, user_id: str):
        self.user_id = user_id
        super().__init__(f"user {user_id!r} has no memories. Fix: ingest something first (d2l-memory ingest --user "
                         f"{user_id} FILE, or Memory.ingest), or check the user id (d2l-memory users lists them)")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class RecalledMemory:
    """One memory picked for a query: its cosine similarity and its weight in the merged adapter."""

    id: str
    score: float
    weight: float
    kind: str
    title: str | None
    text: str | None
    metadata: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 4), "weight": round(self.weight, 4), "kind": self.kind,
                "title": self.title, "created_at": self.created_at.isoformat()}


@dataclass
class Recall:
    """The memories selected for a query and their merged adapter (None when nothing was selected)."""

    user_id: str
    query: str
    memories: list[RecalledMemory]
    adapter: Adapter | None
    kept_fraction: float | None = None  # "svd" merges: the share of the merged delta's energy kept
    skipped: list[str] = field(default_factory=list)  # similar memories made by another base model/hypernet
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds: embed, search, merge

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.memories]

    def __bool__(self) -> bool:
        return bool(self.memories)

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "query": self.query, "memories": [m.to_dict() for m in self.memories],
                "rank": None if self.adapter is None else self.adapter.rank, "kept_fraction": self.kept_fraction,
                "skipped": self.skipped, "timings_ms": {k: round(v, 2) for k, v in self.timings.items()}}


@dataclass
class Answer:
    """A generated reply, the memories behind it and its token usage."""

    text: str
    memories: list[RecalledMemory]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds: recall, generate, total
    in_prompt: list[str] = field(default_factory=list)  # ids of the memories whose text was in the prompt

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "memories": [m.to_dict() for m in self.memories], "usage": self.usage,
                "in_prompt": self.in_prompt, "finish_reason": self.finish_reason,
                "timings_ms": {k: round(v, 2) for k, v in self.timings.items()}}


@dataclass(frozen=True)
class IngestReport:
    """What one ingest stored."""

    user_id: str
    ids: list[str]
    new: int  # memories created (the rest already existed with the same content)
    n_tokens: int  # tokens internalized (template included)
    seconds: float
    title: str

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "ids": self.ids, "new": self.new, "n_tokens": self.n_tokens,
                "seconds": round(self.seconds, 3), "title": self.title}


@dataclass(frozen=True)
class ConsolidationReport:
    """What a consolidation merged; ``memory_id`` is None when there was too little to merge."""

    user_id: str
    memory_id: str | None
    source_ids: list[str]
    rank_before: int  # summed rank of the merged memories
    rank_after: int  # rank of the consolidated adapter (``rank`` + the bias block)
    kept_fraction: float | None  # share of the merged weight delta's squared Frobenius norm kept by the SVD
    bytes_before: int
    bytes_after: int
    skipped: list[str] = field(default_factory=list)  # memories of another base model/hypernet, left alone

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "memory_id": self.memory_id, "source_ids": self.source_ids,
                "rank_before": self.rank_before, "rank_after": self.rank_after,
                "kept_fraction": None if self.kept_fraction is None else round(self.kept_fraction, 6),
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after, "skipped": self.skipped}


@dataclass(frozen=True)
class ReembedReport:
    """Memories embedded again by ``Memory.reembed``; ``skipped`` ones were stored without their text."""

    user_id: str
    embedding_model: str
    ids: list[str]
    skipped: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "embedding_model": self.embedding_model, "ids": self.ids,
                "skipped": self.skipped, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class ExportReport:
    """A PEFT adapter directory written by ``export_peft``."""

    path: Path
    memory_ids: list[str]
    rank: int
    base_model: str
    kept_fraction: float | None
    max_lora_rank: int | None  # smallest vLLM --max-lora-rank that can load it (None: above vLLM's limit)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "memory_ids": self.memory_ids, "rank": self.rank,
                "base_model": self.base_model, "kept_fraction": self.kept_fraction,
                "max_lora_rank": self.max_lora_rank}
