#!/usr/bin/env bash
# Brings the whole local stack up: Debian packages, build, Kafka (+ topics),
# PostgreSQL (+ migrations), the three services, the gateway in front of
# them (nginx: deploy/local/gateway.sh), and the demo data (once).
# Safe to run again: whatever already runs is left alone, and a service that
# died is started again.
#
# Environment (besides those of lib.sh):
#   STOCKFLOW_SKIP_BUILD=1      do not run cmake
#   STOCKFLOW_BUILD_DIR         build folder (default <repo>/build)
#   STOCKFLOW_READY_TIMEOUT     seconds to wait for each /readyz (default 60)
#   STOCKFLOW_SKIP_DEMO=1       do not load the demo data
#   STOCKFLOW_SKIP_REGISTRY=1   do not start the schema registry (it is only
#                               needed with STOCKFLOW_EVENT_FORMAT=confluent)
#   STOCKFLOW_SKIP_GATEWAY=1    do not start the gateway
#   (the gateway's own settings, STOCKFLOW_GATEWAY_LISTEN, STOCKFLOW_CORS_ORIGINS
#   and more, are listed in gateway.sh)
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export STOCKFLOW_COMMAND_LISTEN="${STOCKFLOW_COMMAND_LISTEN:-127.0.0.1:8081}"
export STOCKFLOW_QUERY_LISTEN="${STOCKFLOW_QUERY_LISTEN:-127.0.0.1:8082}"
export STOCKFLOW_PROJECTOR_LISTEN="${STOCKFLOW_PROJECTOR_LISTEN:-127.0.0.1:8083}"
export STOCKFLOW_GATEWAY_LISTEN="${STOCKFLOW_GATEWAY_LISTEN:-127.0.0.1:8080}"
# The query service's Parse facade sends its writes to the command service.
export STOCKFLOW_COMMAND_URL="${STOCKFLOW_COMMAND_URL:-http://$STOCKFLOW_COMMAND_LISTEN}"
# The gateway connects from 127.0.0.1 and names each client in X-Real-IP:
# the command service counts login attempts against that client, not
# against the gateway (docs/security.md). Set it empty to trust no proxy.
if [ "${STOCKFLOW_SKIP_GATEWAY:-0}" != 1 ]; then
  export STOCKFLOW_TRUSTED_PROXIES="${STOCKFLOW_TRUSTED_PROXIES-127.0.0.1}"
fi
BUILD_DIR="${STOCKFLOW_BUILD_DIR:-$ROOT/build}"
READY_TIMEOUT="${STOCKFLOW_READY_TIMEOUT:-60}"

SERVICES=(command projector query)

service_listen() {
  case "$1" in
    command) echo "$STOCKFLOW_COMMAND_LISTEN" ;;
    projector) echo "$STOCKFLOW_PROJECTOR_LISTEN" ;;
    query) echo "$STOCKFLOW_QUERY_LISTEN" ;;
  esac
}

# 1. Packages.
"$SF_LOCAL_DIR/install-deps.sh"

# 2. Build.
if [ "${STOCKFLOW_SKIP_BUILD:-0}" = 1 ]; then
  sf_log "build skipped (STOCKFLOW_SKIP_BUILD=1)"
elif [ ! -f "$ROOT/CMakeLists.txt" ]; then
  sf_log "no CMakeLists.txt yet: build skipped"
else
  sf_log "building into $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$LOG_DIR/cmake-configure.log" 2>&1 \
    || { tail -n 40 "$LOG_DIR/cmake-configure.log" >&2; sf_die "cmake configure failed (log $LOG_DIR/cmake-configure.log)"; }
  cmake --build "$BUILD_DIR" -j2 >"$LOG_DIR/cmake-build.log" 2>&1 \
    || { tail -n 40 "$LOG_DIR/cmake-build.log" >&2; sf_die "build failed (log $LOG_DIR/cmake-build.log)"; }
fi

# 3. Kafka and PostgreSQL.
"$SF_LOCAL_DIR/kafka.sh" fetch
"$SF_LOCAL_DIR/kafka.sh" start
"$SF_LOCAL_DIR/kafka.sh" topics
"$SF_LOCAL_DIR/pg.sh" init
"$SF_LOCAL_DIR/pg.sh" start
"$SF_LOCAL_DIR/pg.sh" migrate
# The schema registry of the Confluent wire format (docs/events.md): every
# service looks schema ids up there.
if [ "${STOCKFLOW_SKIP_REGISTRY:-0}" != 1 ]; then
  "$SF_LOCAL_DIR/registry.sh" fetch
  "$SF_LOCAL_DIR/registry.sh" start
  export STOCKFLOW_SCHEMA_REGISTRY_URL="${STOCKFLOW_SCHEMA_REGISTRY_URL:-$REGISTRY_URL}"
fi

