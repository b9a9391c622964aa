"""Memory: ingest -> recall -> apply, forgetting, bad input, consolidation, export (tiny engine, seconds)."""

from __future__ import annotations

import json

import pytest
import torch
from memory_helpers import DOCS, logits, make_memory

from d2l_memory.adapter import Adapter
from d2l_memory.errors import ConfigError, InputError
from d2l_memory.memory import (
    HashingEmbedder,
    Memory,
    MemoryConfig,
    UnknownUserError,
    merge_adapters,
    selection_weights,
)
from d2l_memory.store import MemoryNotFound, ValidationError

Q_ALICE = "Where does Alice live?"


def _ingest_all(memory, user="u1"):
    return {name: memory.ingest(user, text)[0] for name, text in DOCS.items()}


def test_recall_picks_the_relevant_memory_and_applies_its_adapter(memory, engine):
    ids = _ingest_all(memory)
    rec = memory.recall("u1", Q_ALICE)
    assert rec.ids[0] == ids["alice"]
    assert rec.memories[0].weight == 1.0 and rec.memories[0].score > 0.15
    assert rec.memories[0].text == DOCS["alice"]

    direct = engine.internalize(DOCS["alice"])
    if len(rec.memories) == 1:  # a single memory is applied as is
        torch.testing.assert_close(rec.adapter.delta_weight("down_proj", 0), direct.delta_weight("down_proj", 0))
    with_mem = logits(engine, Q_ALICE, rec.adapter)
    assert not torch.allclose(with_mem, logits(engine, Q_ALICE)), "the recalled adapter changes the model"

    ans = memory.answer("u1", Q_ALICE)
    assert ans.memories[0].id == ids["alice"]
    assert ans.text == engine.generate(Q_ALICE, adapters=rec.adapter, max_new_tokens=6)
    assert ans.usage["completion_tokens"] > 0 and ans.prompt_tokens == len(engine.prompt_ids(Q_ALICE))


def test_several_memories_merge_with_one_bias_block(db_url, engine):
    mem = make_memory(db_url, min_similarity=-1.0, top_k=3)
    ids = _ingest_all(mem)
    rec = mem.recall("u1", Q_ALICE)
    assert len(rec.memories) == 3
    weights = {m.id: m.weight for m in rec.memories}
    assert rec.memories[0].weight == 1.0 and all(0 < w <= 1 for w in weights.values())
    ads = {name: engine.internalize(DOCS[name]) for name in DOCS}
    r = engine.config.rank
    expected = sum(weights[ids[name]] * _body_delta(ad, r) for name, ad in ads.items())
    bias = ads["alice"].delta_weight("down_proj", 0) - _body_delta(ads["alice"], r)
    torch.testing.assert_close(rec.adapter.delta_weight("down_proj", 0), expected + bias, atol=1e-5, rtol=1e-4)
    assert rec.adapter.rank == sum(a.rank - r for a in ads.values()) + r


def _body_delta(ad: Adapter, r: int, layer: int = 0) -> torch.Tensor:
    a, b = ad.A["down_proj"][layer, :-r].float(), ad.B["down_proj"][layer, :-r].float()
    return ad.alpha * b.T @ a


def test_svd_merge_compresses_to_merge_rank(db_url, engine):
    mem = make_memory(db_url, min_similarity=-1.0, top_k=3, merge="svd", merge_rank=2)
    _ingest_all(mem)
    rec = mem.recall("u1", Q_ALICE)
    assert rec.adapter.rank == 2 + engine.config.rank
    assert 0 < rec.kept_fraction < 1


def test_forget_removes_the_memory_and_its_effect(memory, engine):
    ids = _ingest_all(memory)
    baseline = engine.generate([{"role": "user", "content": Q_ALICE}], max_new_tokens=6)
    assert memory.recall("u1", Q_ALICE).ids[0] == ids["alice"]

    assert memory.forget("u1", ids["alice"]) == [ids["alice"]]
    assert ids["alice"] not in memory.recall("u1", Q_ALICE).ids
    with pytest.raises(MemoryNotFound):
        memory.get_memory("u1", ids["alice"])

    forgotten = memory.forget("u1", everything=True, purge=True)
    assert sorted(forgotten) == sorted([ids["magic"], ids["sky"]])
    assert memory.count("u1") == 0
    ans = memory.generate("u1", [{"role": "user", "content": Q_ALICE}])
    assert ans.memories == [] and ans.text == baseline  # exactly the base model again
    with pytest.raises(UnknownUserError, match="has no memories"):
        memory.answer("u1", Q_ALICE)


