"""Training and evaluation data builders: NIAH, synthetic personal memory, real documents.

Every builder is deterministic by seed and keeps its held-out splits (``"val"``, ``"test"``)
disjoint from ``"train"``; see the module docstrings for how each one splits.
"""

from .mix import build_mix, dump_mix
from .niah import build_niah
from .personal import build_personal
from .realdocs import RealDocsUnavailable, build_realdocs, ensure_downloaded
from .types import QA, Sample, read_jsonl, write_jsonl

__all__ = [
    "QA",
    "RealDocsUnavailable",
    "Sample",
    "build_mix",
    "build_niah",
    "build_personal",
    "build_realdocs",
    "dump_mix",
    "ensure_downloaded",
    "read_jsonl",
    "write_jsonl",
]
