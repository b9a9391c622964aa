"""ChatD2LMemory behaviour: choosing the user per call, isolation between users (also under concurrent async
calls), streaming, stop sequences, usage and memory metadata, memorize, LCEL, lazy default memory."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from d2l_memory.integrations.langchain import ChatD2LMemory, _StreamText, to_chat_messages
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from lc_fixtures import MAX_TOKENS, tiny_memory

ALICE_DOCS = ["Alice lives in Lisbon and her cat is called Miso.", "Alice's special magic number is 1234."]
BOB_DOCS = ["Bob lives in Oslo. The grass is green and the sky is blue."]


@pytest.fixture(scope="module")
def mem(tmp_path_factory):
    m = tiny_memory(tmp_path_factory.mktemp("lc-chat"))
    ids = {"alice": [i for d in ALICE_DOCS for i in m.ingest("alice", d)],
           "bob": [i for d in BOB_DOCS for i in m.ingest("bob", d)]}
    m.test_ids = ids
    yield m
    m.close()


@pytest.fixture
def chat(mem):
    return ChatD2LMemory(memory=mem, model="tiny-llama", max_tokens=MAX_TOKENS)


def cfg(user: str) -> dict:
    return {"configurable": {"user_id": user}}


def used_ids(msg) -> list[str]:
    return [m["id"] for m in msg.response_metadata["memories"]]


def reference(mem, user: str, text: str = "Hello") -> str:
    """What the memory layer itself answers for `user` (greedy, so deterministic)."""
    return mem.generate(user, [{"role": "user", "content": text}], max_new_tokens=MAX_TOKENS, min_new_tokens=1).text


# ---- choosing the user ------------------------------------------------------------------------------
def test_user_from_config_recalls_that_users_memories(chat, mem):
    a = chat.invoke("Hello", config=cfg("alice"))
    b = chat.invoke("Hello", config=cfg("bob"))
    assert a.response_metadata["user_id"] == "alice" and b.response_metadata["user_id"] == "bob"
    assert sorted(used_ids(a)) == sorted(mem.test_ids["alice"])
    assert used_ids(b) == mem.test_ids["bob"]
    for m in a.response_metadata["memories"]:
        assert isinstance(m["score"], float) and 0.0 < m["weight"] <= 1.0
    # the adapters really were applied: each answer is what the memory layer gives that user
    assert a.content == reference(mem, "alice") and b.content == reference(mem, "bob")
    assert a.content != b.content


def test_user_sources_and_precedence(mem):
    chat = ChatD2LMemory(memory=mem, model="tiny-llama", max_tokens=4, user_id="bob")
    assert chat.invoke("Hello").response_metadata["user_id"] == "bob"  # constructor default
    assert chat.invoke("Hello", config=cfg("alice")).response_metadata["user_id"] == "alice"  # config wins
    assert chat.invoke("Hello", config=cfg("alice"), user_id="carol").response_metadata["user_id"] == "carol"
    assert chat.bind(user_id="alice").invoke("Hello").response_metadata["user_id"] == "alice"
    assert chat.with_config(cfg("alice")).invoke("Hello").response_metadata["user_id"] == "alice"
    batch = chat.batch(["Hello", "Hi"], config=[cfg("alice"), cfg("bob")])
    assert [m.response_metadata["user_id"] for m in batch] == ["alice", "bob"]
    # a user without memories gets the plain base model and an empty memory list
    new = chat.invoke("Hello", config=cfg("nobody-yet"))
    assert new.response_metadata["memories"] == [] and new.content


def test_user_from_enclosing_runnable_config(chat):
    """Inside a runnable, a legacy `generate()` call still finds the user of the enclosing config."""
    inner = RunnableLambda(lambda x: chat.generate([[HumanMessage(x)]]).generations[0][0].message)
    out = inner.invoke("Hello", config=cfg("alice"))
    assert out.response_metadata["user_id"] == "alice"


def test_no_user_is_an_error(chat):
    with pytest.raises(ValueError, match="needs a user"):
        chat.invoke("Hello")


def test_lcel_chain(chat, mem):
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{question}")])
    chain = prompt | chat | StrOutputParser()
    out = chain.invoke({"question": "Where does Alice live?"}, config=cfg("alice"))
    assert isinstance(out, str) and out
    msg = (prompt | chat).invoke({"question": "Where do I live?"}, config=cfg("bob"))
    assert msg.response_metadata["user_id"] == "bob" and used_ids(msg) == mem.test_ids["bob"]
    pieces = list(chain.stream({"question": "Where does Alice live?"}, config=cfg("alice")))
    assert "".join(pieces) == out


# ---- isolation ----------------------------------------------------------------------------------------
def test_two_users_one_instance_never_share_memories(chat, mem):
    for _ in range(2):
        for user, other in (("alice", "bob"), ("bob", "alice")):
            msg = chat.invoke([HumanMessage("Where do I live?")], config=cfg(user))
            assert set(used_ids(msg)) <= set(mem.test_ids[user])
            assert not set(used_ids(msg)) & set(mem.test_ids[other])
            full = None
            for c in chat.stream("Where do I live?", config=cfg(user)):
                full = c if full is None else full + c
            assert set(used_ids(full)) == set(used_ids(msg))


async def test_concurrent_async_calls_stay_isolated(chat, mem):
    ref = {u: reference(mem, u) for u in ("alice", "bob")}
    users = ["alice", "bob"] * 4

    async def streamed(user):
        full = None
        async for c in chat.astream("Hello", config=cfg(user)):
            full = c if full is None else full + c
        return full

    calls = [chat.ainvoke("Hello", config=cfg(u)) if i % 3 else streamed(u) for i, u in enumerate(users)]
    calls += [chat.abatch(["Hello", "Hello"], config=[cfg("bob"), cfg("alice")])]
    *results, batch = await asyncio.gather(*calls)
    results += batch
    users += ["bob", "alice"]
    for user, msg in zip(users, results, strict=True):
        other = "bob" if user == "alice" else "alice"
        assert msg.response_metadata["user_id"] == user
        assert sorted(used_ids(msg)) == sorted(mem.test_ids[user])
        assert not set(used_ids(msg)) & set(mem.test_ids[other])
        assert msg.content == ref[user]  # the user's own adapter was applied, nobody else's


async def test_async_calls_do_not_block_the_event_loop(mem):
    chat = ChatD2LMemory(memory=mem, model="tiny-llama", max_tokens=24, user_id="alice")
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    t = asyncio.create_task(ticker())
    await chat.ainvoke("Hello")
    async for _ in chat.astream("Hello"):
        pass
    done.set()
    await t
    assert ticks > 5


# ---- streaming, usage, stop ---------------------------------------------------------------------------
class _Tokens(BaseCallbackHandler):
    def __init__(self):
        self.tokens: list[str] = []

    def on_llm_new_token(self, token, **kwargs):
        self.tokens.append(token)


def test_stream_tokens_usage_and_metadata(chat, mem):
    handler = _Tokens()
    chunks = list(chat.stream("Hello", config={**cfg("alice"), "callbacks": [handler]}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata
    assert all(c.usage_metadata is None for c in chunks[:-1])  # usage only on the last chunk
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert "".join(handler.tokens) == full.content
    invoked = chat.invoke("Hello", config=cfg("alice"))
    assert full.content == invoked.content
    assert full.usage_metadata == invoked.usage_metadata
    u = invoked.usage_metadata
    assert u["input_tokens"] > 0 and 0 < u["output_tokens"] <= MAX_TOKENS
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    meta = full.response_metadata
    assert meta["model_name"] == "tiny-llama" and meta["model_provider"] == "d2l-memory"
    assert meta["finish_reason"] in ("stop", "length")
    assert sorted(used_ids(full)) == sorted(mem.test_ids["alice"])


def test_streaming_flag_uses_callbacks_on_invoke(mem):
    chat = ChatD2LMemory(memory=mem, model="tiny-llama", max_tokens=MAX_TOKENS, streaming=True, user_id="bob")
    handler = _Tokens()
    msg = chat.invoke("Hello", config={"callbacks": [handler]})
    assert handler.tokens and "".join(handler.tokens) == msg.content
    assert msg.usage_metadata and msg.response_metadata["user_id"] == "bob"


@pytest.mark.parametrize("max_tokens", [1, 3, 7])
def test_max_tokens_is_respected_and_output_never_empty(mem, max_tokens):
    chat = ChatD2LMemory(memory=mem, model="tiny-llama", max_tokens=max_tokens, user_id="alice")
    msg = chat.invoke("Hello")
    assert msg.content and 1 <= msg.usage_metadata["output_tokens"] <= max_tokens
    assert msg.response_metadata["finish_reason"] == "length"
    assert chat.invoke("Hello", max_tokens=2).usage_metadata["output_tokens"] <= 2


def test_stop_sequences_cut_invoke_and_stream(chat):
    free = chat.invoke("Hello", config=cfg("alice")).content
    assert len(free) > 3
    stop = free[2:4]  # a sequence the model is known to produce
    cut = chat.invoke("Hello", config=cfg("alice"), stop=[stop])
    assert stop not in cut.content and free.startswith(cut.content)
    assert cut.response_metadata["finish_reason"] == "stop"
    streamed = "".join(c.content for c in chat.stream("Hello", config=cfg("alice"), stop=[stop]))
    assert streamed == cut.content
    at_init = ChatD2LMemory(memory=chat.memory, model="tiny-llama", max_tokens=MAX_TOKENS, stop=[stop])
    assert at_init.invoke("Hello", config=cfg("alice")).content == cut.content


def test_stream_text_holds_back_possible_stop_prefixes():
    s = _StreamText(["STOP"])
    out = [s.feed(p) for p in ["  Hello ", "wor", "ld ST", "O", "P and more"]]
    assert "".join(out) == "Hello world" and s.stopped and s.text == "Hello world"
    s = _StreamText(["STOP"])
    out = [s.feed(p) for p in ["a S", "T", "x  "]] + [s.feed("", final=True)]
    assert "".join(out) == "a STx" and not s.stopped
    s = _StreamText([])
    assert "".join([s.feed(" x "), s.feed(" y "), s.feed("", final=True)]) == "x  y"


# ---- memorize -------------------------------------------------------------------------------------------
def test_memorize_feeds_the_users_conversation_memory(tmp_path):
    m = tiny_memory(tmp_path)
    m.ingest("bob", BOB_DOCS[0])
    chat = ChatD2LMemory(memory=m, model="tiny-llama", max_tokens=4, memorize=True, every_n_turns=2,
                         keep_recent=0)
    first = chat.invoke("I adopted a cat called Miso.", config=cfg("carol"))
    assert first.response_metadata["memories"] == []  # carol had nothing yet
    new = first.response_metadata["memorized"]
    assert len(new) == 1  # user turn + answer = 2 turns -> one conversation memory
    rec = m.get_memory("carol", new[0])
    assert rec.kind == "conversation"
    second = chat.invoke("What is my cat called?", config=cfg("carol"))
    assert used_ids(second) == new  # recalled next time
    assert m.count("bob") == 1  # nobody else's memory changed
    streamed = None
    for c in chat.stream("Anything else?", config=cfg("carol")):
        streamed = c if streamed is None else streamed + c
    assert len(streamed.response_metadata["memorized"]) == 1
    assert m.count("carol") == 3
    # pending turns are flushed on demand
    chat2 = ChatD2LMemory(memory=m, model="tiny-llama", max_tokens=4, memorize=True, every_n_turns=10)
    assert chat2.invoke("Remember this.", config=cfg("dave")).response_metadata["memorized"] == []
    assert len(chat2.flush("dave")) == 1 and m.count("dave") == 1


# ---- construction, parameters, messages --------------------------------------------------------------------
def test_lazy_default_memory(monkeypatch, mem):
    from d2l_memory.memory import Memory

    calls = []

    def fake_from_defaults(checkpoint="smollm2-135m", db_url=None, **kw):
        calls.append((checkpoint, db_url))
        return mem

    monkeypatch.setattr(Memory, "from_defaults", staticmethod(fake_from_defaults))
    t0 = time.perf_counter()
    chat = ChatD2LMemory(model="my-checkpoint", db_url="sqlite:///x.db", max_tokens=3)
    assert time.perf_counter() - t0 < 0.5 and chat.memory is None and not calls
    threads = [threading.Thread(target=chat.get_memory) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [("my-checkpoint", "sqlite:///x.db")] and chat.memory is mem
    assert chat.invoke("Hello", config=cfg("alice")).response_metadata["model_name"] == "my-checkpoint"


def test_standard_params_and_identity(chat):
    ls = chat._get_ls_params(stop=["x"])
    assert ls["ls_provider"] == "d2l-memory" and ls["ls_model_name"] == "tiny-llama"
    assert ls["ls_model_type"] == "chat" and ls["ls_stop"] == ["x"] and ls["ls_max_tokens"] == MAX_TOKENS
    assert chat._llm_type == "d2l-memory-chat"
    assert chat._identifying_params["model_name"] == "tiny-llama"
    ChatD2LMemory(temperature=0, max_tokens=100, timeout=60, stop=[], max_retries=2, api_key="test",
                  streaming=True, model_name="smollm2-135m")
    with pytest.raises(ValueError, match="serves"):
        chat.invoke("Hello", config=cfg("alice"), model="another-model")
    with pytest.raises(NotImplementedError, match="tool calling"):
        chat.invoke("Hello", config=cfg("alice"), tools=[{"name": "x"}])
    with pytest.raises(ValueError, match="max_tokens"):
        chat.invoke("Hello", config=cfg("alice"), max_tokens=0)


def test_message_conversion():
    msgs = [SystemMessage("s1"), SystemMessage("s2"), HumanMessage("h1"), HumanMessage([{"type": "text", "text": "h2"}]),
            AIMessage(""), AIMessage("a1"), ToolMessage("42", tool_call_id="t1", name="adder"), HumanMessage("q")]
    assert to_chat_messages(msgs) == [
        {"role": "system", "content": "s1\n\ns2"}, {"role": "user", "content": "h1\n\nh2"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "Tool result (adder): 42\n\nq"}]
    with pytest.raises(ValueError):
        to_chat_messages([AIMessage("")])


# ---- real model ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_smollm2_invoke_stream_stop(tmp_path):
    """SmolLM2-135M-Instruct (a fresh hypernetwork: plumbing with the real tokenizer and chat template)."""
    from d2l_memory.engine import D2L
    from d2l_memory.memory import HashingEmbedder, Memory, MemoryConfig

    engine = D2L.from_base_model("smollm2-135m", seed=0)
    with Memory(engine, f"sqlite:///{tmp_path / 'm.db'}", embedder=HashingEmbedder(64),
                config=MemoryConfig(min_similarity=-1.0)) as mem:
        mem.ingest("alice", ALICE_DOCS[0])
        chat = ChatD2LMemory(memory=mem, model="smollm2-135m", max_tokens=16, user_id="alice")
        msg = chat.invoke("Say hello in one short sentence.")
        assert msg.content.strip() and used_ids(msg) and 0 < msg.usage_metadata["output_tokens"] <= 16
        assert "".join(c.content for c in chat.stream("Say hello in one short sentence.")) == msg.content
        word = msg.content.split()[-1]
        cut = chat.invoke("Say hello in one short sentence.", stop=[word])
        assert word not in cut.content and cut.response_metadata["finish_reason"] == "stop"


def test_recalled_text_in_the_prompt_is_reported(chat, mem):
    rag = chat.invoke("Where does Alice live?", config=cfg("alice"), context_tokens=256, use_adapters=False)
    assert rag.response_metadata["in_prompt"] and set(rag.response_metadata["in_prompt"]) <= set(used_ids(rag))
    expected = mem.generate("alice", [{"role": "user", "content": "Where does Alice live?"}], context_tokens=256,
                            use_adapters=False, max_new_tokens=MAX_TOKENS, min_new_tokens=1)
    assert rag.content == expected.text
    hybrid = ChatD2LMemory(memory=mem, model="tiny-llama", max_tokens=MAX_TOKENS, context_tokens=256)
    assert hybrid.invoke("Where does Alice live?", config=cfg("alice")).response_metadata["in_prompt"]
    assert chat.invoke("Where does Alice live?", config=cfg("alice")).response_metadata["in_prompt"] == []
