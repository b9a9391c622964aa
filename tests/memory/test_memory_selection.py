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
