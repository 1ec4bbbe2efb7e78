#!/usr/bin/env bash
# The benchmarks, in one go, each next to the physical limit measured in the
# same run with the same client and payloads (so a noisy machine still gives
# a fair ratio). Writes docs/benchmarks.md and prints the same table.
#
#   bench/run.sh            full run (20 s per HTTP figure, 1M-event logs),
#                           stockflow and then the peer (Parse Server, step
#                           9); the report opens with stockflow next to
#                           Parse and the limits
#   bench/run.sh --quick    short run (3 s per figure, 30k-event logs; under
#                           3 minutes once built): the sanity check CI runs
#   bench/run.sh [--quick] --without-parse
#                           stockflow and the limits only
#
# What it does:
#  1. builds Release into build-bench (STOCKFLOW_BENCH_BUILD_DIR);
#  2. starts a private Kafka and PostgreSQL (deploy/local scripts) with their
#     own state folder and ports, and the three services;
#  3. seeds 20 stores x 1,000 products with 1,000,000 units each through the
#     command API;
#  4. write side: the HTTP limit (bench/http201.c) and the command mix (70 %
#     sales, 20 % receipts, 5 % transfers, 5 % orders then fulfil or cancel)
#     at 64 keep-alive connections, closed loop; both again open loop at half
#     of the command peak for p99; batch intake (POST /v1/batches, 1,000
#     movements each) against the Kafka limit (bench/kafka_limit.c, raw
#     transactional producer, the same encoded events, transactions of 1,000);
#  5. rebuild: a command service started on a generated log (1,000 stores x
#     1,000 products, one event per pair: 1M pairs in the full run), timed
#     by its "state rebuilt in" log line, its VmRSS read after; plus the
#     in-process fold/decode speed and state memory (bench/state_mem.c);
#  6. read side: the projector replaying the generated log into an empty
#     database against bench/pg_limit.c (COPY into staging + upsert of the
#     same rows); point lookups and 100-row store pages over HTTP at 64
#     connections against pgbench running the same prepared SELECTs at 64
#     clients;
#  7. change streams (bench/freshness.c, one process for both sides so the
#     times share one clock): 10,000 idle SSE subscribers to GET /v1/changes
#     held 10 s with the query service's VmRSS read (quick: 2,000, 3 s); then
#     1,000 subscribers (50 per store; quick: 200) while sales go to the
#     command service at 1,000/s open loop, and the time from each write's
#     201 answer to its change's arrival at every subscriber of its store;
#     and at the peer's real-time load (one subscriber of one store, 100
#     sales/s to it, 30 s; quick 5 s), the same two times as bench/parse's
#     LiveQuery figure (from the write's answer and from its send).
#  8. correctness (bench/correctness.py, plain HTTP from Python threads,
#     the same kind of client as the peer's): 32 clients x 10 sales of 1
#     from stock 100; an SSE client away 5 s during 100 changes, resuming
#     with Last-Event-ID; a sale retried with the same Idempotency-Key;
#  8b. the Parse SDK flow (tests/parse/flow.js --bench, the parse npm SDK)
#     on stockflow's facade through the gateway: log-in, an Inventory query
#     with where, a Transaction saved, the LiveQuery update it causes (20
#     rounds quick, 200 full); the peer runs the same flow (bench/parse/run.sh
#     step 6), and the report puts them side by side;
#  9. unless --without-parse: a pure-sale run (POST /v1/stores/{store}/transactions
#     at 64 connections, and the same spec against the fixed-201 server) in
#     step 4; then, once the stockflow stack is stopped, bench/parse/run.sh
#     (same duration, same sf-loadgen, same connection count; its results go
#     to $STATE/results/parse.json).
# The report (bench/report.py) also draws PNG plots with gnuplot (installed
# by this script with apt-get when missing) into docs/img/.
# Every process it starts is stopped by its pid when it exits.
#
# Environment (all optional):
#   STOCKFLOW_BENCH_STATE_DIR   state folder (default /tmp/stockflow-bench;
#                               wiped at the start if this script made it)
#   STOCKFLOW_BENCH_BUILD_DIR   build folder (default <repo>/build-bench)
#   STOCKFLOW_BENCH_PORT_BASE   first of the ports used (default 29080)
#   STOCKFLOW_BENCH_DURATION    seconds per HTTP figure (default 20; quick 3)
#   STOCKFLOW_BENCH_EVENTS      events of the generated logs (default 1M;
#                               quick 30k)
#   STOCKFLOW_BENCH_TOKEN       Bearer token for the services when auth is on
#   STOCKFLOW_BENCH_NO_DOC=1    do not write docs/benchmarks.md
#   STOCKFLOW_BENCH_ONLY=streams  after the seed, only step 7 (the report
#                               goes to $STATE/results/benchmarks.md)
#   STOCKFLOW_BENCH_HOLD=1      after the seed, keep the stack up for
#                               experiments ($STATE/stack.env) until stopped
#   STOCKFLOW_BENCH_PERF=1      also profile the whole machine (perf record
#                               -a -g) during the command, batch, rebuild and
#                               store-page runs: $STATE/results/perf-*.txt
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/deploy/local"
CMDLINE="bench/run.sh $*"
QUICK=0
WITH_PARSE=1
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --with-parse) WITH_PARSE=1 ;; # the default; kept for older command lines
    --without-parse) WITH_PARSE=0 ;;
    -h | --help) sed -n '2,79p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bench/run.sh [--quick] [--without-parse]" >&2; exit 2 ;;
  esac
done

T0=$SECONDS
STATE="${STOCKFLOW_BENCH_STATE_DIR:-/tmp/stockflow-bench}"
BUILD="${STOCKFLOW_BENCH_BUILD_DIR:-$ROOT/build-bench}"
BASE="${STOCKFLOW_BENCH_PORT_BASE:-29080}"
if [ "$QUICK" = 1 ]; then
  DUR="${STOCKFLOW_BENCH_DURATION:-3}"; WARM=0.5
  EVENTS="${STOCKFLOW_BENCH_EVENTS:-30000}"
  FRESH_SUBS=200; IDLE_SUBS=2000; IDLE_HOLD=3; LIVE_S=5
else
  DUR="${STOCKFLOW_BENCH_DURATION:-20}"; WARM=2
  EVENTS="${STOCKFLOW_BENCH_EVENTS:-1000000}"
  FRESH_SUBS=1000; IDLE_SUBS=10000; IDLE_HOLD=10; LIVE_S=30
fi
# the generated log holds one event per store x product pair (1,000 products)
REBUILD_STORES=$((EVENTS / 1000 > 0 ? EVENTS / 1000 : 1))
ONLY="${STOCKFLOW_BENCH_ONLY:-}"
case "$ONLY" in
  "" | streams) ;;
  *) echo "bench/run.sh: STOCKFLOW_BENCH_ONLY must be empty or streams" >&2; exit 2 ;;