def test_bad_input_raises_clearly_and_stores_nothing(db_url, tmp_path):
    mem = make_memory(db_url, max_ingest_bytes=200)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text \x80\x81")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    empty = tmp_path / "empty.md"
    empty.write_text("  \n\n ")
    big = tmp_path / "big.txt"
    big.write_text("word " * 100)
    cases = [
        (tmp_path / "missing.txt", FileNotFoundError, "no such file"),
        (binary, InputError, "binary"),
        (latin1, InputError, "not UTF-8"),
        (empty, InputError, "empty"),
        (big, InputError, "limit of 200 bytes"),
        (tmp_path, InputError, "is a folder"),
        ("", InputError, "empty"),
        ("x" * 201, InputError, "max_ingest_bytes"),
        ([{"role": "user"}], InputError, "messages"),
        ([], InputError, "messages"),
        (42, InputError, "cannot ingest"),
    ]
    for source, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            mem.ingest("u1", source)
    with pytest.raises(ValidationError, match="kind"):
        mem.ingest("u1", "fine text", kind="diary")
    with pytest.raises(ValidationError, match="metadata"):
        mem.ingest("u1", "fine text", metadata={"x": object()})
    with pytest.raises(ValidationError, match="user_id"):
        mem.ingest(" u1", "fine text")
    for call in (lambda: mem.recall("nobody", "q"), lambda: mem.answer("nobody", "q"),
                 lambda: mem.forget("nobody", everything=True), lambda: mem.forget("nobody", "abc"),
                 lambda: mem.consolidate("nobody"), lambda: mem.export_peft("nobody", None, tmp_path / "x")):
        with pytest.raises(UnknownUserError, match="'nobody' has no memories"):
            call()
    assert mem.list_users() == [] and mem.count("u1") == 0
    mem.close()


def test_long_input_is_split_into_memories_on_paragraph_boundaries(memory, engine):
    paragraphs = [f"Paragraph {i}: Alice lives in Lisbon and the magic number is {1000 + i}." for i in range(12)]
    report = memory.ingest_report("u1", "\n\n".join(paragraphs), title="notes")
    assert len(report.ids) > 1 and report.new == len(report.ids) and report.n_tokens > 0
    recs = sorted(memory.list_memories("u1"), key=lambda r: r.metadata["part"])
    assert [r.metadata["parts"] for r in recs] == [len(recs)] * len(recs)
    assert recs[0].title == f"notes (1/{len(recs)})"
    texts = [r.text for r in recs]
    assert "\n\n".join(texts) == "\n\n".join(paragraphs)  # nothing lost, cut only between paragraphs
    for t in texts:
        assert len(engine.tokenizer(t, add_special_tokens=False)["input_ids"]) <= 48


def test_reingesting_the_same_text_returns_the_same_memory(memory):
    first = memory.ingest_report("u1", DOCS["sky"])
    again = memory.ingest_report("u1", DOCS["sky"])
    assert again.ids == first.ids and again.new == 0 and memory.count("u1") == 1


def test_files_and_messages_are_ingested_with_their_kind_and_source(memory, tmp_path):
    f = tmp_path / "notes.md"
    f.write_text(DOCS["alice"], encoding="utf-8")
    (doc_id,) = memory.ingest("u1", f, metadata={"project": "x"}, ttl_seconds=3600)
    rec = memory.get_memory("u1", doc_id)
    assert rec.kind == "document" and rec.title == "notes.md" and rec.expires_at is not None
    assert rec.metadata == {"source": str(f.resolve()), "project": "x"}
    msgs = [{"role": "user", "content": "I adopted a cat named Miso."}, {"role": "assistant", "content": "Nice!"}]
    (conv_id,) = memory.ingest("u1", msgs)
    rec = memory.get_memory("u1", conv_id)
    assert rec.kind == "conversation" and rec.text == "User: I adopted a cat named Miso.\nAssistant: Nice!"


def test_decoded_adapters_are_cached(memory):
    ids = _ingest_all(memory)
    a1 = memory.recall("u1", Q_ALICE).adapter
    a2 = memory.recall("u1", Q_ALICE).adapter
    assert a1 is a2 and memory._adapters.get(("u1", ids["alice"])) is not None
    memory.forget("u1", ids["alice"])
    assert memory._adapters.get(("u1", ids["alice"])) is None


