#!/usr/bin/env bash
# The peer of issue 6, measured: Parse Server 9 on PostgreSQL with the data
# shape of bench/run.sh (20 stores x 1,000 products = 20,000 inventory rows)
# and the same load generator (sf-loadgen) at the same 64 connections.
# Writes bench/parse/results.json (or $PARSE_BENCH_RESULTS) and prints each
# figure.
#
#   bench/parse/run.sh            full: 20 s per figure
#   bench/parse/run.sh --quick    5 s per figure (under 3 minutes)
#
#  1. PostgreSQL: PARSE_PG_URI if set (its database is dropped and made
#     again), else a private cluster (deploy/local/pg.sh, state
#     $PARSE_BENCH_PG_STATE, default /tmp/parse-bench, port 25499), stopped
#     at the end;
#  2. setup.sh --fresh (npm ci, the database, Parse Server on :1337), seed.js;
#     then an index on Inventory's store pointer (Parse makes none; the
#     store page query filters on it) and ANALYZE;
#  3. sf-loadgen, 64 connections, closed loop: POST Transaction, PUT Inventory
#     Increment -1, the movement (both, one after the other), the store page
#     (where store pointer, limit 100), one row;
#  4. correctness: 32 connections x 10 Increment -1 on a row holding 100
#     (final quantity, accepted answers); one POST Transaction sent twice
#     with the same X-Parse-Request-Id (objects created), with Parse's
#     defaults and again with its experimental idempotency turned on;
#  5. LiveQuery (live.js, the parse SDK's client): freshness at 100 writes/s,
#     and a subscriber away 5 s during 100 changes;
#  6. the Parse SDK flow (tests/parse/flow.js --target parse --peer --bench:
#     log-in, an Inventory query with where, a Transaction saved, the
#     LiveQuery update it causes), Parse Server restarted with the template's
#     Cloud Code (tests/parse/cloud.js) for it; PARSE_BENCH_FLOW_ROUNDS
#     rounds (default 200, quick 20).
# Every process it starts is stopped by its pid when it exits.
#
# Environment (optional): PARSE_PG_URI; PARSE_BENCH_LOADGEN (a built
# sf-loadgen; default <repo>/build-bench/bench/sf-loadgen, else it builds
# one into <repo>/build-parsebench); PARSE_BENCH_DIR (/tmp/parse-bench-peer);
# PARSE_BENCH_DURATION (seconds per figure); PARSE_BENCH_CONNECTIONS (64);
# PARSE_BENCH_LIVE_S (seconds of the LiveQuery freshness run: 30, quick 10);
# PARSE_BENCH_RESULTS (where the results go; default bench/parse/results.json;
# bench/run.sh --with-parse points it into its own results folder);
# PARSE_BENCH_FLOW_ROUNDS (rounds of the SDK flow, step 6).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CMDLINE="bench/parse/run.sh $*"
QUICK=0
case "${1:-}" in
  "") ;;
  --quick) QUICK=1 ;;
  -h | --help) sed -n '2,41p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: bench/parse/run.sh [--quick]" >&2; exit 2 ;;
esac
if [ "$QUICK" = 1 ]; then DUR="${PARSE_BENCH_DURATION:-5}"; WARM=0.5; LIVE_S="${PARSE_BENCH_LIVE_S:-10}"
else DUR="${PARSE_BENCH_DURATION:-20}"; WARM=2; LIVE_S="${PARSE_BENCH_LIVE_S:-30}"; fi
CONNS="${PARSE_BENCH_CONNECTIONS:-64}"
RESULTS="${PARSE_BENCH_RESULTS:-$HERE/results.json}"
T0=$SECONDS

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/parse/run.sh: %s\n' "$*" >&2; exit 1; }