esac
FRESH_RATE=1000
STORES=20
PRODUCTS=1000
CONNS=64

PORT_KAFKA=$BASE; PORT_KCTL=$((BASE + 1)); PORT_PG=$((BASE + 2))
PORT_CMD=$((BASE + 3)); PORT_QRY=$((BASE + 4)); PORT_PROJ=$((BASE + 5))
PORT_201=$((BASE + 6)); PORT_CMD2=$((BASE + 7)); PORT_PROJ2=$((BASE + 8))
PORT_GW=$((BASE + 9))

say() { printf '== [%3d s] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

# ---- the private stack's settings (read by deploy/local/lib.sh) ----
MARKER=.stockflow-bench-state
if [ -e "$STATE" ] && [ -n "$(ls -A "$STATE" 2>/dev/null)" ] && [ ! -f "$STATE/$MARKER" ]; then
  die "$STATE is not empty and was not made by bench/run.sh; refusing to wipe it"
fi
export STOCKFLOW_STATE_DIR="$STATE"
export STOCKFLOW_KAFKA_PORT="$PORT_KAFKA"
export STOCKFLOW_KAFKA_CONTROLLER_PORT="$PORT_KCTL"
export STOCKFLOW_PG_PORT="$PORT_PG"
export STOCKFLOW_KAFKA_BROKERS="127.0.0.1:$PORT_KAFKA"
DSN_BASE="host=127.0.0.1 port=$PORT_PG user=postgres"
export STOCKFLOW_PG_DSN="$DSN_BASE dbname=stockflow"
export STOCKFLOW_LOG_LEVEL=info
# Used by the services' first-admin bootstrap when auth is enabled.
export STOCKFLOW_ADMIN_USERNAME="${STOCKFLOW_ADMIN_USERNAME:-benchadmin}"
export STOCKFLOW_ADMIN_PASSWORD="${STOCKFLOW_ADMIN_PASSWORD:-bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')}"

RUN="$STATE/run"; LOGS="$STATE/log"; OUT="$STATE/results"
PIDS=()
STACK=0
GW=0

# shellcheck disable=SC2317  # runs from the trap
cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[$i]}"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
  done
  [ "$GW" = 1 ] && { "$LOCAL/gateway.sh" stop >/dev/null 2>&1 || true; }
  if [ "$STACK" = 1 ]; then
    "$LOCAL/pg.sh" stop >/dev/null 2>&1 || true
    "$LOCAL/kafka.sh" stop >/dev/null 2>&1 || true
  fi
  say "stopped everything this run started (state and logs in $STATE)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME ENV... -- CMD...: starts CMD in the background with ENV, log in
# $LOGS/NAME.log; records the pid (stopped by the trap) in $RUN/NAME.pid.
start() {
  local name="$1"; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  PIDS+=("$pid")
  echo "$pid" >"$RUN/$name.pid"
}

pid_of() { cat "$RUN/$1.pid" 2>/dev/null; }

# stop NAME: SIGTERM by pid, wait up to 20 s, then SIGKILL.
stop() {
  local pid
  pid="$(pid_of "$1")"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$1 (pid $pid) did not stop in 20 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$RUN/$1.pid"
}

# wait_ready NAME URL TIMEOUT_S: until URL answers 200 (fails if NAME died).
wait_ready() {
  local name="$1" url="$2" deadline=$((SECONDS + $3)) pid
  pid="$(pid_of "$name")"
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null)" = 200 ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$LOGS/$name.log" >&2
      die "$name exited while starting (log $LOGS/$name.log)"
    fi
    ((SECONDS < deadline)) || { tail -n 20 "$LOGS/$name.log" >&2; die "$name not ready in $3 s"; }
    sleep 0.2
  done
}

# metric URL NAME: the value of metric NAME (summed over label sets).
metric() {
  curl -s --max-time 5 "$1/metrics" | awk -v n="$2" '
    $1 == n || index($1, n "{") == 1 { s += $NF; found = 1 }
    END { if (found) printf "%.6f\n", s; else print "nan" }'
}

rss_mb() { awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo nan; }

# put KEY VALUE: one figure into the results (numbers or JSON).
put() { python3 - "$OUT/figures.json" "$1" "$2" <<'PY'
import json, sys, os
path, key, val = sys.argv[1:4]
d = json.load(open(path)) if os.path.exists(path) else {}
try:
    d[key] = json.loads(val)
except ValueError:
    d[key] = val
json.dump(d, open(path, "w"), indent=1)
PY
}

# jget FILE EXPR: a field of a JSON file (python expression on d).
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# perf_start NAME / perf_stop NAME: a system-wide profile around one run
# (STOCKFLOW_BENCH_PERF=1 only); the report goes to $OUT/perf-NAME.txt.
PERF_PID=""
perf_start() {
  [ "${STOCKFLOW_BENCH_PERF:-0}" = 1 ] || return 0
  perf record -a -g -F 499 -o "$OUT/perf-$1.data" >"$LOGS/perf-$1.log" 2>&1 &
  PERF_PID=$!
  PIDS+=("$PERF_PID")
}
perf_stop() {
  [ -n "$PERF_PID" ] || return 0
  kill -INT "$PERF_PID" 2>/dev/null
  wait "$PERF_PID" 2>/dev/null
  PERF_PID=""
  {
    echo "### CPU by process and library"
    perf report -i "$OUT/perf-$1.data" --stdio --no-children --sort comm,dso 2>/dev/null | grep -v '^#' | grep '%' | head -25
    echo "### hottest symbols"
    perf report -i "$OUT/perf-$1.data" --stdio --no-children --sort comm,symbol -g none 2>/dev/null | grep -v '^#' | grep '%' | head -40
  } >"$OUT/perf-$1.txt"
  rm -f "$OUT/perf-$1.data"
}

# ---- 0. the state folder, ports ----
STACK=1
"$LOCAL/pg.sh" stop >/dev/null 2>&1
"$LOCAL/kafka.sh" stop >/dev/null 2>&1
rm -rf "$STATE"
mkdir -p "$STATE" "$RUN" "$LOGS" "$OUT" || die "cannot create $STATE"
touch "$STATE/$MARKER"
chmod 755 "$STATE"
for p in $(seq "$BASE" $((BASE + 8))); do
  port_busy "$p" && die "port $p is in use; set STOCKFLOW_BENCH_PORT_BASE"
done

