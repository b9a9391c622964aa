#!/usr/bin/env bash
# One training stage on a lent GPU, inside a fixed wall-clock budget (how the H200 stage in RESULTS.md was run).
#
# benchmarks/gpu_prepare.sh builds what it expects under $G (default runs/gpu: ignored by .gitignore, so a warm
# machine keeps it between calls; paths ignored only by .git/info/exclude were deleted): ga + gb (the SmolLM2
# GGUF in two halves), ckpt/ (the checkpoint to start from), data.tgz (train.jsonl + spec.json; targets.* are
# computed here when absent) and site/ (wheels installed with pip --target). Steps: join + dequantize the base
# model once; a throwaway run computes the targets and times SMOKE steps; pick the step count that fills
# BUDGET seconds (FILL corrects the smoke's warm-up-inflated step time); train from ckpt; leave the result as
# tar pieces of at most 15 MiB in $OUT (the device tool's way back).
# Knobs: LR GLR (gains' lr multiplier) DPS (docs per step) QPD (questions per document per step; 4 beat 1 on
# CPU, RESULTS.md "Twelfth session") SF (single facts) HYPERNET (JSON overrides)
# VALEVERY VAL (held-out loss during the run: `recipe --val-every/--val`; VALEVERY=0 turns it off).
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
for d in smoke run; do rm -rf "$G/$d"; mkdir -p "$G/$d/data"; tar xzf "$G/data.tgz" -C "$G/$d/data"; done
# the data spec is the one the samples were built with (benchmarks/gpu_prepare.sh)
read -r PERSONAL NIAH REALDOC SEED PHRASING < <($PY -c "import json, sys; s = json.load(open(sys.argv[1]))
print(s['personal'], s['niah'], s['realdoc'], s['seed'], s.get('phrasing', 'third'))" "$G/run/data/spec.json")
ARGS=(--init-from "$G/ckpt" --hypernet "$HYPERNET" --gain-lr-mult "${GLR:-1}"
      --lr "${LR:-1e-4}" --warmup 30 --contrast-weight 0.3 --docs-per-step "$DPS" --qas-per-doc "${QPD:-4}"
      --max-chunks 4
      --personal "$PERSONAL" --niah "$NIAH" --realdoc "$REALDOC" --seed "$SEED" --single-facts "${SF:-3000}"
      --phrasing "$PHRASING")
echo "setup $(( $(date +%s) - t0 ))s"
$PY -m d2l_memory.training.recipe --out "$G/smoke" --steps 1000 --until "$SMOKE" --save-every 500 "${ARGS[@]}" \
  > "$OUT/smoke.log" 2>&1 || { tail -30 "$OUT/smoke.log"; exit 1; }
cp -n "$G/smoke/data"/targets.* "$G/run/data/"  # the teacher ran once, in the smoke run
N=$($PY - "$G/smoke/log.jsonl" "$BUDGET" "$MAXN" "${FILL:-1.5}" <<'EOF'
import json, statistics, sys
secs = [json.loads(line)["sec"] for line in open(sys.argv[1])][2:] or [1.0]
s = statistics.median(secs)
n = max(50, min(int(sys.argv[3]), int(float(sys.argv[4]) * float(sys.argv[2]) / (s + 0.02))))
print(n); print(f"median {s:.3f}s/step -> {n} steps", file=sys.stderr)
EOF
)
echo "training $N steps ($(( $(date +%s) - t0 ))s so far)"
timeout "$BUDGET" $PY -m d2l_memory.training.recipe --out "$G/run" --steps "$N" --save-every 50 "${ARGS[@]}" \
  --val-every "${VALEVERY:-100}" --val "${VAL:-personal=64,niah=32,facts=64,realdoc=16}" > "$OUT/train.log" 2>&1; echo "train rc $? after $(( $(date +%s) - t0 ))s"
tail -5 "$OUT/train.log"
tar cf - -C "$G/run" $(cd "$G/run" && ls -d final log.jsonl val.jsonl learning_curve.png 2>/dev/null) | split -b 15M - "$OUT/stage.tar."
ls -la "$OUT"