# 4. The first admin. The command service creates it at first start from
# STOCKFLOW_ADMIN_USERNAME / STOCKFLOW_ADMIN_PASSWORD; there is no default
# password anywhere. When none is given, one is generated once and kept in
# the state folder, readable by this user only.
export STOCKFLOW_ADMIN_USERNAME="${STOCKFLOW_ADMIN_USERNAME:-admin}"
ADMIN_PASSWORD_FILE="$STATE/admin-password"
if [ -z "${STOCKFLOW_ADMIN_PASSWORD:-}" ]; then
  if [ ! -s "$ADMIN_PASSWORD_FILE" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$ADMIN_PASSWORD_FILE")
    chmod 600 "$ADMIN_PASSWORD_FILE"
    sf_log "generated the first admin's password into $ADMIN_PASSWORD_FILE (mode 0600)"
  fi
  STOCKFLOW_ADMIN_PASSWORD="$(cat "$ADMIN_PASSWORD_FILE")"
fi
export STOCKFLOW_ADMIN_PASSWORD

# 5. Services.
present=()
for svc in "${SERVICES[@]}"; do
  bin="$BUILD_DIR/services/$svc/stockflow-$svc"
  pidfile="$RUN_DIR/$svc.pid"
  if [ ! -x "$bin" ]; then
    sf_log "$svc: $bin not built yet, not started"
    continue
  fi
  present+=("$svc")
  if sf_pid_alive "$pidfile"; then
    sf_log "$svc: already running (pid $(sf_pid_of "$pidfile"))"
    continue
  fi
  log="$LOG_DIR/$svc.log"
  (cd "$ROOT" && exec nohup "$bin" >>"$log" 2>&1 </dev/null) &
  echo $! >"$pidfile"
  sf_log "$svc: started (pid $!, listen $(service_listen "$svc"), log $log)"
done

for svc in "${present[@]}"; do
  url="http://$(service_listen "$svc")/readyz"
  pidfile="$RUN_DIR/$svc.pid"
  deadline=$((SECONDS + READY_TIMEOUT))
  until sf_wait_http "$url" 1; do
    if ! sf_pid_alive "$pidfile"; then
      sf_log "$svc exited; last lines of $LOG_DIR/$svc.log:"
      tail -n 30 "$LOG_DIR/$svc.log" >&2 || true
      rm -f "$pidfile"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      sf_log "$svc: $url not 200 within ${READY_TIMEOUT}s; last lines of $LOG_DIR/$svc.log:"
      tail -n 30 "$LOG_DIR/$svc.log" >&2 || true
      exit 1
    fi
  done
  sf_log "$svc: ready ($url)"
done

# 5b. The gateway: one entry point in front of the command and query
# services (started whatever their state: it answers 503 for a service that
# is down). A running one is left alone; `gateway.sh reload` applies new
# settings.
if [ "${STOCKFLOW_SKIP_GATEWAY:-0}" = 1 ]; then
  gateway_line="not started (STOCKFLOW_SKIP_GATEWAY=1)"
else
  "$SF_LOCAL_DIR/gateway.sh" start
  gateway_line="http://$STOCKFLOW_GATEWAY_LISTEN (CORS origins: ${STOCKFLOW_CORS_ORIGINS:-none})"
fi

# 6. Demo data, once.
if [ "${STOCKFLOW_SKIP_DEMO:-0}" = 1 ]; then
  :
elif [ -f "$STATE/demo-loaded" ]; then
  sf_log "demo data already loaded ($STATE/demo.json)"
elif [ "${#present[@]}" -ne "${#SERVICES[@]}" ]; then
  sf_log "demo data not loaded: not every service is built yet"
elif "$SF_LOCAL_DIR/demo-data.sh"; then
  date -u +%FT%TZ >"$STATE/demo-loaded"
else
  sf_log "warning: demo data failed to load (the stack is up; run deploy/local/demo-data.sh to retry)"
fi

# 7. Where everything is.
cat <<EOF

stockflow local stack is up
  command service    http://$STOCKFLOW_COMMAND_LISTEN
  query service      http://$STOCKFLOW_QUERY_LISTEN
  projector          http://$STOCKFLOW_PROJECTOR_LISTEN (readyz, metrics)
  gateway            $gateway_line
                     writes to the command service, reads and streams to the query service
  Kafka              $STOCKFLOW_KAFKA_BROKERS (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)
  schema registry    ${STOCKFLOW_SCHEMA_REGISTRY_URL:-not started}
  PostgreSQL         $STOCKFLOW_PG_DSN
  state folder       $STATE
  logs               $LOG_DIR
  pid files          $RUN_DIR

  first admin        $STOCKFLOW_ADMIN_USERNAME (password in $ADMIN_PASSWORD_FILE, unless you set STOCKFLOW_ADMIN_PASSWORD)
  demo ids           $STATE/demo.json (stores, products, and one manager per store: demo-manager-<n>, password in $STATE/demo-managers)

Try:
  TOKEN=\$(curl -s -X POST http://$STOCKFLOW_COMMAND_LISTEN/v1/sessions -H 'Content-Type: application/json' \\
    -d "{\\"username\\":\\"$STOCKFLOW_ADMIN_USERNAME\\",\\"password\\":\\"\$(cat $ADMIN_PASSWORD_FILE)\\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -H "Authorization: Bearer \$TOKEN" http://$STOCKFLOW_QUERY_LISTEN/v1/stores
  curl -s -H "Authorization: Bearer \$TOKEN" http://$STOCKFLOW_GATEWAY_LISTEN/v1/stores   # the same, through the gateway
  deploy/local/pg.sh psql          # SQL shell on the stockflow database
  kcat -b $STOCKFLOW_KAFKA_BROKERS -L   # topics
Stop with deploy/local/down.sh
EOF