# ---- 1. build ----
say "building Release into $BUILD"
"$LOCAL/install-deps.sh" || die "install-deps.sh failed"
# -Wno-error=format-truncation: gcc 12 at -O3 finds truncation warnings that
# -O0/-O2 builds do not (they stay warnings here, see the build log).
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSF_TESTS=OFF \
  -DSF_SANITIZE=OFF -DSF_BENCH=ON -DCMAKE_C_FLAGS=-Wno-error=format-truncation >"$LOGS/build.log" 2>&1 \
  && cmake --build "$BUILD" -j"$(nproc)" >>"$LOGS/build.log" 2>&1 \
  || { tail -n 30 "$LOGS/build.log" >&2; die "build failed (log $LOGS/build.log)"; }
# The plots: gnuplot (Debian's gnuplot-nox: no X), for this script only.
if ! command -v gnuplot >/dev/null 2>&1; then
  say "installing gnuplot-nox for the plots"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends gnuplot-nox; } >"$LOGS/gnuplot-install.log" 2>&1 \
    || say "gnuplot could not be installed (log $LOGS/gnuplot-install.log): no plots"
fi
B="$BUILD/bench"
CMD_BIN="$BUILD/services/command/stockflow-command"
PROJ_BIN="$BUILD/services/projector/stockflow-projector"
QRY_BIN="$BUILD/services/query/stockflow-query"
LOADGEN="$B/sf-loadgen"

# ---- 2. the stack ----
say "starting Kafka on :$PORT_KAFKA and PostgreSQL on :$PORT_PG (state $STATE)"
# PostgreSQL starts (and migrates) while Kafka starts.
(
  "$LOCAL/pg.sh" start >"$LOGS/pg-start.log" 2>&1 || exit 1
  for db in stockflow bench_replay bench_pglimit; do
    "$LOCAL/pg.sh" migrate "$db" >>"$LOGS/pg-start.log" 2>&1 || exit 1
  done
) &
PG_JOB=$!
"$LOCAL/kafka.sh" start >"$LOGS/kafka-start.log" 2>&1 || { cat "$LOGS/kafka-start.log" >&2; wait "$PG_JOB"; die "kafka.sh start failed"; }
"$LOCAL/kafka.sh" topics >"$LOGS/topics.log" 2>&1 \
  && "$LOCAL/kafka.sh" topics bench.a.catalog:1 bench.a.stock:6 bench.b.catalog:1 bench.b.stock:6 bench.c.stock:6 bench.warm:6 >>"$LOGS/topics.log" 2>&1 \
  || { cat "$LOGS/topics.log" >&2; wait "$PG_JOB"; die "kafka.sh topics failed"; }
wait "$PG_JOB" || { tail "$LOGS/pg-start.log" >&2; die "pg.sh start or migrate failed"; }

CMD_URL="http://127.0.0.1:$PORT_CMD"; QRY_URL="http://127.0.0.1:$PORT_QRY"
PROJ_URL="http://127.0.0.1:$PORT_PROJ"
start_command() { # [ENV=VALUE ...]: extra settings (e.g. writer lanes)
  start command STOCKFLOW_COMMAND_LISTEN="127.0.0.1:$PORT_CMD" \
    STOCKFLOW_MAX_BODY=1048576 "$@" -- "$CMD_BIN"
  wait_ready command "$CMD_URL/readyz" 120
}
# 10,000 idle change streams need as many descriptors in the query service
# (and the client): the services inherit this shell's limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
say "open files limit for the services: $(ulimit -n)"
say "starting the services (command :$PORT_CMD, projector :$PORT_PROJ, query :$PORT_QRY)"
start_command
start projector STOCKFLOW_PROJECTOR_LISTEN="127.0.0.1:$PORT_PROJ" -- "$PROJ_BIN"
# STOCKFLOW_COMMAND_URL: where the query service's Parse facade sends its
# writes and sign-ins (step 8b).
start query STOCKFLOW_QUERY_LISTEN="127.0.0.1:$PORT_QRY" STOCKFLOW_COMMAND_URL="http://127.0.0.1:$PORT_CMD" -- "$QRY_BIN"
wait_ready projector "$PROJ_URL/readyz" 60
wait_ready query "$QRY_URL/readyz" 60

# A token when the services want one.
TOKEN="${STOCKFLOW_BENCH_TOKEN:-}"
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{}' "$CMD_URL/v1/stores")"
if [ "$code" = 401 ] && [ -z "$TOKEN" ]; then
  TOKEN="$(curl -s -X POST -H 'Content-Type: application/json' \
    -d "{\"username\":\"$STOCKFLOW_ADMIN_USERNAME\",\"password\":\"$STOCKFLOW_ADMIN_PASSWORD\"}" \
    "$CMD_URL/v1/sessions" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("token",""))' 2>/dev/null)"
  [ -n "$TOKEN" ] || die "the command service wants a token and none could be had; set STOCKFLOW_BENCH_TOKEN"
fi
AUTH=()
[ -n "$TOKEN" ] && AUTH=(-H "Authorization: Bearer $TOKEN")

lg() { "$LOADGEN" "${AUTH[@]}" "$@"; }

# A fresh broker spends its first minute in the JIT compiler (perf showed
# C2 at a fifth of the machine): warm it up before anything is measured.
say "warming Kafka up (raw producer, not measured)"
"$B/sf-kafka-limit" --brokers "$STOCKFLOW_KAFKA_BROKERS" --topic bench.warm \
  --events "$((EVENTS / 2))" --txn 1000 --salt 9 --transactional-id bench-warm \
  >"$LOGS/kafka-warm.log" 2>&1 || { cat "$LOGS/kafka-warm.log" >&2; die "Kafka warm-up failed"; }

# ---- 3. seed ----
say "seeding $STORES stores x $PRODUCTS products with 1,000,000 units each"
cat >"$OUT/seed-stores.json" <<'EOF'
{"ops":[{"name":"store","method":"POST","path":"/v1/stores","capture":"id",
 "body":"{\"name\":\"bench store {seq}\",\"location\":\"bench\"}"}]}
EOF
cat >"$OUT/seed-products.json" <<'EOF'
{"ops":[{"name":"product","method":"POST","path":"/v1/products","capture":"id",
 "body":"{\"sku\":\"BENCH-{seq}\",\"name\":\"bench product {seq}\",\"price\":\"9.99\",\"reorder_level\":10}"}]}
EOF
cat >"$OUT/seed-stock.json" <<'EOF'
{"ops":[{"name":"receipt","method":"POST","path":"/v1/stores/{store}/transactions",
 "body":"{\"product_id\":\"{product}\",\"type\":\"receipt\",\"quantity\":1000000}"}]}
EOF
lg --url "$CMD_URL" --spec "$OUT/seed-stores.json" -n "$STORES" -c 4 \
  --capture-out "$OUT/stores.json" --label seed-stores >"$LOGS/seed.log" 2>&1 || { cat "$LOGS/seed.log" >&2; die "seeding stores failed"; }
