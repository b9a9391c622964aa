#!/usr/bin/env bash
# One training stage on a lent GPU, inside a fixed wall-clock budget (how the H200 stage in RESULTS.md was run).
#
# benchmarks/gpu_prepare.sh builds what it expects under $G (default runs/gpu: ignored by .gitignore, so a warm
# machine keeps it between calls; paths ignored only by .git/info/exclude were deleted): ga + gb (the SmolLM2
# GGUF in two halves), ckpt/ (the checkpoint to start from), data.tgz (data/ with train.jsonl + spec.json,
# val_data/ with the held-out test.jsonl, val.txt with their --val; targets are computed here) and site/
# (wheels installed with pip --target). Steps: join + dequantize the base
# model once; a throwaway run computes the targets and times SMOKE steps; pick the step count that fills
# BUDGET seconds (FILL corrects the smoke's warm-up-inflated step time); train from ckpt; leave the result as
# tar pieces of at most 15 MiB in $OUT (the device tool's way back).
# Knobs: LR GLR (gains' lr multiplier) DPS (docs per step) QPD (questions per document per step; 4 beat 1 on
# CPU, RESULTS.md "Twelfth session") SF (single facts) HYPERNET (JSON overrides)
# VALEVERY (held-out loss every that many steps: `recipe --val-every`, on the documents gpu_prepare.sh built
# from its VAL; VALEVERY=0 turns it off).
# LRS="1e-4 5e-5": one run per lr, side by side on the one GPU (a SmolLM2 step is launch-bound, so they share
# it); SLOW = how much slower a step gets with them all running (sizes the step count). Each run keeps a
# snapshot at every held-out point; the one with the lowest held-out loss (mean over kinds of own loss / its
# step-0 value) comes back as stage.tar.*, the runner-up's is left in $G/second.tar (a next call can send it:
# split -b 15M $G/second.tar $OUT/second.tar.), with every run's log.jsonl and val.jsonl and the pick.
# Dry-run on CPU: PY=.venv/bin/python SMOKE=2 BUDGET=60 DPS=2 OUT=/tmp/gpuout bash $0
set -uo pipefail
cd "$(dirname "$0")/.."
G=${G:-runs/gpu}; PY=${PY:-python3}; OUT=${OUT:-$G/out}; HYPERNET=${HYPERNET:-"{}"}
BUDGET=${BUDGET:-400}; SMOKE=${SMOKE:-10}; DPS=${DPS:-16}; MAXN=${MAXN:-3000}
export PYTHONPATH=$PWD/$G/site${PYTHONPATH:+:$PYTHONPATH} D2L_MEMORY_CACHE=$PWD/$G/cache HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1 TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1
mkdir -p "$G/cache/models" "$OUT"
t0=$(date +%s)
if [ ! -f "$G/cache/models/smollm2-135m/config.json" ]; then
  cat "$G/ga" "$G/gb" > "$G/cache/models/smollm2-135m.gguf"
  $PY -c "from d2l_memory.models import fetch_default_model as f; print('base model:', f(quiet=True))" || exit 1
fi
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
      'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
# REUSE=1 (a rerun on the same warm machine): keep the last smoke run, its teacher targets and its step time
reuse=0; [ "${REUSE:-0}" = 1 ] && [ -f "$G/smoke/data/targets.json" ] && [ -f "$G/smoke/log.jsonl" ] && reuse=1
for d in smoke run; do
  [ "$d" = smoke ] && [ "$reuse" = 1 ] && continue
  rm -rf "$G/$d"; mkdir -p "$G/$d"; tar xzf "$G/data.tgz" -C "$G/$d"
