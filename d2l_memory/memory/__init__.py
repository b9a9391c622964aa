"""The memory layer: per-user LoRA memories made by D2L, selected by similarity, merged and applied.

    from d2l_memory.memory import Memory
    mem = Memory.from_defaults()
    mem.ingest("alice", pathlib.Path("notes.md"))
    print(mem.answer("alice", "What did I write about the trip?").text)

Importing this package does not import torch or transformers; the engine loads on first use.
"""

from .config import MemoryConfig
from .conversation import Conversation
from .embedders import DEFAULT_EMBEDDER, Embedder, HashingEmbedder, SentenceTransformerEmbedder
from .memory import AnswerStream, Memory
from .merge import merge_adapters, selection_weights
from .results import (
    Answer,
    ConsolidationReport,
    ExportReport,
    IngestReport,
    Recall,
    RecalledMemory,
    ReembedReport,
    UnknownUserError,
)
from .sources import TEXT_SUFFIXES, read_text_file

__all__ = [
    "DEFAULT_EMBEDDER",
    "TEXT_SUFFIXES",
    "Answer",
    "AnswerStream",
    "ConsolidationReport",
    "Conversation",
    "Embedder",
    "ExportReport",
    "HashingEmbedder",
    "IngestReport",
    "Memory",
    "MemoryConfig",
    "Recall",
    "RecalledMemory",
    "ReembedReport",
    "SentenceTransformerEmbedder",
    "UnknownUserError",
    "merge_adapters",
    "read_text_file",
    "selection_weights",
]