lg --url "$CMD_URL" --spec "$OUT/seed-products.json" -n "$PRODUCTS" -c 16 \
  --capture-out "$OUT/products.json" --label seed-products >>"$LOGS/seed.log" 2>&1 || { cat "$LOGS/seed.log" >&2; die "seeding products failed"; }
python3 - "$OUT" <<'PY' || die "ids file"
import json, sys
out = sys.argv[1]
s = json.load(open(out + "/stores.json")); p = json.load(open(out + "/products.json"))
assert len(s) and len(p), "no ids captured"
json.dump({"stores": s, "products": p}, open(out + "/ids.json", "w"))
PY
# Stock: one POST /v1/batches per store (1,000 receipts each); without the
# bulk endpoint, 20,000 single receipts.
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
ids = json.load(open(out + "/ids.json"))
ops = [{"name": "store%d" % i, "method": "POST", "path": "/v1/batches", "optional": True,
        "body": json.dumps({"transactions": [{"store_id": s, "product_id": p, "type": "receipt",
                                              "quantity": 1000000} for p in ids["products"]]},
                           separators=(",", ":"))}
       for i, s in enumerate(ids["stores"])]
json.dump({"ops": ops}, open(out + "/seed-batches.json", "w"))
PY
lg --url "$CMD_URL" --spec "$OUT/seed-batches.json" --sequential -n "$STORES" -c 4 \
  --json "$OUT/seed-batches-res.json" --label seed-stock-batches >>"$LOGS/seed.log" 2>&1
if [ "$(jget "$OUT/seed-batches-res.json" 'd["ok"]' 2>/dev/null)" != "$STORES" ]; then
  say "no bulk endpoint (or a batch failed): seeding with single receipts"
  lg --url "$CMD_URL" --spec "$OUT/seed-stock.json" --ids "$OUT/ids.json" --sequential \
    -n $((STORES * PRODUCTS)) -c "$CONNS" --label seed-stock >>"$LOGS/seed.log" 2>&1 || { cat "$LOGS/seed.log" >&2; die "seeding stock failed"; }
fi
grep -E '^\[|requests' "$LOGS/seed.log" >&2

# STOCKFLOW_BENCH_HOLD=1: keep the seeded stack up for experiments (its
# addresses and token in $STATE/stack.env) until this script is stopped.
if [ "${STOCKFLOW_BENCH_HOLD:-0}" = 1 ]; then
  { echo "CMD_URL=$CMD_URL"; echo "QRY_URL=$QRY_URL"; echo "PROJ_URL=$PROJ_URL"
    echo "BROKERS=$STOCKFLOW_KAFKA_BROKERS"; echo "TOKEN=$TOKEN"; echo "IDS=$OUT/ids.json"
    echo "BIN=$B"; } >"$STATE/stack.env"
  say "holding the stack (STOCKFLOW_BENCH_HOLD=1): see $STATE/stack.env; stop this script to end"
  while :; do sleep 3600 & wait $!; done
fi

# wait_projector: until the projector's applied count stops moving for
# 1.5 s (it applies what it has read at once: a pause that long is the end).
wait_projector() {
  python3 - "$PROJ_URL/metrics" <<'PY'
import sys, time, urllib.request
def applied():
    try:
        text = urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith("stockflow_projector_events_applied_total "):
            return float(line.split()[-1])
last, since = None, time.monotonic()
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    n = applied()
    if n != last:
        last, since = n, time.monotonic()
    elif time.monotonic() - since > 1.5:
        break
    time.sleep(0.2)
PY
}

# Steps 4 to 6 (skipped with STOCKFLOW_BENCH_ONLY=streams).
if [ "$ONLY" != streams ]; then
# ---- 4. write side ----
cat >"$OUT/mix.json" <<'EOF'
{"ops":[
 {"name":"sale","weight":70,"method":"POST","path":"/v1/stores/{store}/transactions",
  "body":"{\"product_id\":\"{product}\",\"type\":\"sale\",\"quantity\":1}"},
 {"name":"receipt","weight":20,"method":"POST","path":"/v1/stores/{store}/transactions",
  "body":"{\"product_id\":\"{product}\",\"type\":\"receipt\",\"quantity\":1}"},
 {"name":"transfer","weight":5,"optional":true,"method":"POST","path":"/v1/transfers",
  "body":"{\"from_store_id\":\"{store}\",\"to_store_id\":\"{store2}\",\"product_id\":\"{product}\",\"quantity\":1}"},
 {"name":"order","weight":5,"optional":true,"method":"POST","path":"/v1/stores/{store}/orders",
  "body":"{\"lines\":[{\"product_id\":\"{product}\",\"quantity\":1}]}",
  "capture":"order_id","then":[
   {"name":"fulfil","weight":1,"method":"POST","path":"/v1/orders/{captured}/fulfil"},
   {"name":"cancel","weight":1,"method":"POST","path":"/v1/orders/{captured}/cancel"}]}
]}
EOF

# snapshot of the command service's counters: "events sum count batches"
cmd_counters() {
  echo "$(metric "$CMD_URL" stockflow_command_events_produced_total)" \
       "$(metric "$CMD_URL" stockflow_command_commit_batch_commands_sum)" \
       "$(metric "$CMD_URL" stockflow_command_commit_batch_commands_count)"
}

say "HTTP limit: sf-http201 on :$PORT_201, the same mix, $CONNS connections, ${DUR}s"
start http201 -- "$B/sf-http201" --listen "127.0.0.1:$PORT_201"
wait_ready http201 "http://127.0.0.1:$PORT_201/healthz" 10
lg --url "http://127.0.0.1:$PORT_201" --spec "$OUT/mix.json" --ids "$OUT/ids.json" \
  -c "$CONNS" -d "$DUR" -w "$WARM" --label http-limit --json "$OUT/http-limit.json" | tee -a "$LOGS/results.log" >&2
if [ "$WITH_PARSE" = 1 ]; then
  # The peer's movement is a sale: the same single request here, against
  # the fixed-201 server now and the command service below.
  cat >"$OUT/sale.json" <<'EOF'
{"ops":[{"name":"sale","method":"POST","path":"/v1/stores/{store}/transactions",
  "body":"{\"product_id\":\"{product}\",\"type\":\"sale\",\"quantity\":1}"}]}
EOF
  say "HTTP limit for sales alone: sf-http201, $CONNS connections, ${DUR}s"
  lg --url "http://127.0.0.1:$PORT_201" --spec "$OUT/sale.json" --ids "$OUT/ids.json" \
    -c "$CONNS" -d "$DUR" -w "$WARM" --label http-limit-sales --json "$OUT/http-limit-sales.json" | tee -a "$LOGS/results.log" >&2
  say "sales alone against the command service, $CONNS connections, ${DUR}s"
  lg --url "$CMD_URL" --spec "$OUT/sale.json" --ids "$OUT/ids.json" \
    -c "$CONNS" -d "$DUR" -w "$WARM" --label sales --json "$OUT/sales.json" | tee -a "$LOGS/results.log" >&2