done
rm -rf "$G/smoke/val_data"; VAL=$(cat "$G/run/val.txt")  # the held-out documents built with the data
# the data spec is the one the samples were built with (benchmarks/gpu_prepare.sh)
read -r PERSONAL NIAH REALDOC SEED PHRASING < <($PY -c "import json, sys; s = json.load(open(sys.argv[1]))
print(s['personal'], s['niah'], s['realdoc'], s['seed'], s.get('phrasing', 'third'))" "$G/run/data/spec.json")
ARGS=(--init-from "$G/ckpt" --hypernet "$HYPERNET" --gain-lr-mult "${GLR:-1}"
      --lr "${LR:-1e-4}" --warmup 30 --contrast-weight 0.3 --docs-per-step "$DPS" --qas-per-doc "${QPD:-4}"
      --max-chunks 4
      --personal "$PERSONAL" --niah "$NIAH" --realdoc "$REALDOC" --seed "$SEED" --single-facts "${SF:-6000}"
      --phrasing "$PHRASING")
echo "setup $(( $(date +%s) - t0 ))s"
[ "$reuse" = 1 ] && echo "reusing the last smoke run" || \
$PY -m d2l_memory.training.recipe --out "$G/smoke" --steps 1000 --until "$SMOKE" --save-every 500 "${ARGS[@]}" \
  > "$OUT/smoke.log" 2>&1 || { tail -30 "$OUT/smoke.log"; exit 1; }
cp "$G/smoke/data"/targets.* "$G/run/data/"  # the teacher ran once, in the smoke run
N=$($PY - "$G/smoke/log.jsonl" "$BUDGET" "$MAXN" "${FILL:-1.5}" "${SLOW:-1}" <<'EOF'
import json, statistics, sys
secs = [json.loads(line)["sec"] for line in open(sys.argv[1])][2:] or [1.0]
s = statistics.median(secs) * float(sys.argv[5])
n = max(50, min(int(sys.argv[3]), int(float(sys.argv[4]) * float(sys.argv[2]) / (s + 0.02))))
print(n); print(f"median {s:.3f}s/step -> {n} steps", file=sys.stderr)
EOF
)
echo "training $N steps x runs at lr ${LRS:-${LR:-1e-4}} ($(( $(date +%s) - t0 ))s so far)"
pids=(); i=0; KEEP=${VALEVERY:-100}; [ "$KEEP" -gt 0 ] || KEEP=50
for lr in ${LRS:-${LR:-1e-4}}; do
  i=$((i + 1)); R="$G/run"  # the first run uses the extracted data; the others copy it, targets included
  [ "$i" = 1 ] || { R="$G/run$i"; rm -rf "$R"; mkdir -p "$R"; cp -r "$G/run/data" "$G/run/val_data" "$R/"; }
  $PY -m d2l_memory.training.recipe --out "$R" --steps "$N" --save-every 100 "${ARGS[@]}" \
    --lr "$lr" --keep-every "$KEEP" --val-every "${VALEVERY:-100}" \
    --val "$VAL" > "$OUT/train$i.log" 2>&1 &
  pids+=($!)
done
# the budget: stop every run after BUDGET seconds (their last kept snapshots stay)
( sleep "$BUDGET"; kill "${pids[@]}" ) >/dev/null 2>&1 & dog=$!
wait "${pids[@]}"; pkill -P "$dog" sleep 2>/dev/null; kill "$dog" 2>/dev/null; echo "train done after $(( $(date +%s) - t0 ))s"
for f in "$OUT"/train*.log; do echo "== $f"; grep -E "held-out|Error|error" "$f" | tail -4; tail -2 "$f"; done
$PY - "$G" > "$OUT/pick.json" <<'EOF2'
import json, sys
from pathlib import Path
g = Path(sys.argv[1])
cands = []
for run in sorted(g.glob("run*")):
    rows = [json.loads(x) for x in open(run / "val.jsonl")] if (run / "val.jsonl").is_file() else []
    if not rows:
        continue
    base = rows[0]["val"]
    for r in rows[1:]:
        snap = run / f"step_{r['step']:05d}"
        if (snap / "d2l_config.json").is_file():
            score = sum(r["val"][k]["own"] / base[k]["own"] for k in base) / len(base)
            cands.append({"snapshot": str(snap), "step": r["step"], "score": round(score, 4),
                          "own": {k: round(v["own"], 4) for k, v in r["val"].items()}})
cands.sort(key=lambda c: c["score"])
print(json.dumps({"ranked": cands}, indent=1))
EOF2
head -40 "$OUT/pick.json"
{ read -r best; read -r second; } < <($PY -c "import json, sys; r = json.load(open(sys.argv[1]))['ranked']
print('\n'.join(c['snapshot'] for c in r[:2]))" "$OUT/pick.json")
[ -n "$best" ] || { [ -f "$G/run/final/d2l_config.json" ] && best="$G/run/final"; }  # no held-out point passed
rm -rf "$G/logs"; mkdir -p "$G/logs"; for R in "$G"/run*; do n=$(basename "$R"); cp "$R/log.jsonl" "$G/logs/$n.log.jsonl" 2>/dev/null; cp "$R/val.jsonl" "$G/logs/$n.val.jsonl" 2>/dev/null; done
cp "$OUT/pick.json" "$G/logs/"; mv "$OUT"/*.log "$G/logs/"  # 8 files come back at most: the logs travel in the tar
[ -n "$best" ] && tar cf - -C "$(dirname "$best")" "$(basename "$best")" -C "$PWD/$G" logs | split -b 15M - "$OUT/stage.tar."
[ -n "$second" ] && tar cf "$G/second.tar" -C "$(dirname "$second")" "$(basename "$second")"
ls -la "$OUT"
