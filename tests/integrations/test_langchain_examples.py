"""The LangChain examples run end to end (tiny model: plumbing only; the slow test uses SmolLM2)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from d2l_memory.integrations.langchain import ChatD2LMemory
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from lc_fixtures import tiny_memory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_chain_example_answers_per_user(tmp_path):
    ex = load("langchain_chain")
    mem = tiny_memory(tmp_path, min_similarity=0.05)
    out = ex.run(mem, max_tokens=6, questions=ex.QUESTIONS[:2])
    assert set(out) == {"maria", "someone-else"}
    assert all(isinstance(a, str) and a for qa in out.values() for _, a in qa)
    assert mem.count("maria") >= 1 and mem.count("someone-else") == 0
    # the chain's prompt carries only the question
    prompt = ex.build_chain(ChatD2LMemory(memory=mem)).first
    text = prompt.invoke({"question": "Where does Maria live?"}).to_string()
    assert "Bergen" not in text


def test_agent_loop_protocol_with_a_scripted_model():
    ex = load("agent_loop")
    fake = GenericFakeChatModel(messages=iter([AIMessage("CALC: 17 * 23"), AIMessage("It is 391."),
                                               AIMessage("Hello Sam!")]))
    history = []
    assert ex.agent_turn(fake, history, "What is 17 * 23?") == "It is 391."
    assert [m.text for m in history] == ["What is 17 * 23?", "CALC: 17 * 23", "Observation: 391", "It is 391."]
    assert ex.agent_turn(fake, history, "Hi") == "Hello Sam!"
    assert ex.calculate("2 ** 10 / 4") == "256" and ex.calculate("(1 + 2) * -3") == "-9"
    assert ex.calculate("__import__('os')").startswith("error") and ex.calculate("1/0").startswith("error")


def test_agent_loop_on_memory_memorizes(tmp_path):
    ex = load("agent_loop")
    mem = tiny_memory(tmp_path)
    chat = ChatD2LMemory(memory=mem, max_tokens=6, memorize=True, every_n_turns=2, keep_recent=0)
    turns = ex.run(chat, "sam", ex.SCRIPT, max_steps=2)
    assert len(turns) == 3 and all(a for _, a in turns)
    chat.flush("sam")
    assert mem.count("sam") >= 3 and mem.count("bob") == 0


@pytest.mark.slow
def test_chain_example_on_smollm2(tmp_path):
    """Real SmolLM2 with the shipped (or $D2L_TEST_CHECKPOINT) hypernetwork, end to end through LCEL."""
    from d2l_memory.memory import Memory

    ex = load("langchain_chain")
    ckpt = os.environ.get("D2L_TEST_CHECKPOINT", "smollm2-135m")
    with Memory.from_defaults(checkpoint=ckpt, db_url=f"sqlite:///{tmp_path / 'm.db'}") as mem:
        out = ex.run(mem, max_tokens=24, questions=ex.QUESTIONS[:2])
        # Whether the answers are right is the checkpoint's quality, measured in benchmarks/RESULTS.md and
        # by tests/memory/test_memory_slow.py; here: the chain runs on the real model for both users and
        # only Maria has a memory to recall.
        assert mem.count("maria") == 1 and mem.count("someone-else") == 0
        assert mem.recall("maria", ex.QUESTIONS[0]).memories
    assert all(a.strip() for qa in out.values() for _, a in qa), out