fi

say "commands: the mix against the command service, $CONNS connections, ${DUR}s"
read -r ev0 bs0 bc0 <<<"$(cmd_counters)"; w0="$(date +%s.%N)"
perf_start commands
lg --url "$CMD_URL" --spec "$OUT/mix.json" --ids "$OUT/ids.json" \
  -c "$CONNS" -d "$DUR" -w "$WARM" --label commands --json "$OUT/commands.json" | tee -a "$LOGS/results.log" >&2
perf_stop commands
read -r ev1 bs1 bc1 <<<"$(cmd_counters)"; w1="$(date +%s.%N)"
put cmd_events "$(python3 -c "print(($ev1 - $ev0))")"
put cmd_batch_mean "$(python3 -c "c=$bc1-$bc0; print(($bs1-$bs0)/c if c else 0)")"
put cmd_run_s "$(python3 -c "print($w1 - $w0)")"
put cmd_rss_mb "$(rss_mb "$(pid_of command)")"
put cmd_state_pairs "$(metric "$CMD_URL" 'stockflow_command_state_rows{kind="stock"}')"

# Writer lanes: the same mix with 1, 2 and N (one per core, the default)
# lanes, each next to the raw Kafka limit with as many transactional
# producers committing in parallel, in transactions of the size the lanes
# formed in that run (their mean commit batch).
LANE_SET="$(python3 -c "print(' '.join(str(x) for x in sorted({1, 2, $(nproc)})))")"
LANE_EVENTS=$((QUICK == 1 ? 20000 : 100000))
for L in $LANE_SET; do
  say "writer lanes: $L lane(s), the mix at $CONNS connections, ${DUR}s"
  stop command
  start_command STOCKFLOW_WRITER_LANES="$L"
  read -r ev0 bs0 bc0 <<<"$(cmd_counters)"; w0="$(date +%s.%N)"
  lg --url "$CMD_URL" --spec "$OUT/mix.json" --ids "$OUT/ids.json" \
    -c "$CONNS" -d "$DUR" -w "$WARM" --label "commands-lanes-$L" \
    --json "$OUT/commands-lanes-$L.json" | tee -a "$LOGS/results.log" >&2
  read -r ev1 bs1 bc1 <<<"$(cmd_counters)"; w1="$(date +%s.%N)"
  put "lanes_${L}_events_per_s" "$(python3 -c "print(($ev1 - $ev0) / ($w1 - $w0))")"
  TXN_SIZE="$(python3 -c "c=$bc1-$bc0; print(max(1, round(($ev1-$ev0)/c)) if c else 1)")"
  put "lanes_${L}_txn_events" "$TXN_SIZE"
  say "Kafka limit for $L lane(s): $L raw transactional producer(s) in parallel, transactions of $TXN_SIZE events"
  "$B/sf-kafka-limit" --brokers "$STOCKFLOW_KAFKA_BROKERS" --topic bench.c.stock \
    --events "$LANE_EVENTS" --stores "$STORES" --products "$PRODUCTS" \
    --txn "$TXN_SIZE" --salt "$((10 + L))" --producers "$L" \
    --gap-us "${STOCKFLOW_COMMIT_GAP_US:-2000}" \
    --transactional-id "bench-lanes-$L" --json "$OUT/kafka-limit-lanes-$L.json" \
    2>>"$LOGS/kafka-limit.log" | tee -a "$LOGS/results.log" >&2 || die "sf-kafka-limit --producers $L failed (log $LOGS/kafka-limit.log)"
done
put lane_set "$(python3 -c "import json; print(json.dumps([int(x) for x in '$LANE_SET'.split()]))")"
stop command
start_command

# Group commit scales with the commands in flight, not with CPU: the same mix
# at 512 connections shows the headroom (not a target, an explanation; not
# in the quick run).
if [ "$QUICK" = 0 ]; then
  lg --url "$CMD_URL" --spec "$OUT/mix.json" --ids "$OUT/ids.json" \
    -c 512 -d "$DUR" -w "$WARM" --label commands-512 --json "$OUT/commands-512.json" | tee -a "$LOGS/results.log" >&2
fi

PEAK="$(jget "$OUT/commands.json" 'd["ok_rps"]')"
HALF="$(python3 -c "print(max(1, int($PEAK / 2)))")"
say "half of the command peak: $HALF req/s open loop, both servers"
lg --url "$CMD_URL" --spec "$OUT/mix.json" --ids "$OUT/ids.json" \
  -c "$CONNS" -d "$DUR" -w "$WARM" -r "$HALF" --label commands-half --json "$OUT/commands-half.json" | tee -a "$LOGS/results.log" >&2
lg --url "http://127.0.0.1:$PORT_201" --spec "$OUT/mix.json" --ids "$OUT/ids.json" \
  -c "$CONNS" -d "$DUR" -w "$WARM" -r "$HALF" --label http-limit-half --json "$OUT/http-limit-half.json" | tee -a "$LOGS/results.log" >&2
stop http201

# Batch intake: bodies of 1,000 receipts over random pairs (receipts, so
# that no item is refused for want of stock).
python3 - "$OUT" <<'PY'
import json, random, sys
out = sys.argv[1]
ids = json.load(open(out + "/ids.json"))
rnd = random.Random(7)
ops = []
for b in range(16):
    items = [{"store_id": rnd.choice(ids["stores"]), "product_id": rnd.choice(ids["products"]),
              "type": "receipt", "quantity": 1} for _ in range(1000)]
    ops.append({"name": "batch%d" % b, "weight": 1, "method": "POST", "path": "/v1/batches",
                "optional": True, "body": json.dumps({"transactions": items}, separators=(",", ":"))})
json.dump({"ops": ops}, open(out + "/batch.json", "w"))
PY
say "batch intake: POST /v1/batches of 1,000 movements, 8 connections, ${DUR}s"
read -r ev0 bs0 bc0 <<<"$(cmd_counters)"; w0="$(date +%s.%N)"
perf_start batches
lg --url "$CMD_URL" --spec "$OUT/batch.json" -c 8 -d "$DUR" -w "$WARM" \
  --label batches --json "$OUT/batches.json" | tee -a "$LOGS/results.log" >&2
perf_stop batches
read -r ev1 bs1 bc1 <<<"$(cmd_counters)"; w1="$(date +%s.%N)"
put batch_events "$(python3 -c "print(($ev1 - $ev0))")"
put batch_batch_mean "$(python3 -c "c=$bc1-$bc0; print(($bs1-$bs0)/c if c else 0)")"
put batch_run_s "$(python3 -c "print($w1 - $w0)")"

