"""End to end with the real shipped checkpoint (SmolLM2-135M + its trained hypernetwork). Marked slow.

It needs d2l_memory/checkpoints/smollm2-135m (shipped with the package) and fails until that exists.
"""

from __future__ import annotations

import pytest

from d2l_memory.checkpoint import SHIPPED_DIR
from d2l_memory.memory import Memory

CHECKPOINT = SHIPPED_DIR / "smollm2-135m"
PROFILE = ("My name is Marta Silva. I live in Lisbon, in the Alfama district. I work as a pharmacist. "
           "My cat is called Pimenta.")


@pytest.mark.slow
def test_shipped_checkpoint_answers_from_a_personal_profile(tmp_path):
    assert (CHECKPOINT / "d2l_config.json").is_file(), f"the shipped checkpoint is missing: {CHECKPOINT}"
    with Memory.from_defaults(db_url=f"sqlite:///{tmp_path / 'memory.db'}") as mem:
        (mid,) = mem.ingest("marta", PROFILE)
        ans = mem.answer("marta", "Which city do I live in?", max_new_tokens=24)
        assert ans.memories and ans.memories[0].id == mid
        assert "lisbon" in ans.text.lower(), ans.text
