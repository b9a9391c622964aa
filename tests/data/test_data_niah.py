"""NIAH magic-number builder."""

from collections import Counter

import pytest

from d2l_memory.data.niah import (
    QUESTION,
    block_counts_for_bin,
    build_niah,
    depth_bin_range,
    heuristic_token_count,
    numbers_for_split,
)


def test_deterministic_by_seed():
    a, b = build_niah(30, seed=1), build_niah(30, seed=1)
    assert a == b
    assert [s.context for s in a] != [s.context for s in build_niah(30, seed=2)]


def test_needle_once_answer_and_length():
    for s in build_niah(100, token_range=(32, 256), seed=0):
        (qa,) = s.qas
        assert qa.question == QUESTION
        assert len(qa.answer) == 4 and qa.answer.isdigit()
        assert s.context.count("special magic number") == 1
        assert s.context.count(qa.answer) == 1
        assert f"The special magic number is {qa.answer}." in s.context.split("\n")
        assert s.context.split("\n")[s.meta["needle_index"]].endswith(f"{qa.answer}.")
        assert 32 <= heuristic_token_count(s.context) < 256
        assert s.kind == "niah"


def test_depth_bins_covered_evenly():
    samples = build_niah(200, token_range=[(32, 128), (128, 256)], seed=3)
    assert Counter(s.meta["depth_bin"] for s in samples) == {d: 20 for d in range(10)}
    assert Counter(tuple(s.meta["token_bin"]) for s in samples) == {(32, 128): 100, (128, 256): 100}
    for s in samples:
        lo, hi = depth_bin_range(s.meta["n_blocks"], s.meta["depth_bin"])
        assert lo <= s.meta["needle_index"] <= hi


def test_depth_bin_ranges_partition_blocks():
    for n_blocks in (10, 13, 37):
        covered = set()
        for d in range(10):
            lo, hi = depth_bin_range(n_blocks, d)
            assert 0 <= lo <= hi < n_blocks
            covered |= set(range(lo, hi + 1))
        assert covered == set(range(n_blocks))


def test_custom_token_counter():
    def words(text):
        return len(text.split())

    ks = block_counts_for_bin(100, 200, words)
    assert ks == list(range(ks[0], ks[-1] + 1))
    for s in build_niah(20, token_range=(100, 200), seed=0, count_tokens=words):
        assert 100 <= words(s.context) < 200 and s.meta["n_tokens"] == words(s.context)


def test_splits_disjoint_numbers():
    pools = {sp: set(numbers_for_split(sp)) for sp in ("train", "val", "test")}
    assert not pools["train"] & pools["val"] and not pools["train"] & pools["test"]
    assert not pools["val"] & pools["test"]
    assert sum(len(p) for p in pools.values()) == 10_000
    built = {sp: build_niah(300, seed=0, split=sp) for sp in pools}
    for sp, samples in built.items():
        assert {s.qas[0].answer for s in samples} <= pools[sp]
    ids = [{s.id for s in built[sp]} for sp in built]
    assert not ids[0] & ids[1] and not ids[0] & ids[2]


def test_bad_split_rejected():
    with pytest.raises(ValueError):
        build_niah(1, split="dev")
