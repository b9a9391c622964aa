"""Selection with the real default embedder (all-MiniLM-L6-v2, offline; about a second)."""

from __future__ import annotations

import pytest
from memory_helpers import make_memory

from d2l_memory.memory import SentenceTransformerEmbedder

DOCS = {
    "home": "I live in Lisbon, in a small flat near the river, and I cycle to work every day.",
    "pet": "My dog is a three-year-old beagle called Biscuit who loves chasing pigeons.",
    "job": "I work as a nurse in the cardiology ward of the city hospital, mostly on night shifts.",
    "food": "I am allergic to peanuts, and I don't eat meat: I have been vegetarian since 2015.",
    "family": "My sister Ana is a civil engineer in Toronto and has two sons.",
    "hobby": "On weekends I play the cello in an amateur orchestra; we rehearse on Saturday mornings.",
    "car": "My car is a blue 2012 Toyota Corolla; it needs new brakes before the winter.",
    "trip": "Next summer I am flying to Japan for three weeks to visit Kyoto and Osaka.",
}
QUERIES = [
    ("Which city do I live in?", "home"),
    ("What is my dog's name?", "pet"),
    ("What do I do for a living?", "job"),
    ("Is there anything I can't eat?", "food"),
    ("Where does my sister work?", "family"),
    ("Which instrument do I play?", "hobby"),
    ("What needs fixing on my car?", "car"),
    ("Where am I going on holiday?", "trip"),
    ("Do I have any pets?", "pet"),
    ("What are my dietary restrictions?", "food"),
]


@pytest.fixture(scope="module")
def minilm():
    return SentenceTransformerEmbedder()


def test_minilm_ranks_the_relevant_memory_first(tmp_path, minilm):
    mem = make_memory(f"sqlite:///{tmp_path / 'sel.db'}", embedder=minilm, min_similarity=0.2, top_k=3)
    assert minilm.name == "all-MiniLM-L6-v2" and minilm.dim == 384
    ids = {name: mem.ingest("u1", text)[0] for name, text in DOCS.items()}
    misses = []
    for query, want in QUERIES:
        rec = mem.recall("u1", query)
        if not rec.ids or rec.ids[0] != ids[want]:
            misses.append((query, want, [(m.title, round(m.score, 3)) for m in rec.memories]))
    assert not misses, misses
    # unrelated questions select nothing, so the model answers unaltered
    assert mem.recall("u1", "What is the boiling point of mercury in kelvin?").memories == []
    mem.close()


# A diary entry whose one fact (the piano tuner) comes after ~300 word pieces about other things: past
# MiniLM's 256-piece window, so truncation cannot see it.
LONG_ENTRY = " ".join([
    "Monday started grey and wet, and the tram was late again, so I walked the last stretch along the quay.",
    "The meeting about the quarterly budget ran long; we argued over the spreadsheet formulas for an hour.",
    "Lunch was soup from the place on the corner, which has new owners who painted the walls yellow.",
    "In the afternoon I answered emails, filed the travel receipts and tidied the shared drive folders.",
    "The printer jammed twice, and someone had left the kitchen sink full of mugs, as usual on Mondays.",
] * 3 + ["In the evening I booked a piano tuner for Thursday at six: the old upright piano in the hall has been "
           "badly out of tune since we moved it."])


def test_token_windows_cover_a_long_text_at_word_boundaries(minilm):
    from d2l_memory.tokens import token_windows

    tok = minilm.model.tokenizer
    size = minilm._window_tokens()
    assert size == minilm.model.max_seq_length - 2
    pieces = token_windows(tok, LONG_ENTRY, size)
    n_total = len(tok(LONG_ENTRY, add_special_tokens=False, verbose=False)["input_ids"])
    assert len(pieces) == 2 and n_total > size
    assert all(n <= size and len(tok(p, add_special_tokens=False)["input_ids"]) == n for p, n in pieces)
    assert sum(n for _, n in pieces) == n_total
    assert " ".join(p for p, _ in pieces).split() == LONG_ENTRY.split()  # no word cut in two
    assert token_windows(tok, "a short text", size) == [("a short text", 3)]


@pytest.mark.parametrize("long_text", ["windows", "truncate"])
def test_a_fact_past_the_embedders_window_is_recalled(tmp_path, minilm, long_text):
    emb = minilm if long_text == "windows" else SentenceTransformerEmbedder(long_text="truncate")
    mem = make_memory(f"sqlite:///{tmp_path / 'long.db'}", embedder=emb, min_similarity=-1.0, top_k=3,
                      memory_tokens=2048)
    ids = {name: mem.ingest("u1", text)[0] for name, text in {**DOCS, "diary": LONG_ENTRY}.items()}
    assert mem.count("u1") == len(DOCS) + 1  # the diary entry is one memory
    rec = mem.recall("u1", "When is the piano tuner coming?")
    if long_text == "windows":  # the default: the whole memory is embedded (second only to the cello memory)
        assert ids["diary"] in rec.ids[:2], [(m.title, m.score) for m in rec.memories]
    else:  # sentence-transformers' truncation: the diary entry looks unrelated to the question
        assert ids["diary"] not in rec.ids[:3]
    # short texts are embedded the same either way
    assert (emb.embed(["My dog is called Biscuit."]) @ minilm.embed(["My dog is called Biscuit."]).T).item() > 0.9999
    mem.close()


def test_long_text_mode_is_validated():
    from d2l_memory.errors import ConfigError

    with pytest.raises(ConfigError, match="long_text"):
        SentenceTransformerEmbedder(long_text="mean")
