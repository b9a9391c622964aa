"""Conversations, streaming and the async API (tiny engine)."""

from __future__ import annotations

import asyncio
import time

import pytest
from memory_helpers import DOCS, make_memory

from d2l_memory.errors import InputError

Q_ALICE = "Where does Alice live?"


def test_conversation_internalizes_older_turns_every_n_turns(memory):
    conv = memory.conversation("u1", every_n_turns=2, keep_recent=2)
    turns = [("user", "Hi, I am Alice."), ("assistant", "Hello Alice."), ("user", "I live in Lisbon."),
             ("assistant", "Lisbon is lovely."), ("user", "I have a cat named Miso."), ("assistant", "Cute!")]
    created = [conv.add(role, text) for role, text in turns]
    # after 4 messages, the 2 that left the recent window are internalized; after 6, the next 2
    assert [len(c) for c in created] == [0, 0, 0, 1, 0, 1]
    first = memory.get_memory("u1", created[3][0])
    assert first.kind == "conversation" and first.text == "User: Hi, I am Alice.\nAssistant: Hello Alice."
    assert first.metadata["conversation_id"] == conv.id and first.metadata["turns"] == [0, 2]
    prompt = conv.messages_for_prompt("What is my cat called?")
    assert [m["content"] for m in prompt] == ["I have a cat named Miso.", "Cute!", "What is my cat called?"]
    assert len(conv.pending) == 2
    closed = conv.close()
    assert len(closed) == 1 and "Miso" in memory.get_memory("u1", closed[0]).text
    assert memory.count("u1", "conversation") == 3 and conv.memory_ids == created[3] + created[5] + closed
    with pytest.raises(InputError, match="closed"):
        conv.add("user", "more")


def test_prompt_keeps_every_turn_not_yet_internalized(memory):
    conv = memory.conversation("u1", every_n_turns=3, keep_recent=1)
    for i in range(3):
        conv.add("user", f"message {i}")
    # 2 messages left the recent window but fewer than 3: not internalized, so they stay in the prompt
    assert [m["content"] for m in conv.messages_for_prompt()] == ["message 0", "message 1", "message 2"]
    assert conv.add("user", "message 3")  # now 3 left the window: internalized
    assert [m["content"] for m in conv.messages_for_prompt()] == ["message 3"]


def test_conversation_reply_uses_memory_and_records_turns(memory, engine):
    memory.ingest("u1", DOCS["alice"])
    with memory.conversation("u1", every_n_turns=10, keep_recent=10) as conv:
        ans = conv.reply(Q_ALICE)
        assert ans.memories and ans.memories[0].text == DOCS["alice"]
        assert [m["role"] for m in conv.messages] == ["user", "assistant"]
        pieces = list(conv.stream_reply("And what is the magic number?"))
        assert conv.messages[-1]["content"] == "".join(pieces).strip()
    assert memory.count("u1", "conversation") == len(conv.memory_ids) >= 1


def test_stream_yields_the_same_text_as_generate(memory):
    memory.ingest("u1", DOCS["alice"])
    msgs = [{"role": "user", "content": Q_ALICE}]
    full = memory.generate("u1", msgs)
    stream = memory.stream("u1", msgs)
    assert "".join(stream).strip() == full.text
    assert stream.answer.text == full.text and stream.memories == full.memories
    # closing early stops the generation and frees the engine
    early = memory.stream("u1", Q_ALICE, max_new_tokens=200)
    next(early, None)
    early.close()
    assert memory.generate("u1", msgs).text == full.text


def test_new_user_can_chat_without_memories(memory, engine):
    ans = memory.generate("new-user", [{"role": "user", "content": "Hello there"}])
    assert ans.memories == [] and ans.text == engine.generate("Hello there", max_new_tokens=6)


async def test_async_variants_serve_two_users_concurrently(db_url):
    mem = make_memory(db_url)
    await asyncio.gather(mem.aingest("alice", DOCS["alice"]), mem.aingest("bob", DOCS["magic"]))
    expected = {u: mem.answer(u, q).text for u, q in (("alice", Q_ALICE), ("bob", "What is the magic number?"))}

    ticks = 0
    stop = False

    async def ticker():
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.001)

    tick_task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    a, b = await asyncio.gather(mem.aanswer("alice", Q_ALICE), mem.aanswer("bob", "What is the magic number?"))
    elapsed = time.perf_counter() - t0
    rec = await mem.arecall("alice", Q_ALICE)
    gen = await mem.agenerate("bob", [{"role": "user", "content": "What is the magic number?"}])
    pieces = [p async for p in mem.astream("alice", Q_ALICE)]
    stop = True
    await tick_task
    assert a.text == expected["alice"] and b.text == expected["bob"] and gen.text == expected["bob"]
    assert a.memories[0].text == DOCS["alice"] and b.memories[0].text == DOCS["magic"]
    assert rec.memories[0].text == DOCS["alice"]
    assert "".join(pieces).strip() == expected["alice"]
    assert ticks >= 3, f"the event loop was blocked ({ticks} ticks in {elapsed:.2f} s)"
    assert await mem.aforget("bob", everything=True)
    assert mem.count("bob") == 0 and mem.count("alice") == 1
    mem.close()


def test_stream_errors_reach_the_consumer(memory):
    stream = memory.stream("u1", "hello", not_a_generate_argument=1)
    with pytest.raises(ValueError, match="not_a_generate_argument"):
        list(stream)
    stream.close()
    assert memory.generate("u1", [{"role": "user", "content": "hello"}]).text is not None  # engine lock was released
