"""Paired comparison of candidate checkpoints judged by `benchmarks/eval_candidate.sh`, question by question.

Small held-out draws (228 personal questions, 48 haystacks, 48 real-document questions) make a 3-question gain
noise; this pairs each question across checkpoints and reports, against a baseline, the questions won and lost
with an exact two-sided sign test (personal, NIAH exact match) and a paired bootstrap 95% interval of the
real-document F1 difference, next to the held-out losses and the user margin.

    python benchmarks/compare_candidates.py shipped_s19 probe23_step_00300 [more names] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from d2l_memory.evaluation import exact_match, word_f1

RESULTS = Path(__file__).parent / "results"
SEEDS = (0, 7, 11)


def _scores(block: dict, score, seed: int) -> dict[tuple, float] | None:
    """{(seed, doc, question): score} of one evaluation block, or None where it keeps only some examples
    (older runs without `--examples -1`)."""
    if len(block["examples"]) != block["n"]:
        return None
    return {(seed, e["doc"], e["q"]): score(e["pred"], e["gold"]) for e in block["examples"]}


def per_question(name: str, results: Path = RESULTS) -> tuple[dict[str, dict[tuple, float] | None], float]:
    """({kind: {(seed, doc, question): score}}, mean real-document F1 over the seeds): exact match for personal
    and NIAH, word F1 for real documents; None for a kind whose files keep only some examples."""
    out: dict[str, dict[tuple, float] | None] = {"personal": {}, "niah": {}, "realdoc": {}}
    f1s = []
    for s in SEEDS:
        errors = results / f"answer_errors_{name}_seed{s}.json"
        realdoc = results / f"eval_realdoc_{name}_seed{s}.json"
        for f in (errors, realdoc):
            if not f.is_file():
                raise SystemExit(f"missing {f}: run `bash benchmarks/eval_candidate.sh CKPT {name}` first")
        blocks = {k: v["d2l"] for k, v in json.loads(errors.read_text()).items()}
        blocks["realdoc"] = json.loads(realdoc.read_text())["realdoc"]["d2l"]
        f1s.append(blocks["realdoc"]["f1"])
        for kind in out:
            scores = _scores(blocks[kind], word_f1 if kind == "realdoc" else exact_match, s)
            out[kind] = None if scores is None or out[kind] is None else {**out[kind], **scores}
    return out, sum(f1s) / len(f1s)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial p-value of `wins` vs `losses` under p = 1/2 (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_diff(a: list[float], b: list[float], rounds: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(b - a) over questions resampled with replacement."""
    rng = random.Random(seed)
    d = [y - x for x, y in zip(a, b, strict=True)]
    means = sorted(sum(rng.choices(d, k=len(d))) / len(d) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def compare(base: str, cand: str, results: Path = RESULTS) -> dict:
    (qa, mean_a), (qb, mean_b) = per_question(base, results), per_question(cand, results)
    row: dict = {"name": cand}
    for kind in ("personal", "niah", "realdoc"):
        if qa[kind] is None or qb[kind] is None:  # only the means are on record: no pairing
            if kind != "realdoc":
                raise SystemExit(f"{base} or {cand} keeps only some {kind} examples; rerun eval_candidate.sh")
            row[kind] = {"n": None, "f1": mean_b, "base_f1": mean_a, "diff_ci95": None}
            continue
        keys = sorted(set(qa[kind]) & set(qb[kind]))
        if len(keys) != len(qa[kind]) or len(keys) != len(qb[kind]):
            raise SystemExit(f"{base} and {cand} were not judged on the same {kind} questions "
                             f"({len(qa[kind])} vs {len(qb[kind])}, {len(keys)} shared)")
        a, b = [qa[kind][k] for k in keys], [qb[kind][k] for k in keys]
        if kind == "realdoc":
            lo, hi = bootstrap_diff(a, b)
            row[kind] = {"n": len(keys), "f1": sum(b) / len(b), "base_f1": sum(a) / len(a), "diff_ci95": [lo, hi]}
        else:
            wins = sum(y > x for x, y in zip(a, b, strict=True))
            losses = sum(y < x for x, y in zip(a, b, strict=True))
            row[kind] = {"n": len(keys), "right": int(sum(b)), "base_right": int(sum(a)), "won": wins,
                         "lost": losses, "p": sign_test(wins, losses)}
    for tag, fname in (("margin", f"margin_{cand}.json"), ("base_margin", f"margin_{base}.json")):
        f = results / fname
        row[tag] = json.loads(f.read_text())["own_minus_other"] if f.is_file() else None
    f = results / f"heldout_loss_{cand}.json"
    if f.is_file():
        (res,) = json.loads(f.read_text())["results"].values()
        row["heldout_own"] = {k: v["own"] for k, v in res.items()}
    return row


def _margin(m: float | None) -> str:
    return f"{m:+.2f}" if m is not None else "-"


def to_markdown(base: str, rows: list[dict]) -> str:
    lines = [f"baseline `{base}`: personal {rows[0]['personal']['base_right']}/{rows[0]['personal']['n']}, "
             f"NIAH {rows[0]['niah']['base_right']}/{rows[0]['niah']['n']}, "
             f"real-document F1 {rows[0]['realdoc']['base_f1']:.3f}, margin {_margin(rows[0]['base_margin'])}", "",
             "| candidate | personal (won/lost, p) | NIAH (won/lost, p) | real-doc F1 (diff 95% CI) | margin |",
             "|---|---|---|---|---|"]
    for r in rows:
        p, n, d = r["personal"], r["niah"], r["realdoc"]
        ci = f"{d['diff_ci95'][0]:+.3f}, {d['diff_ci95'][1]:+.3f}" if d["diff_ci95"] else "unpaired"
        lines.append(f"| {r['name']} | {p['right']}/{p['n']} ({p['won']}/{p['lost']}, {p['p']:.2f}) | "
                     f"{n['right']}/{n['n']} ({n['won']}/{n['lost']}, {n['p']:.2f}) | "
                     f"{d['f1']:.3f} ({ci}) | {_margin(r['margin'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", help="the baseline's result name, e.g. shipped_s19")
    p.add_argument("candidates", nargs="+")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    rows = [compare(a.base, c, a.results) for c in a.candidates]
    print(to_markdown(a.base, rows))
    if a.out:
        a.out.write_text(json.dumps({"base": a.base, "candidates": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
