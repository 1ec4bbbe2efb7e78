#!/usr/bin/env bash
# Stops the Parse Server started by bench/parse/setup.sh, by the pid in
# $PARSE_BENCH_DIR/parse.pid (SIGTERM, up to 10 s, then SIGKILL).
set -uo pipefail
DIR="${PARSE_BENCH_DIR:-/tmp/parse-bench-peer}"
[ -f "$DIR/parse.pid" ] || { echo "stop: no $DIR/parse.pid" >&2; exit 0; }
PID="$(cat "$DIR/parse.pid")"
if kill -0 "$PID" 2>/dev/null; then
  kill -TERM "$PID"
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$PID" 2>/dev/null && { echo "stop: pid $PID ignored SIGTERM: SIGKILL" >&2; kill -KILL "$PID"; }
fi
rm -f "$DIR/parse.pid"
echo "stop: Parse Server (pid $PID) stopped" >&2