def test_memories_of_another_hypernetwork_are_skipped(memory):
    (mid,) = memory.ingest("u1", DOCS["alice"])
    raw = memory.store.get_adapter_bytes("u1", mid)
    vec = memory.store.get_embedding("u1", mid)
    memory.store.add_memory("u1", "document", adapter_bytes=raw, rank=8, target_modules=["down_proj"],
                            dtype="float32", base_model="tiny-llama", hypernet_sha="other", embedding=vec,
                            embedding_model=memory.embedder.name, text=DOCS["alice"] + " (old)")
    rec = memory.recall("u1", Q_ALICE)
    assert rec.ids == [mid] and len(rec.skipped) == 1


def test_consolidate_merges_conversations_reports_kept_fraction_and_lineage(db_url, engine):
    mem = make_memory(db_url)
    chats = [[{"role": "user", "content": f"Session {i}: my favourite number is {i * 7}."},
              {"role": "assistant", "content": f"Noted, {i * 7}."}] for i in range(4)]
    src = [i for c in chats for i in mem.ingest("u1", c)]
    rank_before = sum(mem.get_memory("u1", i).adapter.rank for i in src)
    (doc,) = mem.ingest("u1", DOCS["sky"])
    r = engine.config.rank

    rep = mem.consolidate("u1", rank=2)
    assert sorted(rep.source_ids) == sorted(src) and rep.memory_id is not None
    assert 0 < rep.kept_fraction < 1  # four rank-r bodies squeezed into rank 2
    assert rep.rank_after == 2 + r and rep.rank_before == rank_before
    assert set(mem.lineage("u1", rep.memory_id).parents) == set(src)
    assert mem.lineage("u1", src[0]).children == (rep.memory_id,)
    assert mem.count("u1", "conversation") == 0 and mem.count("u1", "consolidated") == 1
    assert {m.id for m in mem.list_memories("u1")} == {doc, rep.memory_id}
    rec = mem.get_memory("u1", rep.memory_id)
    assert rec.metadata["consolidated_from"] == len(src) and "favourite number is 14" in rec.text
    assert "favourite" in mem.recall("u1", "What is my favourite number?").memories[0].text

    # with enough rank nothing is lost: the merge equals the sum of the bodies plus one bias block
    mem2 = make_memory(db_url.replace("memory.db", "other.db"))
    src2 = [i for c in chats for i in mem2.ingest("u2", c)]
    ads = [mem2._load_adapter("u2", i) for i in src2]
    full = mem2.consolidate("u2", rank=64)
    assert full.kept_fraction == pytest.approx(1.0, abs=1e-5)
    merged = mem2._load_adapter("u2", full.memory_id)
    want = sum(_body_delta(a, r) for a in ads) + (ads[0].delta_weight("down_proj", 0) - _body_delta(ads[0], r))
    torch.testing.assert_close(merged.delta_weight("down_proj", 0), want, atol=1e-4, rtol=1e-3)
    nothing = mem2.consolidate("u2")
    assert nothing.memory_id is None  # only the consolidated memory is left


def test_export_peft_writes_a_loadable_adapter(memory, tmp_path, engine):
    ids = _ingest_all(memory)
    rep = memory.export_peft("u1", [ids["alice"], ids["magic"]], tmp_path / "peft")
    cfg = json.loads((rep.path / "adapter_config.json").read_text())
    assert cfg["r"] == rep.rank and cfg["target_modules"] == ["down_proj"]
    assert rep.max_lora_rank >= rep.rank
    loaded = Adapter.load_peft(rep.path)
    merged, _ = merge_adapters([memory._load_adapter("u1", i) for i in rep.memory_ids])
    torch.testing.assert_close(loaded.delta_weight("down_proj", 1), merged.delta_weight("down_proj", 1))
    with pytest.raises(MemoryNotFound):
        memory.export_peft("u1", ["not-an-id"], tmp_path / "bad")
    small = memory.export_peft("u1", None, tmp_path / "small", rank=2)
    assert small.rank == 2 + engine.config.rank and len(small.memory_ids) == 3


