#!/bin/bash
# Score a candidate checkpoint the way the shipped one is judged (benchmarks/RESULTS.md, issue 3):
#   held-out loss on the seed-0 set, exact match and error kinds on three held-out draws (personal, NIAH),
#   real-document word F1 on the same draws, and the own-minus-other-user margin.
# usage: bash benchmarks/eval_candidate.sh CKPT NAME [VALDATA]     (VALDATA: validate's cached held-out set)
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:?checkpoint directory or shipped name}; N=${2:?a name for the result files}; V=${3:-runs/val_s0r}
R=benchmarks/results; PY=${PYTHON:-.venv/bin/python}
$PY -m d2l_memory.training.validate "$C" --personal 64 --niah 32 --facts 64 --realdoc 16 --base-dtype bfloat16 \
    --data "$V" --out "$R/heldout_loss_$N.json"
$PY benchmarks/answer_errors.py --checkpoint "$C" --seeds 0,7,11 --n 16 --out "$R/answer_errors_$N.json"
for s in 0 7 11; do
    $PY -m d2l_memory.evaluation --checkpoint "$C" --kinds realdoc --n 16 --seed $s --conditions d2l --examples -1 \
        --out "$R/eval_realdoc_${N}_seed$s.json"
done
$PY benchmarks/user_margin.py --checkpoint "$C" | tail -1 > "$R/margin_$N.json"
