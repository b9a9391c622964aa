#!/usr/bin/env bash
# Start a private PostgreSQL server for the d2l-memory store tests and benchmarks.
#
# Run as root. Creates (once) a cluster owned by the `postgres` user, starts it on
# 127.0.0.1:${D2L_PG_PORT:-55432}, creates the database `d2l_test` and prints its URL:
#
#     export D2L_TEST_POSTGRES_URL="$(scripts/start_postgres.sh)"
#
# Extra server options can be passed in D2L_PG_OPTS (e.g. "-c fsync=off"); D2L_PG_BIN names another
# directory of server binaries, e.g. the PostgreSQL 16 + pgvector bundled in the pgserver wheel:
#     pip download --no-deps pgserver==0.1.4 && unzip pgserver-*.whl 'pgserver/pginstall/*' -d /opt/pgs
#     chmod -R a+rX /opt/pgs
#     D2L_PG_BIN=/opt/pgs/pgserver/pginstall/bin D2L_PG_PORT=55433 D2L_PG_DATA=/tmp/d2l-pgvector-data \
#         scripts/start_postgres.sh
# Idempotent: when the server is already running it only prints the URL.
# Stop it with:  su postgres -c "pg_ctl -D ${D2L_PG_DATA:-/tmp/d2l-pgdata} stop -m fast"
set -euo pipefail

PORT="${D2L_PG_PORT:-55432}"
DATA="${D2L_PG_DATA:-/tmp/d2l-pgdata}"
DB="${D2L_PG_DB:-d2l_test}"
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "start_postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (it runs the server as the 'postgres' user)"; exit 1
fi
if ! id postgres >/dev/null 2>&1; then
  log "the 'postgres' system user does not exist; install postgresql first"; exit 1
fi
if [ -n "${D2L_PG_BIN:-}" ]; then export PATH="$D2L_PG_BIN:$PATH"; fi
for tool in initdb pg_ctl psql; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    # Debian keeps the server binaries outside the PATH.
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$PGBIN" ] && [ -x "$PGBIN/$tool" ]; then export PATH="$PGBIN:$PATH"; else
      log "'$tool' not found on PATH"; exit 1; fi
  fi
done
as_pg() { su postgres -s /bin/bash -c "PATH='$PATH' $*"; }

if [ ! -s "$DATA/PG_VERSION" ]; then
  log "initialising a cluster in $DATA"
  mkdir -p "$DATA"
  chown postgres:postgres "$DATA"
  chmod 700 "$DATA"
  as_pg "initdb -D '$DATA' -A trust -U postgres -E UTF8 --locale=C.UTF-8" >/dev/null 2>&1 \
    || as_pg "initdb -D '$DATA' -A trust -U postgres -E UTF8 --no-locale" >/dev/null
fi

if as_pg "pg_ctl -D '$DATA' status" >/dev/null 2>&1; then
  log "already running (data dir $DATA)"
else
  log "starting on 127.0.0.1:$PORT"
  as_pg "pg_ctl -D '$DATA' -l '$DATA/server.log' -w -t 60 \
    -o \"-h 127.0.0.1 -p $PORT -k '$DATA' -c max_connections=200 ${D2L_PG_OPTS:-}\" start" >/dev/null
fi

PSQL="psql -h 127.0.0.1 -p $PORT -U postgres -d postgres -tAq"
if [ "$(as_pg "$PSQL -c \"SELECT 1 FROM pg_database WHERE datname = '$DB'\"")" != "1" ]; then
  as_pg "$PSQL -c 'CREATE DATABASE $DB'"
  log "created database $DB"
fi

echo "$URL"
