"""Sample types shared by all data builders, JSONL I/O, and deterministic split/seed helpers.

A :class:`Sample` is one context (the document the hypernetwork turns into a LoRA) with one or
more question/answer pairs about it. Builders in this package return lists of samples and are
deterministic: the same ``(n, seed, split, ...)`` always gives the same list.

Held-out splits are decided by a *stable* hash of a key that identifies the underlying content
(a needle number, a person's first name, a document title), never by the sample index, so that
the same content can never land in two splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("niah", "personal", "realdoc")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class QA:
    """One question about a context and its reference answer."""

    question: str
    answer: str


@dataclass(frozen=True)
class Sample:
    """One context with its questions.

    Attributes:
        context: the document text (what the hypernetwork reads).
        qas: question/answer pairs about the context.
        kind: ``"niah"``, ``"personal"`` or ``"realdoc"``.
        id: unique, deterministic identifier (contains the kind and the split).
        meta: JSON-serialisable extras (needle depth, token counts, chat messages, ...).
    """

    context: str
    qas: tuple[QA, ...]
    kind: str
    id: str
    meta: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown sample kind {self.kind!r}; expected one of {KINDS}")
        if not isinstance(self.qas, tuple):
            object.__setattr__(self, "qas", tuple(self.qas))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "context": self.context,
            "qas": [{"question": qa.question, "answer": qa.answer} for qa in self.qas],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        """Build a sample from :meth:`to_dict` output."""
        return cls(
            context=d["context"],
            qas=tuple(QA(q["question"], q["answer"]) for q in d["qas"]),
            kind=d["kind"],
            id=d["id"],
            meta=dict(d.get("meta") or {}),
        )


def write_jsonl(samples: Iterable[Sample], path: str | Path) -> int:
    """Write samples to ``path`` as JSON lines (parent dirs created). Returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    logger.info("wrote %d samples to %s", n, path)
    return n


def iter_jsonl(path: str | Path) -> Iterator[Sample]:
    """Lazily read samples written by :func:`write_jsonl` (blank lines are skipped)."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Sample.from_dict(json.loads(line))


def read_jsonl(path: str | Path) -> list[Sample]:
    """Read all samples written by :func:`write_jsonl`."""
    return list(iter_jsonl(path))


# ----------------------------------------------------------------------------- helpers


def stable_hash(text: str) -> int:
    """A process-independent 64-bit hash of ``text`` (unlike built-in ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_of(key: str, salt: str, val_frac: float = 0.1, test_frac: float = 0.1) -> str:
    """Assign ``key`` to ``"train"``, ``"val"`` or ``"test"`` by a salted stable hash.

    The same key always gets the same split, so content keyed this way never crosses splits.
    """
    u = (stable_hash(f"{salt}:{key}") % 1_000_000) / 1_000_000
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


def partition(
    items: Iterable[str], salt: str, val_frac: float = 0.1, test_frac: float = 0.1
) -> dict[str, tuple[str, ...]]:
    """Split a small finite set of keys into train/val/test with exact proportions.

    Keys are ordered by a salted stable hash; the first ``test_frac`` go to test, the next
    ``val_frac`` to val, the rest to train. Each list keeps the input order.
    """
    items = list(dict.fromkeys(items))
    ranked = sorted(items, key=lambda k: stable_hash(f"{salt}:{k}"))
    n_test, n_val = round(len(items) * test_frac), round(len(items) * val_frac)
    where = {k: "test" for k in ranked[:n_test]}
    where.update({k: "val" for k in ranked[n_test : n_test + n_val]})
    return {sp: tuple(k for k in items if where.get(k, "train") == sp) for sp in SPLITS}


def check_split(split: str) -> str:
    """Validate a split name and return it."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def make_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded deterministically from ``parts`` (string seeding is stable)."""
    return random.Random("|".join(str(p) for p in parts))


def approx_tokens(text: str) -> int:
    """Rough token count of English prose: words * 1.3 (no tokenizer needed)."""
    return round(len(text.split()) * 1.3)