say "Kafka limit: raw transactional producer (configured as the writer), $EVENTS events (20 x 1,000 pairs), transactions of 1,000"
"$B/sf-kafka-limit" --brokers "$STOCKFLOW_KAFKA_BROKERS" --topic bench.a.stock \
  --catalog-topic bench.a.catalog --events "$EVENTS" --stores "$STORES" --products "$PRODUCTS" \
  --txn 1000 --salt 1 --transactional-id bench-limit-a --json "$OUT/kafka-limit.json" \
  2>>"$LOGS/kafka-limit.log" | tee -a "$LOGS/results.log" >&2 || die "sf-kafka-limit failed (log $LOGS/kafka-limit.log)"

# ---- 5. rebuild and memory ----
say "restart: rebuild of the command service's own log"
stop command
start_command
grep -h 'state rebuilt in' "$LOGS/command.log" | tail -n 1 >"$OUT/rebuild-own.txt"
cat "$OUT/rebuild-own.txt" >&2

say "rebuild of a generated log: $EVENTS events over $REBUILD_STORES x 1,000 pairs (one event per pair)"
"$B/sf-kafka-limit" --brokers "$STOCKFLOW_KAFKA_BROKERS" --topic bench.b.stock \
  --catalog-topic bench.b.catalog --events "$EVENTS" --stores "$REBUILD_STORES" --products 1000 \
  --txn 1000 --salt 2 --transactional-id bench-limit-b --json "$OUT/kafka-limit-b.json" \
  2>>"$LOGS/kafka-limit.log" | tee -a "$LOGS/results.log" >&2 || die "sf-kafka-limit (log b) failed"
perf_start rebuild
start command-rebuild STOCKFLOW_COMMAND_LISTEN="127.0.0.1:$PORT_CMD2" \
  STOCKFLOW_TOPIC_CATALOG=bench.b.catalog STOCKFLOW_TOPIC_STOCK=bench.b.stock \
  STOCKFLOW_COMMAND_TXN_ID=bench-rebuild -- "$CMD_BIN"
wait_ready command-rebuild "http://127.0.0.1:$PORT_CMD2/readyz" 300
perf_stop rebuild
grep -h 'state rebuilt in' "$LOGS/command-rebuild.log" | tail -n 1 >"$OUT/rebuild-b.txt"
cat "$OUT/rebuild-b.txt" >&2
put rebuild_b_rss_mb "$(rss_mb "$(pid_of command-rebuild)")"
put rebuild_b_pairs "$(metric "http://127.0.0.1:$PORT_CMD2" 'stockflow_command_state_rows{kind="stock"}')"
stop command-rebuild

say "state memory and decode+fold speed in-process (sf-state-mem)"
"$B/sf-state-mem" --pairs 1000000 --events "$EVENTS" --json "$OUT/state-mem.json" \
  | tee -a "$LOGS/results.log" >&2 || die "sf-state-mem failed"

# ---- 6. read side ----
say "projector replay: $EVENTS events of the generated log into an empty database"
start projector-replay STOCKFLOW_PROJECTOR_LISTEN="127.0.0.1:$PORT_PROJ2" \
  STOCKFLOW_PG_DSN="$DSN_BASE dbname=bench_replay" STOCKFLOW_PROJECTOR_GROUP=bench-replay \
  STOCKFLOW_TOPIC_CATALOG=bench.a.catalog STOCKFLOW_TOPIC_STOCK=bench.a.stock -- "$PROJ_BIN"
TOTAL=$((EVENTS + STORES + PRODUCTS))
python3 - "http://127.0.0.1:$PORT_PROJ2/metrics" "$TOTAL" "$OUT/replay.json" "$(pid_of projector-replay)" <<'PY' | tee -a "$LOGS/results.log" >&2
import json, os, sys, time, urllib.request
url, total, out, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def applied():
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith("stockflow_projector_events_applied_total "):
            return float(line.split()[-1])
    return None
# The rate runs from the first sample that saw applied events to the last
# change; the replay is over when all are applied or nothing moved for 5 s.
first = None
last_n, last_t = 0, None
deadline = time.monotonic() + 900
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("projector-replay exited")
    n = applied()
    now = time.monotonic()
    if n is not None and n > 0:
        if first is None:
            first = (now, n)
        if n != last_n:
            last_n, last_t = n, now
        if n >= total or now - last_t > 5:
            break
    if now > deadline:
        sys.exit("replay did not finish in 900 s (applied %s of %d)" % (n, total))
    time.sleep(0.05)
secs = last_t - first[0]
rate = (last_n - first[1]) / secs if secs > 0 else 0
n = last_n
print("projector replay: %d of %d events applied, %.0f events/s (from the first applied batch to the last, %.2f s)" % (n, total, rate, secs))
json.dump({"events": n, "seconds": secs, "events_per_s": rate}, open(out, "w"))
PY
stop projector-replay

say "PostgreSQL limit: COPY into staging + upsert of the same $EVENTS rows"
"$B/sf-pg-limit" --dsn "$DSN_BASE dbname=bench_pglimit" --events "$EVENTS" \
  --stores "$STORES" --products "$PRODUCTS" --batch 1000 --salt 1 --json "$OUT/pg-limit.json" \
  2>>"$LOGS/pg-limit.log" | tee -a "$LOGS/results.log" >&2 || die "sf-pg-limit failed (log $LOGS/pg-limit.log)"
"$B/sf-pg-limit" --dsn "$DSN_BASE dbname=bench_pglimit" --events "$EVENTS" \
  --stores "$STORES" --products "$PRODUCTS" --batch 10000 --salt 3 --json "$OUT/pg-limit-10k.json" \
  2>>"$LOGS/pg-limit.log" | tee -a "$LOGS/results.log" >&2 || die "sf-pg-limit (10k) failed"

say "waiting for the projector to catch up with the write runs"
wait_projector

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
ids = json.load(open(out + "/ids.json"))
stores = "'{" + ",".join(ids["stores"]) + "}'::uuid[]"
products = "'{" + ",".join(ids["products"]) + "}'::uuid[]"
us = lambda x: "(extract(epoch from %s) * 1000000)::bigint" % x
point = ("SELECT s.id AS store_id, p.id AS product_id, p.sku, p.name,"
  " coalesce(i.on_hand, 0) AS on_hand, coalesce(i.reserved, 0) AS reserved,"
  " coalesce(i.version, 0) AS version, %s AS updated_us"
  " FROM (SELECT (%s)[:s]::uuid AS sid, (%s)[:p]::uuid AS pid) k"
  " LEFT JOIN stores s ON s.id = k.sid"
  " LEFT JOIN products p ON p.id = k.pid"
  " LEFT JOIN inventory i ON i.store_id = k.sid AND i.product_id = k.pid;") % (us("i.updated_at"), stores, products)
