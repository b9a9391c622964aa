"""End to end with the real shipped checkpoint (SmolLM2-135M + its trained hypernetwork). Marked slow.

The shipped checkpoint is small-compute (two stages, 275 + 500 steps on 2 CPU cores, see benchmarks/RESULTS.md).
The first test checks the pipeline and that the adapters shape the answers; the second, that a user's own
recalled adapter makes that user's true answers more likely than another user's adapter does (target: +0.1
nats per token; the earlier 325-step checkpoint measured +0.006, this one +1.20 with benchmarks/user_margin.py).
"""

from __future__ import annotations

import pytest

from d2l_memory.checkpoint import SHIPPED_DIR
from d2l_memory.evaluation import USER_PROFILES, user_margins
from d2l_memory.memory import Memory, MemoryConfig

CHECKPOINT = SHIPPED_DIR / "smollm2-135m"


def _margins(tmp_path):
    """Per fact: log-prob of the true answer with the user's own recalled adapter, another user's, and none."""
    assert (CHECKPOINT / "d2l_config.json").is_file(), f"the shipped checkpoint is missing: {CHECKPOINT}"
    cfg = MemoryConfig(min_similarity=-1.0)  # each user has one memory: always recall it
    with Memory.from_defaults(db_url=f"sqlite:///{tmp_path / 'memory.db'}", config=cfg) as mem:
        rows, ids = user_margins(mem)
        for user in USER_PROFILES:
            assert [m.id for m in mem.recall(user, "Where?").memories] == [ids[user]]  # recall is per user
        ans = mem.answer("marta", "What city does the user live in?", max_new_tokens=16)
        assert ans.text and ans.memories[0].id == ids["marta"]
    return rows


@pytest.mark.slow
def test_shipped_checkpoint_adapters_shape_the_answers(tmp_path):
    rows = _margins(tmp_path)
    # with the recalled adapter the true short answers are far more likely than with the bare model
    assert all(own > none + 1.0 for own, _, none in rows), rows


@pytest.mark.slow
def test_shipped_checkpoint_prefers_the_users_own_facts(tmp_path):
    rows = _margins(tmp_path)
    margin = sum(own - theirs for own, theirs, _ in rows) / len(rows)
    assert margin > 0.1, rows