def test_selection_weights():
    assert selection_weights([0.9, 0.5], "uniform", 0.1, "max") == [1.0, 1.0]
    assert selection_weights([0.9, 0.5], "uniform", 0.1, "sum") == [0.5, 0.5]
    w = selection_weights([0.9, 0.8], "softmax", 0.1, "max")
    assert w[0] == 1.0 and w[1] == pytest.approx(2.718281828 ** -1, rel=1e-6)
    assert sum(selection_weights([0.9, 0.8, 0.1], "softmax", 0.1, "sum")) == pytest.approx(1.0)
    assert selection_weights([], "softmax", 0.1, "max") == []


@pytest.mark.parametrize("field,value", [("top_k", 0), ("min_similarity", 2.0), ("weighting", "max"),
                                         ("softmax_temperature", 0), ("merge", "ties"), ("merge_rank", -1),
                                         ("memory_tokens", 1.5), ("adapter_dtype", "int8"), ("max_ingest_bytes", 0),
                                         ("adapter_cache_size", -1), ("store_text", "yes")])
def test_config_errors_name_the_field_and_the_fix(field, value):
    with pytest.raises(ConfigError, match=rf"`{field}`.*Fix:"):
        MemoryConfig(**{field: value})
    with pytest.raises(ConfigError, match="unknown MemoryConfig fields"):
        MemoryConfig().replace(topk=3)


def test_text_free_store_keeps_no_text(db_url):
    mem = make_memory(db_url, store_text=False)
    (mid,) = mem.ingest("u1", DOCS["alice"])
    assert mem.get_memory("u1", mid).text is None
    assert mem.recall("u1", Q_ALICE).ids == [mid]


def test_lazy_engine_is_loaded_only_when_needed(db_url):
    from memory_helpers import shared_engine

    calls = []

    def factory():
        calls.append(1)
        return shared_engine()

    mem = Memory(factory, db_url, make_memory(db_url).embedder, MemoryConfig(memory_tokens=48))
    assert mem.list_memories("u1") == [] and mem.list_users() == [] and not mem.engine_loaded
    mem.ingest("u1", DOCS["sky"])
    mem.ingest("u1", DOCS["alice"])
    assert calls == [1] and mem.engine_loaded
    with pytest.raises(InputError, match="engine must be"):
        Memory(42, db_url)


def test_ingest_many_batches_sources_and_validates_all_first(memory, tmp_path):
    f = tmp_path / "a.md"
    f.write_text(DOCS["alice"], encoding="utf-8")
    reports = memory.ingest_many("u1", [f, DOCS["magic"], [{"role": "user", "content": DOCS["sky"]}]],
                                 titles=[None, "magic", None])
    assert [r.title for r in reports] == ["a.md", "magic", "The grass is green and the sky is blue."]
    assert [memory.get_memory("u1", r.ids[0]).kind for r in reports] == ["document", "document", "conversation"]
    one = make_memory(memory.store.config.url.replace("memory.db", "single.db"))
    (single,) = one.ingest("u1", DOCS["magic"])
    batched = memory._load_adapter("u1", reports[1].ids[0])
    torch.testing.assert_close(batched.A["down_proj"], one._load_adapter("u1", single).A["down_proj"])
    with pytest.raises(InputError, match="empty"):
        memory.ingest_many("u2", [DOCS["alice"], "   "])
    assert memory.count("u2") == 0


def test_reembed_makes_memories_findable_by_a_new_embedder(tmp_path):
    db = f"sqlite:///{tmp_path / 're.db'}"
    old = make_memory(db)  # HashingEmbedder(256), the name its embeddings are stored under
    ids = [r.ids[0] for r in old.ingest_many("u1", ["Alice lives in Lisbon.", "Bob keeps bees in Porto."])]
    hidden = make_memory(db, store_text=False).ingest("u1", "The spare key is under the blue pot.")[0]
    old.close()
    new = make_memory(db, embedder=HashingEmbedder(dim=64, name="hash-64"))
    assert new.recall("u1", "Where does Alice live?").memories == []  # no embeddings of this name yet
    rep = new.reembed("u1")
    assert sorted(rep.ids) == sorted(ids) and rep.skipped == [hidden] and rep.embedding_model == "hash-64"
    assert new.recall("u1", "Where does Alice live?").ids[0] == ids[0]
    assert set(new.get_memory("u1", ids[0]).embedding_models) == {"hash-64", "hashing-256"}
    assert new.reembed("u1").ids == rep.ids  # running it again is harmless
    with pytest.raises(UnknownUserError):
        new.reembed("nobody")
    with pytest.raises(ValidationError, match="batch_size"):
        new.reembed("u1", batch_size=0)
    new.close()
