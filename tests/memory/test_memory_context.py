"""Recalled text in the prompt: hybrid (adapter + text) and plain-RAG (text only) answers (tiny engine, seconds)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from memory_helpers import DOCS, make_memory

from d2l_memory.errors import ConfigError, InputError
from d2l_memory.memory import MemoryConfig
from d2l_memory.memory.context import select_context, with_context
from d2l_memory.memory.results import RecalledMemory
from d2l_memory.prompts import context_prompt

Q_ALICE = "Where does Alice live?"


def _mem(id_: str, text: str | None, score: float = 0.5) -> RecalledMemory:
    return RecalledMemory(id=id_, score=score, weight=1.0, title=None, kind="document", text=text,
                          metadata={}, created_at=None)


def logits_of(engine, messages, adapter) -> torch.Tensor:
    ids = torch.tensor([engine.prompt_ids(messages)])
    with engine.lora_context([adapter]), torch.no_grad():
        return engine.model(input_ids=ids).logits


def _words(text: str) -> int:
    return len(text.split())


def test_select_context_keeps_order_skips_textless_and_overflowing():
    mems = [_mem("a", "one two three"), _mem("b", None), _mem("c", "   "), _mem("d", "w " * 10),
            _mem("e", "four five")]
    chosen = select_context(mems, _words, budget=6)
    assert [m.id for m in chosen] == ["a", "e"]  # d (10 words) overflows; the smaller e after it still fits
    assert [m.id for m in select_context(mems, _words, budget=100)] == ["a", "d", "e"]
    assert select_context(mems, _words, budget=0) == []


def test_with_context_puts_text_into_the_last_user_message_only():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": Q_ALICE}]
    out = with_context(msgs, ["Alice lives in Lisbon.", "The sky is blue."])
    assert out[:3] == msgs[:3] and msgs[3]["content"] == Q_ALICE  # the input is not modified
    assert out[3] == {"role": "user",
                      "content": context_prompt("Alice lives in Lisbon.\n\nThe sky is blue.", Q_ALICE)}
    assert with_context(msgs, []) is msgs
    no_user = with_context([{"role": "system", "content": "x"}], ["fact"])
    assert no_user[-1]["role"] == "user" and "fact" in no_user[-1]["content"]


@pytest.mark.parametrize("kwargs, field", [
    (dict(context_tokens=-1), "context_tokens"),
    (dict(context_tokens=1.5), "context_tokens"),
    (dict(context_tokens=True), "context_tokens"),
    (dict(use_adapters="no"), "use_adapters"),
    (dict(use_adapters=False), "use_adapters"),  # nothing recalled would be used
    (dict(context_tokens=512, store_text=False), "context_tokens"),  # no text to put into the prompt
])
def test_context_config_errors_name_the_field_and_the_fix(kwargs, field):
    with pytest.raises(ConfigError, match=field) as e:
        MemoryConfig(**kwargs)
    assert "Fix:" in str(e.value) or "fix" in str(e.value).lower()


def test_default_answer_puts_no_memory_text_into_the_prompt(memory, engine):
    memory.ingest("u1", DOCS["alice"])
    ans = memory.answer("u1", Q_ALICE)
    assert ans.in_prompt == [] and ans.to_dict()["in_prompt"] == []
    assert ans.prompt_tokens == len(engine.prompt_ids(Q_ALICE))


def test_hybrid_answer_puts_the_recalled_text_into_the_prompt_and_applies_the_adapter(memory, engine):
    mid = memory.ingest("u1", DOCS["alice"])[0]
    memory.ingest("u1", DOCS["sky"])
    rec = memory.recall("u1", Q_ALICE)
    ans = memory.answer("u1", Q_ALICE, context_tokens=256)
    texts = [m.text for m in rec.memories]
    prompt = context_prompt("\n\n".join(texts), Q_ALICE)
    assert ans.in_prompt == rec.ids and ans.in_prompt[0] == mid
    assert ans.prompt_tokens == len(engine.prompt_ids([{"role": "user", "content": prompt}]))
    weaker = dataclasses.replace(rec.adapter, alpha=rec.adapter.alpha * 0.5)  # hybrid_adapter_scale's default
    assert ans.text == engine.generate([{"role": "user", "content": prompt}], adapters=weaker, max_new_tokens=6)


def test_hybrid_adapter_scale_sets_the_adapters_strength(db_url, engine):
    mem = make_memory(db_url, hybrid_adapter_scale=1.0)
    mem.ingest("u1", DOCS["alice"])
    rec = mem.recall("u1", Q_ALICE)
    prompt = [{"role": "user", "content": context_prompt(DOCS["alice"], Q_ALICE)}]
    hybrid = mem.answer("u1", Q_ALICE, context_tokens=256, max_new_tokens=6, min_new_tokens=6)
    assert hybrid.text == engine.generate(prompt, adapters=rec.adapter, max_new_tokens=6, min_new_tokens=6)
    full, weak = (logits_of(engine, prompt, dataclasses.replace(rec.adapter, alpha=rec.adapter.alpha * s))
                  for s in (1.0, 0.25))
    base = logits_of(engine, prompt, None)
    assert (weak - base).abs().max() < (full - base).abs().max()  # the scale really weakens the adapter
    mem.close()
    with pytest.raises(ConfigError, match="hybrid_adapter_scale"):
        MemoryConfig(hybrid_adapter_scale=0)


def test_rag_answer_uses_the_text_without_an_adapter(memory, engine):
    memory.ingest("u1", DOCS["alice"])
    rec = memory.recall("u1", Q_ALICE)
    ans = memory.answer("u1", Q_ALICE, context_tokens=256, use_adapters=False)
    prompt = [{"role": "user", "content": context_prompt(DOCS["alice"], Q_ALICE)}]
    assert ans.in_prompt == rec.ids
    assert ans.text == engine.generate(prompt, adapters=None, max_new_tokens=6)
    assert ans.memories[0].id == rec.ids[0]  # the selection is still reported


def test_budget_limits_the_text_and_the_model_window_caps_the_budget(db_url, engine):
    mem = make_memory(db_url, min_similarity=-1.0, top_k=3, context_tokens=100_000, memory_tokens=2000)
    for text in DOCS.values():
        mem.ingest("u1", text)
    rec = mem.recall("u1", Q_ALICE)
    first = len(engine.tokenizer(rec.memories[0].text, add_special_tokens=False)["input_ids"])
    assert mem.answer("u1", Q_ALICE, context_tokens=first).in_prompt == [rec.ids[0]]
    assert mem.answer("u1", Q_ALICE, context_tokens=first - 1).in_prompt != rec.ids[:1]
    assert mem.answer("u1", Q_ALICE).in_prompt == rec.ids  # the huge config budget is capped by the 512 window
    long = mem.ingest("u2", "Alice lives in Lisbon. " * 120)  # ~600 tokens: more than the tiny model's window
    assert long and mem.answer("u2", Q_ALICE).in_prompt == []
    mem.close()


def test_per_call_overrides_are_validated(memory, db_url):
    memory.ingest("u1", DOCS["alice"])
    with pytest.raises(ConfigError, match="use_adapters"):
        memory.answer("u1", Q_ALICE, use_adapters=False)
    with pytest.raises(ConfigError, match="context_tokens"):
        memory.answer("u1", Q_ALICE, context_tokens=-5)
    textless = make_memory(db_url.replace("memory.db", "textless.db"), store_text=False)
    textless.ingest("u1", DOCS["alice"])
    with pytest.raises(InputError, match="store_text=False"):
        textless.answer("u1", Q_ALICE, context_tokens=128)
    textless.close()


def test_generate_and_stream_carry_the_text_too(memory, engine):
    memory.ingest("u1", DOCS["alice"])
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": Q_ALICE}]
    ans = memory.generate("u1", chat, context_tokens=256, use_adapters=False)
    stream = memory.stream("u1", chat, context_tokens=256, use_adapters=False)
    assert "".join(stream) == stream.answer.text == ans.text
    assert stream.answer.in_prompt == ans.in_prompt and len(ans.in_prompt) == 1
    assert ans.prompt_tokens == len(engine.prompt_ids(with_context(chat, [DOCS["alice"]])))


def test_config_default_context_applies_to_every_answer(db_url):
    mem = make_memory(db_url, context_tokens=256, use_adapters=False)
    mid = mem.ingest("u1", DOCS["alice"])[0]
    assert mem.answer("u1", Q_ALICE).in_prompt == [mid]
    assert mem.answer("u1", Q_ALICE, context_tokens=0, use_adapters=True).in_prompt == []
    mem.close()
