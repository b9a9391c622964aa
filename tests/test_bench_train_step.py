"""benchmarks/bench_train_step.py: the side-by-side report and its argument checks."""

import argparse
import json

import pytest
from benchscripts import load_benchmark


def _runs(base_secs, tree_secs):
    def run(secs, loss):
        return [{"step": i, "sec": s, "loss": loss, "grad_norm": 1.0, "rows": 8, "chunks": 4} for i, s in enumerate(secs)]

    return {"baseline": [run(b, 1.0) for b in base_secs], "this tree": [run(t, 1.01) for t in tree_secs]}


def test_report_prints_median_ratios_and_writes_json(tmp_path, capsys):
    bench = load_benchmark("bench_train_step")
    out = tmp_path / "r.json"
    args = argparse.Namespace(docs=16, qas=4, dtype="bfloat16", device="cpu", baseline="abc", rounds=3, batches=2,
                              out=str(out))
    # per batch, the median over three rounds: baseline 30 and 60 s, this tree 10 and 20 s
    bench.report(_runs([[30, 60], [31, 90], [1, 59]], [[10, 20], [11, 21], [9, 19]]), args)
    text = capsys.readouterr().out
    assert "| 0 | 8 | 4 | 30.00 | 10.00 | 3.00x |" in text and "| 1 | 8 | 4 | 60.00 | 20.00 | 3.00x |" in text
    assert "baseline 90.0 s, this tree 30.0 s: 3.00x faster" in text
    assert json.loads(out.read_text())["runs"]["baseline"][1][1]["sec"] == 90


def test_bad_counts_are_refused_before_any_work():
    bench = load_benchmark("bench_train_step")
    with pytest.raises(SystemExit):
        bench.main(["--batches", "0"])
