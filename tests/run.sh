#!/usr/bin/env bash
# The test command: installs what is missing, builds the normal and the
# sanitizer build, starts a private Kafka and PostgreSQL, runs the unit tests
# (ctest) and the integration tests (tests/integration/run.py) of both
# builds, then the benchmark smoke test (bench/run.sh --quick, checked by
# bench/check_report.py), and ends with one line `N passed, N failed` (unit
# test executables, integration test cases of both builds, contract and
# benchmark checks). Exits 1 if anything failed or
# could not run. Kafka, PostgreSQL and every service it started are stopped
# by pid when it exits, however it exits.
#
# The test stack is isolated from a dev stack (deploy/local/up.sh): its own
# state folder and ports. Environment (all optional):
#   STOCKFLOW_BUILD_DIR          normal build folder   (default <repo>/build)
#   STOCKFLOW_ASAN_BUILD_DIR     sanitizer build folder (default <repo>/build-asan)
#   STOCKFLOW_TEST_STATE_DIR     state folder (default <repo>/.local/test; wiped
#                                at the start of each run)
#   STOCKFLOW_TEST_KAFKA_PORT    broker port (default 19092)
#   STOCKFLOW_TEST_KAFKA_CONTROLLER_PORT  (default 19093)
#   STOCKFLOW_TEST_PG_PORT       PostgreSQL port (default 25433: below the
#                                kernel's ephemeral range, so no outgoing
#                                connection can hold it)
#   STOCKFLOW_TEST_REGISTRY_PORT schema registry port (default 19090; one
#                                registry serves both builds, started only
#                                for the integration tier)
#   STOCKFLOW_TEST_PORTS_NORMAL  command,query,projector[,gateway] ports for
#                                the normal build's services (default
#                                18081,18082,18083; the gateway's port
#                                defaults to the command port - 1: 18080)
#   STOCKFLOW_TEST_PORTS_ASAN    same for the sanitizer build (28081,28082,28083)
#   STOCKFLOW_TEST_BUILDS        which builds to test (default "normal asan")
#   STOCKFLOW_TEST_TIERS         which tiers to run (default "unit integration
#                                bench"; bench: bench/run.sh --quick as a smoke
#                                test, every figure produced)
#   STOCKFLOW_TEST_FILTER        run only integration tests whose name
#                                contains this
#   STOCKFLOW_TEST_JOBS          parallel build jobs (default: nproc)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
LOCAL="$ROOT/deploy/local"

BUILD_DIR="${STOCKFLOW_BUILD_DIR:-$ROOT/build}"
ASAN_BUILD_DIR="${STOCKFLOW_ASAN_BUILD_DIR:-$ROOT/build-asan}"
TEST_STATE="${STOCKFLOW_TEST_STATE_DIR:-$ROOT/.local/test}"
KAFKA_PORT="${STOCKFLOW_TEST_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${STOCKFLOW_TEST_KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT="${STOCKFLOW_TEST_PG_PORT:-25433}"
REGISTRY_PORT="${STOCKFLOW_TEST_REGISTRY_PORT:-19090}"
PORTS_NORMAL="${STOCKFLOW_TEST_PORTS_NORMAL:-18081,18082,18083}"
PORTS_ASAN="${STOCKFLOW_TEST_PORTS_ASAN:-28081,28082,28083}"
BUILDS="${STOCKFLOW_TEST_BUILDS:-normal asan}"
TIERS="${STOCKFLOW_TEST_TIERS:-unit integration bench}"
FILTER="${STOCKFLOW_TEST_FILTER:-}"
JOBS="${STOCKFLOW_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}"
RUN_ID="$(date +%s)$$"
# The services' first admin (the integration runner logs in with it).
ADMIN_PASSWORD="it-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"

SAN_ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
SAN_UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

PASSED=0
FAILED=0
FAILURES=()
CHILD=""
STACK_TOUCHED=0
T0=$SECONDS