page = ("SELECT s.id AS owner_id, x.product_id, x.sku, x.name, x.on_hand,"
  " x.reserved, x.version, x.updated_us"
  " FROM stores s LEFT JOIN LATERAL ("
  "  SELECT i.product_id, p.sku, p.name, i.on_hand, i.reserved, i.version,"
  "  %s AS updated_us"
  "  FROM inventory i JOIN products p ON p.id = i.product_id"
  "  WHERE i.store_id = s.id AND i.product_id > '00000000-0000-0000-0000-000000000000'::uuid"
  "  AND (NOT (:below)::int::boolean OR i.on_hand - i.reserved < p.reorder_level)"
  "  ORDER BY i.product_id LIMIT (:lim)::int) x ON true"
  " WHERE s.id = (%s)[:s]::uuid ORDER BY x.product_id;") % (us("i.updated_at"), stores)
n_s, n_p = len(ids["stores"]), len(ids["products"])
open(out + "/pgbench-point.sql", "w").write(
  "\\set s random(1, %d)\n\\set p random(1, %d)\n%s\n" % (n_s, n_p, point))
open(out + "/pgbench-page.sql", "w").write(
  "\\set s random(1, %d)\n\\set below 0\n\\set lim 101\n%s\n" % (n_s, page))
json.dump({"ops": [{"name": "point", "method": "GET",
  "path": "/v1/stores/{store}/inventory/{product}"}]}, open(out + "/read-point.json", "w"))
json.dump({"ops": [{"name": "page", "method": "GET",
  "path": "/v1/stores/{store}/inventory?limit=100"}]}, open(out + "/read-page.json", "w"))
PY

