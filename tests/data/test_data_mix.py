"""Mixture builder."""

from collections import Counter

import pytest
from realdoc_fixtures import make_fixture_root

from d2l_memory.data.mix import build_mix, dump_mix, mix_counts
from d2l_memory.data.types import read_jsonl


@pytest.fixture
def root(tmp_path):
    return make_fixture_root(tmp_path / "root")


def test_mix_counts():
    counts = mix_counts(10, {"niah": 1, "personal": 1, "realdoc": 1})
    assert sum(counts.values()) == 10 and sorted(counts.values()) == [3, 3, 4]
    assert mix_counts(7, {"niah": 0.5, "personal": 0.5}) in (
        {"niah": 4, "personal": 3},
        {"niah": 3, "personal": 4},
    )
    with pytest.raises(ValueError):
        mix_counts(5, {"poems": 1})


def test_mix_deterministic_and_interleaved(root):
    kw = {"realdoc_kwargs": {"root": root}}
    a = build_mix(40, seed=0, split="train", weights={"niah": 1, "personal": 2, "realdoc": 1}, **kw)
    assert a == build_mix(40, seed=0, split="train", weights={"niah": 1, "personal": 2, "realdoc": 1}, **kw)
    assert a != build_mix(40, seed=1, split="train", weights={"niah": 1, "personal": 2, "realdoc": 1}, **kw)
    assert Counter(s.kind for s in a) == {"niah": 10, "personal": 20, "realdoc": 10}
    assert len({s.id for s in a}) == 40
    assert [s.kind for s in a[:10]] != sorted(s.kind for s in a[:10])  # shuffled, not grouped


def test_mix_splits_disjoint(root):
    kw = {"weights": {"niah": 1, "personal": 1, "realdoc": 1}, "realdoc_kwargs": {"root": root}}
    train, test = build_mix(60, split="train", **kw), build_mix(30, split="test", **kw)
    assert not {s.id for s in train} & {s.id for s in test}
    assert not {s.context for s in train} & {s.context for s in test}


def test_no_realdoc_weight_needs_no_download(tmp_path):
    samples = build_mix(10, weights={"niah": 1, "personal": 1})
    assert {s.kind for s in samples} == {"niah", "personal"}
    path = tmp_path / "mix.jsonl"
    assert dump_mix(path, 10, weights={"niah": 1, "personal": 1}) == 10
    assert read_jsonl(path) == samples