say() { printf '== %s\n' "$*"; }
warn() { printf 'run.sh: %s\n' "$*" >&2; }

# fail NAME: one failed item (counted in the closing line).
fail() {
  FAILED=$((FAILED + 1))
  FAILURES+=("$1")
}

# finish: the closing line, then exit (the EXIT trap stops the stack).
finish() {
  echo
  if [ "${#FAILURES[@]}" -gt 0 ]; then
    echo "failed:"
    printf '  %s\n' "${FAILURES[@]}"
  fi
  echo "run took $((SECONDS - T0))s; logs in $TEST_STATE/log"
  echo "$PASSED passed, $FAILED failed"
  if [ "$FAILED" -gt 0 ]; then exit 1; fi
  exit 0
}

# fatal MESSAGE: something the run cannot go on without.
fatal() {
  warn "$*"
  fail "$*"
  finish
}

# run_child CMD...: runs CMD in the background and waits for it, so that a
# signal to this script is handled at once (the trap forwards it).
run_child() {
  "$@" &
  CHILD=$!
  wait "$CHILD"
  local rc=$?
  CHILD=""
  return $rc
}

# shellcheck disable=SC2317  # cleanup and on_signal run from traps
# Stops every service process a runner left behind (by the pid files
# tests/integration/stack.py keeps), then Kafka and PostgreSQL. The gateway
# (nginx) is stopped with its process group: its workers would outlive a
# master killed alone and keep the port.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  local f pid
  for f in "$TEST_STATE"/it-*/pids/*.pid; do
    [ -f "$f" ] || continue
    pid="$(tr -dc '0-9' <"$f")"
    if [ -n "$pid" ] && grep -q stockflow-gateway "/proc/$pid/cmdline" 2>/dev/null; then
      warn "stopping leftover gateway process group $pid ($f)"
      kill -KILL -- "-$pid" 2>/dev/null
    elif [ -n "$pid" ] && grep -q stockflow- "/proc/$pid/cmdline" 2>/dev/null; then
      warn "stopping leftover service pid $pid ($f)"
      kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$f"
  done
  if [ "$STACK_TOUCHED" = 1 ]; then
    "$LOCAL/kafka.sh" stop >/dev/null 2>&1 || warn "kafka.sh stop failed"
    "$LOCAL/pg.sh" stop >/dev/null 2>&1 || warn "pg.sh stop failed"
    "$LOCAL/registry.sh" stop >/dev/null 2>&1 || warn "registry.sh stop failed"
  fi
  exit "$rc"
}

# shellcheck disable=SC2317
on_signal() {
  warn "interrupted by SIG$1"
  fail "interrupted by SIG$1"
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
    CHILD=""
  fi
  finish
}

trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# port_busy PORT: true if something listens on 127.0.0.1:PORT.
port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---- 1. packages ----
say "installing dependencies (deploy/local/install-deps.sh)"
run_child "$LOCAL/install-deps.sh" || fatal "install-deps.sh failed"

# ---- the test stack's settings ----
# As root, PostgreSQL runs as 'postgres', which must reach the state folder;
# a clone under /root (mode 700) cannot: fall back to a folder under /tmp.
mkdir -p "$TEST_STATE" || fatal "cannot create $TEST_STATE"
TEST_STATE="$(cd "$TEST_STATE" && pwd)"
if [ "$(id -u)" -eq 0 ] && id -u postgres >/dev/null 2>&1 \
    && ! runuser -u postgres -- test -x "$TEST_STATE"; then
  alt="/tmp/stockflow-test-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
  warn "user postgres cannot reach $TEST_STATE; using $alt instead"
  TEST_STATE="$alt"
fi
export STOCKFLOW_STATE_DIR="$TEST_STATE"
export STOCKFLOW_KAFKA_PORT="$KAFKA_PORT"
export STOCKFLOW_KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT"
export STOCKFLOW_PG_PORT="$PG_PORT"
export STOCKFLOW_REGISTRY_PORT="$REGISTRY_PORT"
export STOCKFLOW_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export STOCKFLOW_PG_DSN="host=127.0.0.1 port=$PG_PORT dbname=stockflow user=postgres"

# A previous run that was killed may have left its stack running: stop it
# (by its pid files in this state folder), then start from a clean folder.
# Only a folder this script made (it holds the marker) is ever wiped.
MARKER=.stockflow-test-state
if [ -n "$(ls -A "$TEST_STATE" 2>/dev/null)" ] && [ ! -f "$TEST_STATE/$MARKER" ]; then
  fatal "$TEST_STATE is not empty and was not made by tests/run.sh; refusing to wipe it"
fi
STACK_TOUCHED=1
"$LOCAL/kafka.sh" stop >/dev/null 2>&1
"$LOCAL/pg.sh" stop >/dev/null 2>&1
"$LOCAL/registry.sh" stop >/dev/null 2>&1
rm -rf "$TEST_STATE"
mkdir -p "$TEST_STATE/log" || fatal "cannot create $TEST_STATE"
touch "$TEST_STATE/$MARKER"
LOGS="$TEST_STATE/log"

# gateway_port PORTS: the gateway's port of a build (4th entry, else the
# command port - 1).
gateway_port() {
  local c q p g
  IFS=, read -r c q p g <<<"$1"
  echo "${g:-$((c - 1))}"
}

# Before anything slow: the ports must be free.
for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$PG_PORT" "$REGISTRY_PORT" \
         ${PORTS_NORMAL//,/ } ${PORTS_ASAN//,/ } \
         "$(gateway_port "$PORTS_NORMAL")" "$(gateway_port "$PORTS_ASAN")"; do
  port_busy "$p" && fatal "port $p is in use (another test stack?); see the STOCKFLOW_TEST_*PORT* settings in tests/run.sh"
done

# ---- 2. builds ----
declare -A BUILD_OF=([normal]="$BUILD_DIR" [asan]="$ASAN_BUILD_DIR")
declare -A BUILT=()
for b in $BUILDS; do
  dir="${BUILD_OF[$b]:-}"
  [ -n "$dir" ] || fatal "unknown build '$b' in STOCKFLOW_TEST_BUILDS (normal, asan)"
  if [ "$b" = asan ]; then
    opts=(-DCMAKE_BUILD_TYPE=Debug -DSF_SANITIZE=ON)
  else
    opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSF_SANITIZE=OFF)
  fi
  say "building $b into $dir (${opts[*]})"
  t=$SECONDS
  if run_child cmake -S "$ROOT" -B "$dir" "${opts[@]}" >"$LOGS/build-$b.log" 2>&1 \
      && run_child cmake --build "$dir" -j"$JOBS" >>"$LOGS/build-$b.log" 2>&1; then
    BUILT[$b]=1
    say "build $b done in $((SECONDS - t))s"
  else
    tail -n 40 "$LOGS/build-$b.log"
    warn "build $b failed (log $LOGS/build-$b.log)"
    fail "build $b"
  fi
done

# ---- 3. the stack ----
say "starting Kafka on :$KAFKA_PORT and PostgreSQL on :$PG_PORT (state $TEST_STATE)"
run_child "$LOCAL/kafka.sh" fetch || fatal "kafka.sh fetch failed"
run_child "$LOCAL/kafka.sh" start || fatal "kafka.sh start failed"
run_child "$LOCAL/pg.sh" init || fatal "pg.sh init failed"
run_child "$LOCAL/pg.sh" start || fatal "pg.sh start failed"
# The schema registry (docs/events.md, Confluent wire format): only the
# integration tests use it.
REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
if [[ " $TIERS " == *" integration "* ]]; then
  say "starting the schema registry on :$REGISTRY_PORT"
  run_child "$LOCAL/registry.sh" fetch || fatal "registry.sh fetch failed"
  run_child "$LOCAL/registry.sh" start || fatal "registry.sh start failed"
fi
# The unit tests that need PostgreSQL (they skip without this) get a
# migrated database of their own.
UNIT_DB="sf_unit_${RUN_ID}"
run_child "$LOCAL/pg.sh" migrate "$UNIT_DB" || fatal "pg.sh migrate $UNIT_DB failed"
export STOCKFLOW_TEST_PG_DSN="host=127.0.0.1 port=$PG_PORT dbname=$UNIT_DB user=postgres"

# ---- 4. unit tests ----
# count_junit FILE: prints "passed failed" from ctest's JUnit file.
count_junit() {
  python3 - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = root.iter("testcase")
passed = failed = 0
names = []
for c in cases:
    bad = c.get("status") not in (None, "run") or \
        c.find("failure") is not None or c.find("error") is not None
    if bad:
        failed += 1
        names.append(c.get("name"))
    else:
        passed += 1
print(passed, failed, *names)
EOF
}

unit_tests() {
  local b="$1" dir="${BUILD_OF[$1]}" junit="$LOGS/unit-$1.xml"
  say "unit tests ($b build)"
  rm -f "$junit"
  local envs=()
  if [ "$b" = asan ]; then
    envs=("ASAN_OPTIONS=$SAN_ASAN_OPTIONS" "UBSAN_OPTIONS=$SAN_UBSAN_OPTIONS")
  fi
  run_child env "${envs[@]}" ctest --test-dir "$dir" --output-on-failure \
    --timeout 300 --no-tests=ignore --output-junit "$junit"
  local rc=$?
  if [ ! -s "$junit" ]; then
    fail "unit tests $b: ctest did not run (exit $rc)"
    return
  fi
  local counts p f names
  counts="$(count_junit "$junit")" || { fail "unit tests $b: unreadable $junit"; return; }
  read -r p f names <<<"$counts"
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  local n
  for n in $names; do FAILURES+=("unit $b: $n"); done
  if [ "$f" -eq 0 ] && [ "$rc" -ne 0 ]; then
    fail "unit tests $b: ctest exited $rc"
  fi
  say "unit tests $b: $p passed, $f failed"
}

if [[ " $TIERS " == *" unit "* ]]; then
  for b in $BUILDS; do
    [ -n "${BUILT[$b]:-}" ] && unit_tests "$b"
  done
fi

# ---- 4b. contract checks: the event schemas and the docs ----
# check_schema_compat.py (fastavro, a non-C Avro implementation) checks
# schemas/envelope.avsc against every published version; check_docs.py that
# every setting and route is documented; check_deploy.sh the deploy files;
# check_gateway.py the gateway's nginx configuration; check_format.sh the C
# style. Each counts as one test.
contract_check() {
  local name="$1"
  shift
  say "contract check: $name"
  if run_child "$@"; then
    PASSED=$((PASSED + 1))
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("contract: $name")
  fi
}

# fastavro (a non-C Avro implementation) is used by the contract checks and
# by the integration tests that publish Avro commands; confluent-kafka (with
# its schema registry client and Avro deserializer) by the Confluent wire
# format tests and examples/analytics.
if ! python3 -c 'import fastavro, confluent_kafka.schema_registry.avro' 2>/dev/null; then
  run_child python3 -m pip install -q -r "$ROOT/tests/requirements.txt" \
    || warn "pip install -r tests/requirements.txt failed"
fi

# The Parse SDK judge (tests/parse: the parse npm package, pinned in its
# package-lock.json) that tests/integration/test_parse_sdk.py runs: npm ci
# when its lock file changed, nothing otherwise. Without node the test says
# so and fails.
if [[ " $TIERS " == *" integration "* ]] && command -v node >/dev/null; then
  run_child "$ROOT/tests/parse/install.sh" \
    || warn "tests/parse/install.sh failed (test_parse_sdk will fail)"
fi

if [[ " $TIERS " == *" unit "* ]]; then
  contract_check "schema compatibility (fastavro)" \
    python3 "$ROOT/tests/tools/check_schema_compat.py"
  contract_check "docs cover every setting, route and problem code" \
    python3 "$ROOT/tests/tools/check_docs.py" --codes
  # systemd-analyze verify, the compose-spec schema, kubernetes-validate
  # (pinned in tests/requirements.txt, in their own venv).
  contract_check "deploy/ units, compose file and manifests validate" \
    "$ROOT/tests/tools/check_deploy.sh" "$BUILD_DIR"
  # The gateway's nginx configuration renders and passes `nginx -t`; a
  # doctored one and a wildcard origin are refused.
  contract_check "gateway configuration passes nginx -t" \
    python3 "$ROOT/tests/tools/check_gateway.py"
  # Every tracked C source follows .clang-format (clang-format --dry-run).
  contract_check "C sources follow .clang-format" \
    "$ROOT/tests/tools/check_format.sh"
fi

# add_summary FILE LABEL: adds a runner's summary ({"passed", "failed",
# "failures"}) to the counts, failures named "LABEL: name"; sets
# SUMMARY_FAILED to its failed count.
add_summary() {
  local p f names n
  read -r p f names < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["passed"], s["failed"], *[n.replace(" ", "_") for n in s["failures"]])
' "$1")
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  for n in $names; do FAILURES+=("$2: $n"); done
  SUMMARY_FAILED="$f"
}

# ---- 5. integration tests ----
integration_tests() {
  local b="$1" dir="${BUILD_OF[$1]}" ports db prefix group summary
  if [ "$b" = asan ]; then ports="$PORTS_ASAN"; else ports="$PORTS_NORMAL"; fi
  local cmd_port qry_port proj_port gw_port
  IFS=, read -r cmd_port qry_port proj_port _ <<<"$ports"
  gw_port="$(gateway_port "$ports")"
  db="sf_it_${b}_${RUN_ID}"
  prefix="it${RUN_ID}${b}"
  group="sf-it-${RUN_ID}-${b}"
  summary="$TEST_STATE/it-$b/summary.json"
  mkdir -p "$TEST_STATE/it-$b"
  say "integration tests ($b build): database $db, topics $prefix.*"
  if ! run_child "$LOCAL/pg.sh" migrate "$db"; then
    fail "integration $b: pg.sh migrate $db failed"
    return
  fi
  if ! run_child "$LOCAL/kafka.sh" topics "$prefix.inventory.catalog:1" \
      "$prefix.inventory.stock:6" "$prefix.inventory.dlq:1" \
      "$prefix.inventory.commands:6" "$prefix.inventory.command-results:6" \
      "$prefix.inventory.commands-instances:5"; then
    fail "integration $b: kafka.sh topics failed"
    return
  fi
  local args=(--bin-dir "$dir/services" --state-dir "$TEST_STATE/it-$b"
              --summary-file "$summary"
              --env "STOCKFLOW_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
              --env "STOCKFLOW_PG_DSN=host=127.0.0.1 port=$PG_PORT dbname=$db user=postgres"
              --env "STOCKFLOW_TOPIC_CATALOG=$prefix.inventory.catalog"
              --env "STOCKFLOW_TOPIC_STOCK=$prefix.inventory.stock"
              --env "STOCKFLOW_TOPIC_DLQ=$prefix.inventory.dlq"
              --env "STOCKFLOW_PROJECTOR_GROUP=$group"
              --env "STOCKFLOW_TOPIC_COMMANDS=$prefix.inventory.commands"
              --env "STOCKFLOW_TOPIC_COMMAND_RESULTS=$prefix.inventory.command-results"
              --env "STOCKFLOW_COMMAND_INTAKE_GROUP=$group-intake"
              --env "STOCKFLOW_COMMAND_TXN_ID=sf-it-${RUN_ID}-${b}"
              --env "STOCKFLOW_HTTP_HEADER_TIMEOUT_MS=3000"
              --env "STOCKFLOW_ADMIN_USERNAME=it-admin"
              --env "STOCKFLOW_ADMIN_PASSWORD=$ADMIN_PASSWORD"
              --env "STOCKFLOW_COMMAND_LISTEN=127.0.0.1:$cmd_port"
              --env "STOCKFLOW_QUERY_LISTEN=127.0.0.1:$qry_port"
              --env "STOCKFLOW_COMMAND_URL=http://127.0.0.1:$cmd_port"
              --env "STOCKFLOW_PROJECTOR_LISTEN=127.0.0.1:$proj_port"
              --env "STOCKFLOW_SCHEMA_REGISTRY_URL=$REGISTRY_URL"
              --env "STOCKFLOW_GATEWAY_LISTEN=127.0.0.1:$gw_port"
              --env "STOCKFLOW_TRUSTED_PROXIES=127.0.0.1"
              --env "STOCKFLOW_CORS_ORIGINS=https://app.example,http://localhost:3000")
  if [ "$b" = asan ]; then
    args+=(--sanitized --env "ASAN_OPTIONS=$SAN_ASAN_OPTIONS"
           --env "UBSAN_OPTIONS=$SAN_UBSAN_OPTIONS")
  fi
  [ -n "$FILTER" ] && args+=(-k "$FILTER")
  rm -f "$summary"
  run_child python3 "$ROOT/tests/integration/run.py" "${args[@]}"
  local rc=$?
  if [ ! -s "$summary" ]; then
    fail "integration $b: the runner ended without a summary (exit $rc)"
    return
  fi
  add_summary "$summary" "integration $b"
  if [ "$SUMMARY_FAILED" -eq 0 ] && [ "$rc" -ne 0 ]; then
    fail "integration $b: runner exited $rc"
  fi
}

if [[ " $TIERS " == *" integration "* ]]; then
  for b in $BUILDS; do
    [ -n "${BUILT[$b]:-}" ] && integration_tests "$b"
  done
fi

# ---- 6. the benchmark smoke test ----
# bench/run.sh --quick (its own Release build, Kafka, PostgreSQL and the
# peer, Parse Server, on its own ports), then bench/check_report.py: every
# figure was produced, the report's tables are complete, both plots are
# PNGs, stockflow's three correctness checks passed. Speed is not judged.
# Each check counts as one test. The test stack is stopped first so the
# benchmark has the machine to itself.
bench_smoke() {
  local state="$TEST_STATE/bench" summary="$TEST_STATE/bench-summary.json"
  say "benchmark smoke test: bench/run.sh --quick (state $state, log $LOGS/bench.log)"
  "$LOCAL/kafka.sh" stop >/dev/null 2>&1 || warn "kafka.sh stop failed"
  "$LOCAL/pg.sh" stop >/dev/null 2>&1 || warn "pg.sh stop failed"
  "$LOCAL/registry.sh" stop >/dev/null 2>&1 || warn "registry.sh stop failed"
  rm -rf "$state" "$summary"
  STOCKFLOW_BENCH_NO_DOC=1 STOCKFLOW_BENCH_STATE_DIR="$state" \
    run_child "$ROOT/bench/run.sh" --quick >"$LOGS/bench.log" 2>&1
  local rc=$?
  grep -E '^== ' "$LOGS/bench.log"
  [ "$rc" -ne 0 ] && warn "bench/run.sh --quick exited $rc (log $LOGS/bench.log)"
  run_child python3 "$ROOT/bench/check_report.py" "$state/results" \
    "$state/results/benchmarks.md" --summary "$summary"
  if [ ! -s "$summary" ]; then
    fail "bench: check_report.py ended without a summary"
    return
  fi
  add_summary "$summary" bench
}

if [[ " $TIERS " == *" bench "* ]]; then
  bench_smoke
fi

finish
