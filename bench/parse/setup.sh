#!/usr/bin/env bash
# Installs and starts the peer of issue 6: Parse Server 9 (pinned in
# package.json / package-lock.json) on a PostgreSQL it is given.
#
#   PARSE_PG_URI=postgres://postgres@127.0.0.1:PORT/parse_bench bench/parse/setup.sh [--fresh]
#
#  1. npm ci into bench/parse/node_modules (skipped when it is up to date);
#  2. creates the database named in PARSE_PG_URI if missing (--fresh: drops
#     it first);
#  3. starts bench/parse/server.js on 127.0.0.1:$PARSE_PORT (default 1337),
#     pid in $PARSE_BENCH_DIR/parse.pid, output in $PARSE_BENCH_DIR/parse.log,
#     and waits for /parse/health. bench/parse/stop.sh stops it by that pid.
#
# Environment: PARSE_PG_URI (required), PARSE_MASTER_KEY (default: a random
# key written to $PARSE_BENCH_DIR/master.key), PARSE_APP_ID (stockflow-bench),
# PARSE_PORT (1337), PARSE_BENCH_DIR (/tmp/parse-bench-peer),
# PARSE_IDEMPOTENCY=1 (Parse's request idempotency on classes/.*), PARSE_CLOUD (a
# Cloud Code file, e.g. tests/parse/cloud.js for tests/parse/flow.js).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FRESH=0
case "${1:-}" in
  "") ;;
  --fresh) FRESH=1 ;;
  *) echo "usage: bench/parse/setup.sh [--fresh]" >&2; exit 2 ;;
esac
die() { printf 'bench/parse/setup.sh: %s\n' "$*" >&2; exit 1; }

: "${PARSE_PG_URI:?set PARSE_PG_URI=postgres://USER@HOST:PORT/DBNAME}"
DIR="${PARSE_BENCH_DIR:-/tmp/parse-bench-peer}"
PORT="${PARSE_PORT:-1337}"
mkdir -p "$DIR"

# ---- 1. packages ----
command -v node >/dev/null || die "node not found (Node.js >= 20.19 needed)"
STAMP="$HERE/node_modules/.stockflow-lock.sha256"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$(sha256sum <"$HERE/package-lock.json")" ]; then
  echo "setup: npm ci in $HERE" >&2
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >"$DIR/npm.log" 2>&1 \
    || { tail -n 20 "$DIR/npm.log" >&2; die "npm ci failed (log $DIR/npm.log)"; }
  sha256sum <"$HERE/package-lock.json" >"$STAMP"
fi

# ---- 2. the database ----
DB="${PARSE_PG_URI##*/}"; DB="${DB%%\?*}"
ADMIN_URI="${PARSE_PG_URI%/*}/postgres"
[[ "$DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "database name '$DB' in PARSE_PG_URI is not a plain identifier"
psql "$ADMIN_URI" -v ON_ERROR_STOP=1 -qAt -c 'select 1' >/dev/null || die "cannot reach PostgreSQL at $ADMIN_URI"
if [ "$FRESH" = 1 ]; then
  psql "$ADMIN_URI" -v ON_ERROR_STOP=1 -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || die "drop $DB failed"
fi
if [ "$(psql "$ADMIN_URI" -qAt -c "select 1 from pg_database where datname = '$DB'")" != 1 ]; then
  psql "$ADMIN_URI" -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE $DB" || die "create $DB failed"
fi

# ---- 3. the server ----
if [ -z "${PARSE_MASTER_KEY:-}" ]; then
  [ -s "$DIR/master.key" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$DIR/master.key"
  PARSE_MASTER_KEY="$(cat "$DIR/master.key")"
fi
export PARSE_PG_URI PARSE_MASTER_KEY PARSE_PORT="$PORT"
export PARSE_APP_ID="${PARSE_APP_ID:-stockflow-bench}"
export PARSE_LOG_DIR="$DIR/logs"
if [ -f "$DIR/parse.pid" ] && kill -0 "$(cat "$DIR/parse.pid")" 2>/dev/null; then
  die "Parse Server already runs (pid $(cat "$DIR/parse.pid")); bench/parse/stop.sh first"
fi
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && die "port $PORT is in use"
# From $DIR: parse-server's logger writes ./logs of the working directory
# before it reads logsFolder.
cd "$DIR"
NODE_ENV=production node "$HERE/server.js" >"$DIR/parse.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$DIR/parse.pid"
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/parse/health" 2>/dev/null)" = 200 ]; do
  if ! kill -0 "$PID" 2>/dev/null; then
    tail -n 20 "$DIR/parse.log" >&2
    rm -f "$DIR/parse.pid"
    die "Parse Server exited while starting (log $DIR/parse.log)"
  fi
  ((SECONDS < deadline)) || { tail -n 20 "$DIR/parse.log" >&2; die "Parse Server not ready in 60 s"; }
  sleep 0.2
done
echo "setup: Parse Server pid $PID on http://127.0.0.1:$PORT/parse (log $DIR/parse.log)" >&2