export PARSE_BENCH_DIR="${PARSE_BENCH_DIR:-/tmp/parse-bench-peer}"
OUT="$PARSE_BENCH_DIR/out"
rm -rf "$OUT"; mkdir -p "$OUT" || die "cannot create $OUT"
export PARSE_APP_ID="${PARSE_APP_ID:-stockflow-bench}"
export PARSE_PORT="${PARSE_PORT:-1337}"
export PARSE_URL="http://127.0.0.1:$PARSE_PORT/parse"
[ -s "$PARSE_BENCH_DIR/master.key" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$PARSE_BENCH_DIR/master.key"
export PARSE_MASTER_KEY="${PARSE_MASTER_KEY:-$(cat "$PARSE_BENCH_DIR/master.key")}"

OWN_PG=0
export STOCKFLOW_STATE_DIR="${PARSE_BENCH_PG_STATE:-/tmp/parse-bench}"
export STOCKFLOW_PG_PORT="${PARSE_BENCH_PG_PORT:-25499}"
# shellcheck disable=SC2317  # runs from the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "$HERE/stop.sh" >/dev/null 2>&1
  [ "$OWN_PG" = 1 ] && "$ROOT/deploy/local/pg.sh" stop >/dev/null 2>&1
  say "stopped everything this run started (results in $OUT)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. PostgreSQL and the load generator ----
if [ -z "${PARSE_PG_URI:-}" ]; then
  say "starting a private PostgreSQL on :$STOCKFLOW_PG_PORT (state $STOCKFLOW_STATE_DIR)"
  OWN_PG=1
  "$ROOT/deploy/local/pg.sh" start >"$OUT/pg-start.log" 2>&1 || { cat "$OUT/pg-start.log" >&2; die "pg.sh start failed"; }
  export PARSE_PG_URI="postgres://postgres@127.0.0.1:$STOCKFLOW_PG_PORT/parse_bench"
fi
LOADGEN="${PARSE_BENCH_LOADGEN:-$ROOT/build-bench/bench/sf-loadgen}"
if [ ! -x "$LOADGEN" ]; then
  LOADGEN="$ROOT/build-parsebench/bench/sf-loadgen"
  say "building sf-loadgen into $ROOT/build-parsebench"
  cmake -S "$ROOT" -B "$ROOT/build-parsebench" -DCMAKE_BUILD_TYPE=Release -DSF_BENCH=ON -DSF_TESTS=OFF \
    -DCMAKE_C_FLAGS=-Wno-error=format-truncation >"$OUT/build.log" 2>&1 \
    && cmake --build "$ROOT/build-parsebench" --target sf-loadgen -j2 >>"$OUT/build.log" 2>&1 \
    || { tail -n 20 "$OUT/build.log" >&2; die "building sf-loadgen failed"; }
fi

# ---- 2. Parse Server and the data ----
say "installing and starting Parse Server (database ${PARSE_PG_URI##*/})"
"$HERE/setup.sh" --fresh 2>&1 | grep -v DeprecationWarning >&2
[ "${PIPESTATUS[0]}" = 0 ] || die "setup.sh failed"
say "seeding 20 stores x 1,000 products (20,000 Inventory rows) through /parse/batch"
node "$HERE/seed.js" "$OUT" >&2 || die "seed.js failed"
psql "$PARSE_PG_URI" -v ON_ERROR_STOP=1 -q \
  -c 'CREATE INDEX IF NOT EXISTS inventory_store ON "Inventory" ("store")' -c 'ANALYZE' \
  || die "index/ANALYZE failed"

H=(-H "X-Parse-Application-Id: $PARSE_APP_ID" -H "X-Parse-Master-Key: $PARSE_MASTER_KEY")
lg() { "$LOADGEN" --url "http://127.0.0.1:$PARSE_PORT" "${H[@]}" "$@"; }
api() { curl -s --max-time 10 "${H[@]}" -H 'Content-Type: application/json' "$@"; }

# ---- 3. throughput and latency ----
for name in transaction increment movement read-page read-row; do
  say "$name: $CONNS connections, ${DUR}s"
  lg --spec "$OUT/spec-$name.json" --ids "$OUT/ids.json" -c "$CONNS" -d "$DUR" -w "$WARM" \
    --label "parse-$name" --json "$OUT/$name.json" >&2 || die "sf-loadgen $name failed"
done

# ---- 4. correctness ----
say "32 clients x 10 sales of 1 (Increment -1) on a row holding 100"
api -X POST -d '{"objectId":"racerow0000000000001","store":{"__type":"Pointer","className":"Store","objectId":"st00000001"},"product":{"__type":"Pointer","className":"Product","objectId":"pr00000001"},"quantity":100}' \
  "$PARSE_URL/classes/Inventory" >/dev/null
printf '{"ops":[{"name":"sale","method":"PUT","path":"/parse/classes/Inventory/racerow0000000000001","body":"{\\"quantity\\":{\\"__op\\":\\"Increment\\",\\"amount\\":-1}}"}]}' >"$OUT/spec-race.json"
lg --spec "$OUT/spec-race.json" -c 32 -n 320 --label parse-race --json "$OUT/race.json" >&2 || die "race run failed"
api "$PARSE_URL/classes/Inventory/racerow0000000000001" >"$OUT/race-final.json"

# retry_check TAG: the same POST twice with one X-Parse-Request-Id; counts
# the Transaction objects carrying the marker.
retry_check() {
  local tag="$1" rid marker c1 c2 where
  rid="bench-retry-$tag-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  marker="retry-$tag-$rid"
  c1="$(api -o /dev/null -w '%{http_code}' -H "X-Parse-Request-Id: $rid" -X POST \
        -d "{\"type\":\"sale\",\"quantity\":1,\"note\":\"$marker\"}" "$PARSE_URL/classes/Transaction")"
  c2="$(api -o "$OUT/retry-$tag-second.json" -w '%{http_code}' -H "X-Parse-Request-Id: $rid" -X POST \
        -d "{\"type\":\"sale\",\"quantity\":1,\"note\":\"$marker\"}" "$PARSE_URL/classes/Transaction")"
  where="$(python3 -c 'import json,sys,urllib.parse; print(urllib.parse.quote(json.dumps({"note": sys.argv[1]})))' "$marker")"
  api "$PARSE_URL/classes/Transaction?where=$where&count=1&limit=0" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); json.dump({"first": int(sys.argv[1]), "second": int(sys.argv[2]), "second_body": open(sys.argv[3]).read()[:200], "created": d["count"]}, open(sys.argv[4], "w"))' \
      "$c1" "$c2" "$OUT/retry-$tag-second.json" "$OUT/retry-$tag.json"
}
say "retried write, same X-Parse-Request-Id (Parse defaults: idempotency off)"
retry_check default

