"""Sample types, JSONL round trip and split helpers."""

import pytest

from d2l_memory.data.types import QA, Sample, make_rng, partition, read_jsonl, split_of, write_jsonl


def test_jsonl_roundtrip(tmp_path):
    samples = [
        Sample("ctx one", (QA("q?", "a"),), "niah", "niah-train-0", {"depth_bin": 3}),
        Sample(
            "ctx two",
            [QA("q2?", "b"), QA("q3?", "c")],
            "personal",
            "p-1",
            {"messages": [{"role": "user", "content": "hi"}]},
        ),
    ]
    assert isinstance(samples[1].qas, tuple)
    path = tmp_path / "sub" / "s.jsonl"
    assert write_jsonl(samples, path) == 2
    assert read_jsonl(path) == samples


def test_unknown_kind_rejected():
    with pytest.raises(ValueError):
        Sample("c", (), "bogus", "x")


def test_split_helpers_are_stable_and_exact():
    assert split_of("1234", "salt") == split_of("1234", "salt")
    parts = partition([f"k{i}" for i in range(100)], "s", val_frac=0.15, test_frac=0.15)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [70, 15, 15]
    assert not set(parts["train"]) & set(parts["test"])
    assert make_rng(1, "a").random() == make_rng(1, "a").random()
    assert make_rng(1, "a").random() != make_rng(2, "a").random()
