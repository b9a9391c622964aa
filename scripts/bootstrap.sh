#!/usr/bin/env bash
# Create .venv (if missing) and install d2l-memory with its pinned stack; fetch SmolLM2-135M-Instruct once.
# Idempotent and quiet on re-runs. Used by scripts/demo.sh, scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import d2l_memory, langchain_tests, psycopg" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.d2l-installed ]; then
  .venv/bin/pip install -q --upgrade pip
  # torch is pinned in the same resolve, so pip takes the CPU wheel from the index, not a multi-GB CUDA build.
  .venv/bin/pip install -q -e ".[dev]"
  touch .venv/.d2l-installed
fi
# The default base model, dequantized once into the user cache (~25 s the first time).
.venv/bin/python -c "from d2l_memory.models import fetch_default_model; print('base model:', fetch_default_model(quiet=True))"