# pgbench_tps NAME SCRIPT: pgbench -M prepared at $CONNS clients; writes
# $OUT/pgbench-NAME.json {tps, p50_ms, p99_ms} (latencies from the log).
pgbench_run() {
  local name="$1" script="$2" dir
  dir="$OUT/pgbench-$name"
  mkdir -p "$dir"
  (cd "$dir" && PGHOST=127.0.0.1 PGPORT="$PORT_PG" PGUSER=postgres pgbench -n -M prepared \
    -c "$CONNS" -j 2 -T "$DUR" -l --log-prefix=lat -f "$script" stockflow) >"$dir/out.txt" 2>&1 \
    || { cat "$dir/out.txt" >&2; die "pgbench $name failed"; }
  python3 - "$dir" "$OUT/pgbench-$name.json" "$name" <<'PY' | tee -a "$LOGS/results.log" >&2
import glob, json, re, sys
d, out, name = sys.argv[1:4]
text = open(d + "/out.txt").read()
tps = float(re.search(r"tps = ([0-9.]+)", text).group(1))
lat = []
for f in glob.glob(d + "/lat.*"):
    for line in open(f):
        parts = line.split()
        if len(parts) >= 3:
            lat.append(int(parts[2]))
lat.sort()
q = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))] / 1000.0 if lat else 0
print("[pgbench-%s] %.0f tps, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms" % (name, tps, q(0.5), q(0.99), q(0.999)))
json.dump({"tps": tps, "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999)}, open(out, "w"))
PY
}

say "point lookups: HTTP ($CONNS connections) and pgbench ($CONNS clients), ${DUR}s each"
lg --url "$QRY_URL" --spec "$OUT/read-point.json" --ids "$OUT/ids.json" -c "$CONNS" -d "$DUR" -w "$WARM" \
  --label read-point --json "$OUT/read-point-res.json" | tee -a "$LOGS/results.log" >&2
pgbench_run point "$OUT/pgbench-point.sql"
say "store pages (100 rows): HTTP and pgbench"
perf_start read-page
lg --url "$QRY_URL" --spec "$OUT/read-page.json" --ids "$OUT/ids.json" -c "$CONNS" -d "$DUR" -w "$WARM" \
  --label read-page --json "$OUT/read-page-res.json" | tee -a "$LOGS/results.log" >&2
perf_stop read-page
pgbench_run page "$OUT/pgbench-page.sql"
put qry_rss_mb "$(rss_mb "$(pid_of query)")"
put proj_rss_mb "$(rss_mb "$(pid_of projector)")"
fi # steps 4 to 6

# ---- 7. change streams ----
say "waiting for the projector to catch up before the change streams"
wait_projector
# Idle first, so the figure is not the leftover of the freshness run's
# buffers. The query service takes at most 10,000 connections (sf_http's
# max_connections, not a setting): nothing else may talk to it meanwhile.
say "idle change streams: $IDLE_SUBS SSE subscribers held ${IDLE_HOLD} s, query service VmRSS"
"$B/sf-freshness" "${AUTH[@]}" --query-url "$QRY_URL" --ids "$OUT/ids.json" --idle \
  -s "$IDLE_SUBS" --hold "$IDLE_HOLD" --pid "$(pid_of query)" --json "$OUT/idle-subs.json" \
  --label idle-subscribers 2>>"$LOGS/freshness.log" | tee -a "$LOGS/results.log" >&2 \
  || say "sf-freshness --idle failed (log $LOGS/freshness.log)"
sleep 2 # let the service close the streams before the next run
# cpu_ticks PID: user + system clock ticks of a process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# machine_ticks: "busy total" clock ticks of the whole machine so far.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
say "freshness: $FRESH_SUBS SSE subscribers, $FRESH_RATE sales/s for ${DUR}s (+${WARM}s warm-up)"
q0=$(cpu_ticks "$(pid_of query)"); p0=$(cpu_ticks "$(pid_of projector)"); c0=$(cpu_ticks "$(pid_of command)")
read -r mb0 mt0 <<<"$(machine_ticks)"; t0=$(date +%s.%N)
"$B/sf-freshness" "${AUTH[@]}" --query-url "$QRY_URL" --command-url "$CMD_URL" \
  --ids "$OUT/ids.json" -s "$FRESH_SUBS" -r "$FRESH_RATE" -d "$DUR" -w "$WARM" \
  --json "$OUT/freshness.json" --label freshness 2>>"$LOGS/freshness.log" \
  | tee -a "$LOGS/results.log" >&2 || say "sf-freshness failed (log $LOGS/freshness.log)"
q1=$(cpu_ticks "$(pid_of query)"); p1=$(cpu_ticks "$(pid_of projector)"); c1=$(cpu_ticks "$(pid_of command)")
read -r mb1 mt1 <<<"$(machine_ticks)"; t1=$(date +%s.%N)
# CPU of each service during the freshness run, in cores (1.0 = one core
# busy the whole run), and the machine's busy share.
put fresh_cpu "$(python3 -c "
import json, os
hz = os.sysconf('SC_CLK_TCK'); w = $t1 - $t0
print(json.dumps({'wall_s': w, 'query': ($q1 - $q0) / hz / w, 'projector': ($p1 - $p0) / hz / w,
  'command': ($c1 - $c0) / hz / w, 'machine_busy': ($mb1 - $mb0) / max(1, $mt1 - $mt0),
  'cores': os.cpu_count()}))")"
put qry_rss_after_streams_mb "$(rss_mb "$(pid_of query)")"
# The peer's real-time load (bench/parse/live.js): one subscriber of one
# store, 100 writes/s to that store, for the same duration.
say "freshness at the peer's load: 1 SSE subscriber of one store, 100 sales/s to it for ${LIVE_S}s"
python3 - "$OUT" <<'PY' || die "ids-one-store file"
import json, sys
ids = json.load(open(sys.argv[1] + "/ids.json"))
ids["stores"] = ids["stores"][:1]
json.dump(ids, open(sys.argv[1] + "/ids-one-store.json", "w"))
PY
"$B/sf-freshness" "${AUTH[@]}" --query-url "$QRY_URL" --command-url "$CMD_URL" \
  --ids "$OUT/ids-one-store.json" -s 1 -r 100 -d "$LIVE_S" -w 1 \
  --json "$OUT/freshness-peer.json" --label freshness-peer-load 2>>"$LOGS/freshness.log" \
  | tee -a "$LOGS/results.log" >&2 || say "sf-freshness (peer load) failed (log $LOGS/freshness.log)"

# ---- 8. correctness ----
say "correctness: 32 x 10 sales from 100, SSE client away 5 s, Idempotency-Key retry"
wait_projector
STOCKFLOW_BENCH_TOKEN="$TOKEN" python3 "$ROOT/bench/correctness.py" --command-url "$CMD_URL" \
  --query-url "$QRY_URL" --json "$OUT/correctness.json" 2>>"$LOGS/correctness.log" \
  | tee -a "$LOGS/results.log" >&2 || say "bench/correctness.py failed (log $LOGS/correctness.log)"

# ---- 8b. the Parse SDK flow on stockflow's facade ----
# tests/parse/flow.js --bench through the gateway (as a Parse app would
# reach the facade): log-in, an Inventory query with where, a Transaction
# saved, the LiveQuery update it causes; the same rounds as the peer's.
FLOW_ROUNDS=$([ "$QUICK" = 1 ] && echo 20 || echo 200)
if [ "$ONLY" = streams ]; then
  :
elif command -v node >/dev/null && "$ROOT/tests/parse/install.sh"; then
  say "the Parse SDK flow on stockflow's facade: $FLOW_ROUNDS rounds through the gateway on :$PORT_GW"
  GW=1
  if STOCKFLOW_GATEWAY_LISTEN="127.0.0.1:$PORT_GW" STOCKFLOW_GATEWAY_COMMAND="127.0.0.1:$PORT_CMD" \
      STOCKFLOW_GATEWAY_QUERY="127.0.0.1:$PORT_QRY" "$LOCAL/gateway.sh" start >"$LOGS/gateway-start.log" 2>&1; then
    node "$ROOT/tests/parse/flow.js" --server "http://127.0.0.1:$PORT_GW/parse" \
      --livequery "ws://127.0.0.1:$PORT_GW/parse" --app-id "${STOCKFLOW_PARSE_APP_ID:-stockflow}" \
      --target stockflow --only bench --bench "$FLOW_ROUNDS" --json "$OUT/parse-flow.json" \
      >"$LOGS/parse-flow.log" 2>&1 || say "the Parse SDK flow failed on stockflow (log $LOGS/parse-flow.log): $(tail -n 3 "$LOGS/parse-flow.log" | tr '\n' ' ')"
    grep '^BENCH' "$LOGS/parse-flow.log" >&2
  else
    say "the gateway did not start (log $LOGS/gateway-start.log): no SDK flow figures"
  fi
  "$LOCAL/gateway.sh" stop >/dev/null 2>&1; GW=0
else
  say "node, or the judge's npm ci (tests/parse/install.sh), is missing: no SDK flow figures"
fi

# ---- 9. the peer ----
if [ "$WITH_PARSE" = 1 ]; then
  say "stopping the stockflow stack before the peer runs on the same machine"
  stop query; stop projector; stop command
  # Kafka and PostgreSQL stop while the peer installs and seeds (nothing
  # of the peer is measured before its seed is done).
  ( "$LOCAL/pg.sh" stop >/dev/null 2>&1; "$LOCAL/kafka.sh" stop >/dev/null 2>&1 ) &
  STOP_JOB=$!
  STACK=0
  PARSE_ARGS=()
  [ "$QUICK" = 1 ] && PARSE_ARGS=(--quick)
  say "the peer: bench/parse/run.sh ${PARSE_ARGS[*]} (${DUR}s per figure, $CONNS connections)"
  PARSE_BENCH_LOADGEN="$LOADGEN" PARSE_BENCH_DURATION="$DUR" PARSE_BENCH_CONNECTIONS="$CONNS" \
    PARSE_BENCH_LIVE_S="$LIVE_S" \
    PARSE_BENCH_RESULTS="$OUT/parse.json" "$ROOT/bench/parse/run.sh" "${PARSE_ARGS[@]}" \
    >"$LOGS/parse.log" 2>&1 || { tail -n 20 "$LOGS/parse.log" >&2; say "bench/parse/run.sh failed (log $LOGS/parse.log)"; }
  wait "$STOP_JOB" 2>/dev/null
  grep -E '^\[' "$LOGS/parse.log" >&2
fi

# ---- 10. the report ----
say "machine and versions"
MEM_MB="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)"
CPU="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
put machine "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$(nproc) cores ($CPU), ${MEM_MB} MiB RAM, $(uname -sr)")"
put versions "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' \
  "gcc $(gcc -dumpfullversion), librdkafka $(pkg-config --modversion rdkafka), libuv $(pkg-config --modversion libuv), libpq $(pkg-config --modversion libpq), PostgreSQL $("$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)/postgres" --version | awk '{print $3}'), Kafka ${STOCKFLOW_KAFKA_VERSION:-4.1.2} (JVM $(java -version 2>&1 | awk -F'"' '/version/ {print $2}'))")"
put commit "\"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')\""
put date "\"$(date -u +%FT%TZ)\""
put command "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$CMDLINE")"
put quick "$QUICK"
put duration_s "$DUR"
put events "$EVENTS"
put run_s "$((SECONDS - T0))"
DOC="$ROOT/docs/benchmarks.md"
{ [ "${STOCKFLOW_BENCH_NO_DOC:-0}" = 1 ] || [ "$ONLY" = streams ]; } && DOC="$OUT/benchmarks.md"
python3 "$ROOT/bench/report.py" "$OUT" "$DOC" || die "report.py failed"
say "report written to $DOC (raw results in $OUT); took $((SECONDS - T0)) s"
