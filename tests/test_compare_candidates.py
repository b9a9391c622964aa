"""benchmarks/compare_candidates.py pairs questions across checkpoints and tests the differences."""

import json

import pytest
from benchscripts import load_benchmark


def _write(results, name, personal, niah, realdoc, margin=None, keep_all=True):
    """personal/niah: lists of right (1) / wrong (0) per question; realdoc: list of (pred, gold) per question."""
    for s in (0, 7, 11):
        def block(rows, kind):
            ex = [{"q": f"q{i}", "gold": "42", "pred": "42" if r else "7", "doc": f"{kind}-{i}"}
                  for i, r in enumerate(rows)]
            return {"d2l": {"n": len(ex), "examples": ex}}
        (results / f"answer_errors_{name}_seed{s}.json").write_text(
            json.dumps({"personal": block(personal, "p"), "niah": block(niah, "n")}))
        ex = [{"q": f"r{i}", "gold": g, "pred": p, "doc": f"r-{i}"} for i, (p, g) in enumerate(realdoc)]
        (results / f"eval_realdoc_{name}_seed{s}.json").write_text(json.dumps(
            {"realdoc": {"d2l": {"n": len(ex), "f1": 0.5, "examples": ex if keep_all else ex[:-1]}}}))
    if margin is not None:
        (results / f"margin_{name}.json").write_text(json.dumps({"own_minus_other": margin}))


def test_sign_test_exact_values():
    cc = load_benchmark("compare_candidates")
    assert cc.sign_test(0, 0) == 1.0
    assert cc.sign_test(3, 3) == 1.0
    assert cc.sign_test(0, 5) == pytest.approx(2 / 32)
    assert cc.sign_test(9, 1) == pytest.approx(2 * 11 / 1024)


def test_compare_pairs_questions_and_reports_wins_losses(tmp_path, capsys):
    cc = load_benchmark("compare_candidates")
    docs = [("a b c", "a b c"), ("x", "a b")]
    _write(tmp_path, "base", [1, 0, 0, 1], [0, 0], docs, margin=1.0)
    _write(tmp_path, "cand", [1, 1, 1, 0], [1, 0], [("a b c", "a b c"), ("a b", "a b")], margin=2.5)
    (row,) = cc.main(["base", "cand", "--results", str(tmp_path), "--out", str(tmp_path / "cmp.json")])
    # per seed: personal won 2 (q1, q2), lost 1 (q3); three seeds
    assert row["personal"] == {"n": 12, "right": 9, "base_right": 6, "won": 6, "lost": 3,
                               "p": pytest.approx(cc.sign_test(6, 3))}
    assert row["niah"]["won"] == 3 and row["niah"]["lost"] == 0
    assert row["realdoc"]["f1"] == pytest.approx(1.0) and row["realdoc"]["base_f1"] == pytest.approx(0.5)
    lo, hi = row["realdoc"]["diff_ci95"]  # diffs 0, 1 (x3 seeds): the interval holds the mean 0.5
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert row["margin"] == 2.5 and row["base_margin"] == 1.0
    out = capsys.readouterr().out
    assert f"| cand | 9/12 (6/3, 0.51) | 3/6 (3/0, 0.25) | 1.000 ({lo:+.3f}, {hi:+.3f}) | +2.50 |" in out
    assert json.loads((tmp_path / "cmp.json").read_text())["candidates"][0]["name"] == "cand"


def test_compare_falls_back_to_means_and_rejects_mismatched_draws(tmp_path, capsys):
    cc = load_benchmark("compare_candidates")
    _write(tmp_path, "old", [1, 0], [0], [("a", "a"), ("b", "c")], keep_all=False)
    _write(tmp_path, "new", [1, 1], [1], [("a", "a"), ("b", "b")])
    (row,) = cc.main(["old", "new", "--results", str(tmp_path)])
    assert row["realdoc"]["diff_ci95"] is None and row["realdoc"]["base_f1"] == 0.5
    assert "unpaired" in capsys.readouterr().out
    _write(tmp_path, "other", [1, 1, 1], [1], [("a", "a")])
    with pytest.raises(SystemExit, match="not judged on the same personal questions"):
        cc.main(["new", "other", "--results", str(tmp_path)])
    with pytest.raises(SystemExit, match="missing"):
        cc.main(["new", "absent", "--results", str(tmp_path)])
