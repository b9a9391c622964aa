"""End to end with the real shipped checkpoint (SmolLM2-135M + its trained hypernetwork). Marked slow.

The shipped checkpoint is small-compute (see d2l_memory/checkpoints/smollm2-135m/README.md): it does not
yet answer most personal questions exactly, so this test measures what it does do: the user's own recalled
memory makes the true answers more likely than another user's memory does (the same question, the same
bias LoRA; only the document differs).
"""

from __future__ import annotations

import pytest

from d2l_memory.checkpoint import SHIPPED_DIR
from d2l_memory.evaluation import answer_logprob
from d2l_memory.memory import Memory, MemoryConfig

CHECKPOINT = SHIPPED_DIR / "smollm2-135m"
PROFILES = {
    "marta": ("The user's name is Marta Silva. Marta lives in Lisbon. She works as a pharmacist. "
              "Marta has a cat called Pimenta.", {"What city does the user live in?": "Lisbon",
                                                  "What is the user's job?": "pharmacist",
                                                  "What is the name of the user's cat?": "Pimenta"}),
    "kenji": ("The user's name is Kenji Sato. Kenji lives in Denver. He works as an electrician. "
              "Kenji has a dog called Rocket.", {"What city does the user live in?": "Denver",
                                                 "What is the user's job?": "electrician",
                                                 "What is the name of the user's dog?": "Rocket"}),
}


@pytest.mark.slow
def test_shipped_checkpoint_remembers_the_users_own_facts(tmp_path):
    assert (CHECKPOINT / "d2l_config.json").is_file(), f"the shipped checkpoint is missing: {CHECKPOINT}"
    cfg = MemoryConfig(min_similarity=-1.0)  # each user has one memory: always recall it
    with Memory.from_defaults(db_url=f"sqlite:///{tmp_path / 'memory.db'}", config=cfg) as mem:
        ids = {u: mem.ingest(u, text)[0] for u, (text, _) in PROFILES.items()}
        margins = []
        for user, (_, facts) in PROFILES.items():
            other = next(u for u in PROFILES if u != user)
            for q, a in facts.items():
                own, theirs = mem.recall(user, q), mem.recall(other, q)
                assert [m.id for m in own.memories] == [ids[user]]  # recall is per user
                margins.append(answer_logprob(mem.engine, q, a, own.adapter)
                               - answer_logprob(mem.engine, q, a, theirs.adapter))
        ans = mem.answer("marta", "What city does the user live in?", max_new_tokens=16)
        assert ans.text and ans.memories[0].id == ids["marta"]
    assert sum(margins) / len(margins) > 0, margins