# ---- 5. LiveQuery ----
say "LiveQuery freshness at 100 writes/s for ${LIVE_S}s"
node "$HERE/live.js" fresh 100 "$LIVE_S" "$OUT/live.json" >&2 || die "live.js fresh failed"
say "LiveQuery: subscriber away 5 s during 100 changes"
node "$HERE/live.js" disconnect "$OUT/live-disconnect.json" >&2 || die "live.js disconnect failed"

FLOW_ROUNDS="${PARSE_BENCH_FLOW_ROUNDS:-$([ "$QUICK" = 1 ] && echo 20 || echo 200)}"
say "the Parse SDK flow, $FLOW_ROUNDS rounds (Parse Server with tests/parse/cloud.js)"
"$HERE/stop.sh" >/dev/null 2>&1
PARSE_CLOUD="$ROOT/tests/parse/cloud.js" "$HERE/setup.sh" 2>&1 | grep -v DeprecationWarning >&2
FLOW_SETUP="${PIPESTATUS[0]}"
if [ "$FLOW_SETUP" = 0 ] && "$ROOT/tests/parse/install.sh"; then
  node "$ROOT/tests/parse/flow.js" --server "$PARSE_URL" --livequery "ws://127.0.0.1:$PARSE_PORT/parse" \
    --app-id "$PARSE_APP_ID" --target parse --master-key "$PARSE_MASTER_KEY" --peer --only bench \
    --bench "$FLOW_ROUNDS" --json "$OUT/flow.json" >&2 || say "the Parse SDK flow failed"
