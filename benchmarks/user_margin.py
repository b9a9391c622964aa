"""Own-user vs other-user adapter: mean log-probability per token of each user's true facts with the adapter
recalled for that user, for another user, and with none (the memory test of tests/memory/test_memory_slow.py, as
a number; profiles in `d2l_memory.evaluation.USER_PROFILES`).

    python benchmarks/user_margin.py --checkpoint smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from d2l_memory.evaluation import user_margins
from d2l_memory.memory import Memory, MemoryConfig


def margins(checkpoint: str) -> list[tuple[float, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = MemoryConfig(min_similarity=-1.0)  # each user has one memory: always recall it
        with Memory.from_defaults(checkpoint, db_url=f"sqlite:///{Path(tmp) / 'memory.db'}", config=cfg) as mem:
            return user_margins(mem)[0]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="smollm2-135m")
    a = p.parse_args()
    rows = margins(a.checkpoint)
    n = len(rows)
    print(json.dumps({"checkpoint": a.checkpoint, "own": sum(r[0] for r in rows) / n,
                      "other_user": sum(r[1] for r in rows) / n, "none": sum(r[2] for r in rows) / n,
                      "own_minus_other": sum(r[0] - r[1] for r in rows) / n}))


if __name__ == "__main__":
    main()
