#!/usr/bin/env bash
# The test suite: installs what is missing, starts a private PostgreSQL (when run as root and the server
# binaries exist) so the store tests cover both backends, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -z "${D2L_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1; then
  D2L_TEST_POSTGRES_URL="$(bash scripts/start_postgres.sh)" && export D2L_TEST_POSTGRES_URL
fi
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/python -m pytest -q "$@"