else
  say "Parse Server with Cloud Code, or the judge's npm ci, failed: no SDK flow figures"
fi

say "restarting Parse Server with its experimental idempotency (classes/.*)"
"$HERE/stop.sh" >/dev/null 2>&1
PARSE_IDEMPOTENCY=1 "$HERE/setup.sh" 2>&1 | grep -v DeprecationWarning >&2
[ "${PIPESTATUS[0]}" = 0 ] || die "setup.sh (idempotency) failed"
retry_check idempotency
"$HERE/stop.sh" >/dev/null 2>&1

# ---- results ----
MEM_MB="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)"
CPU="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
MACHINE="$(nproc) cores ($CPU), ${MEM_MB} MiB RAM, $(uname -sr)"
PGVER="$(psql "${PARSE_PG_URI%/*}/postgres" -qAt -c 'show server_version' 2>/dev/null || echo unknown)"
python3 - "$OUT" "$RESULTS" "$CMDLINE" "$QUICK" "$DUR" "$MACHINE" "$PGVER" "$((SECONDS - T0))" "$LIVE_S" "$CONNS" "$HERE" <<'PY' || die "results.json"
import json, os, subprocess, sys, datetime
out, dest, cmdline, quick, dur, machine, pgver, took, live_s, conns, here = sys.argv[1:12]
def load(n):
    p = os.path.join(out, n)
    return json.load(open(p)) if os.path.exists(p) else None
def lat(r, op=None):
    if r is None:
        return None
    h = r["ops"][op]["latency_ms"] if op else r["latency_ms"]
    return {"p50_ms": h["p50"], "p90_ms": h.get("p90"), "p99_ms": h["p99"], "p999_ms": h.get("p999")}
def fig(r, op=None):
    if r is None:
        return None
    d = {"ok_rps": r["ok_rps"], "errors": r["errors"], "requests": r["requests"], "status": r["status"]}
    d.update(lat(r) or {})
    if op:
        d["ops"] = {k: dict(ok=v["ok"], **lat(r, k)) for k, v in r["ops"].items()}
    return d
mv = load("movement.json")
race, final = load("race.json"), load("race-final.json")
ver = lambda m: json.load(open(os.path.join(here, "node_modules", m, "package.json")))["version"]
res = {
  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  "command": cmdline, "quick": quick == "1", "duration_s": int(dur), "connections": int(conns), "took_s": int(took),
  "machine": machine,
  "versions": {"parse-server": ver("parse-server"), "parse": ver("parse"), "node": subprocess.check_output(["node", "--version"], text=True).strip(), "postgresql": pgver},
  "seed": load("seed.json"),
  "transaction": fig(load("transaction.json")),
  "increment": fig(load("increment.json")),
  "movement": dict(fig(mv, True) or {}, movements_per_s=(mv["ops"]["increment"]["ok"] / mv["elapsed_s"]) if mv else None),
  "read_page": fig(load("read-page.json")),
  "read_row": fig(load("read-row.json")),
  "race": {"clients": 32, "sales_each": 10, "start": 100, "accepted": race and race["ok"],
           "answers": race and race["status"], "final_quantity": final and final.get("quantity")},
  "retry_default": load("retry-default.json"),
  "retry_idempotency": load("retry-idempotency.json"),
  "livequery": load("live.json"),
  "livequery_disconnect": load("live-disconnect.json"),
  "sdk_flow": load("flow.json"),
}
json.dump(res, open(dest, "w"), indent=1)
print(json.dumps({k: res[k] for k in ("race", "retry_default", "retry_idempotency", "livequery_disconnect")}, indent=1))
PY
say "results in $RESULTS; took $((SECONDS - T0)) s"
