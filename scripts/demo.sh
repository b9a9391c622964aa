#!/usr/bin/env bash
# The main job end to end on the embedded defaults (SQLite + SmolLM2-135M-Instruct + the shipped
# hypernetwork): install, remember two users' profiles as LoRA adapters, answer with no profile in the
# prompt, show per-user isolation, answer with the recalled text in the prompt too (hybrid), export a
# PEFT adapter. Data goes to $D2L_MEMORY_HOME (default ./.demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export D2L_MEMORY_HOME="${D2L_MEMORY_HOME:-$PWD/.demo}" HF_HUB_OFFLINE=1
dm() { echo "+ d2l-memory $*" >&2; .venv/bin/d2l-memory "$@"; }
dm forget --user alice --all --yes >/dev/null 2>&1 || true
dm forget --user bob --all --yes >/dev/null 2>&1 || true
dm ingest --user alice examples/data/alice.txt
dm ingest --user bob examples/data/bob.txt
dm ask --user alice "What city does the user live in?"
dm ask --user bob "What city does the user live in?"
dm ask --user alice "What is the name of the user's dog?"
dm ask --user bob "What is the user's job?"
# the same recall with the memory's text in the prompt too (hybrid: the adapter at half strength)
dm ask --user alice "What is the name of the user's dog?" --context-tokens 1024
dm list --user alice
dm export --user alice --peft "$D2L_MEMORY_HOME/alice-peft"
ls -l "$D2L_MEMORY_HOME/alice-peft"
