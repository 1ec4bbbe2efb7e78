# shellcheck shell=bash disable=SC2034
# Common settings and helpers for the local-stack scripts in deploy/local/.
# Sourced, never run: `. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.
#
# Environment (all optional):
#   STOCKFLOW_STATE_DIR              state folder (default: <repo>/.local)
#   STOCKFLOW_KAFKA_PORT             broker port (default 9092)
#   STOCKFLOW_KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093)
#   STOCKFLOW_PG_PORT                PostgreSQL port (default 55432)
#   STOCKFLOW_KAFKA_VERSION          Kafka release fetched from Maven (default 4.1.2)
#   STOCKFLOW_KAFKA_CACHE            jar cache (default ~/.cache/stockflow/kafka-<version>)
#   STOCKFLOW_REGISTRY_PORT          schema registry port (default 8090)
#   STOCKFLOW_REGISTRY_VERSION       Apicurio Registry release fetched from Maven (default 2.6.13.Final)
#   STOCKFLOW_REGISTRY_CACHE         its cache (default ~/.cache/stockflow/apicurio-registry-<version>)
#   STOCKFLOW_KAFKA_BROKERS          exported for the services (default 127.0.0.1:<kafka port>)
#   STOCKFLOW_PG_DSN                 exported for the services

if [ -n "${SF_LIB_LOADED:-}" ]; then
  return 0
fi
SF_LIB_LOADED=1

SF_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SF_LOCAL_DIR/../.." && pwd)"

STOCKFLOW_STATE_DIR="${STOCKFLOW_STATE_DIR:-$ROOT/.local}"
STATE="$STOCKFLOW_STATE_DIR"
RUN_DIR="$STATE/run"
LOG_DIR="$STATE/log"

KAFKA_PORT="${STOCKFLOW_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${STOCKFLOW_KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${STOCKFLOW_PG_PORT:-55432}"

REGISTRY_PORT="${STOCKFLOW_REGISTRY_PORT:-8090}"
REGISTRY_VERSION="${STOCKFLOW_REGISTRY_VERSION:-2.6.13.Final}"
REGISTRY_CACHE="${STOCKFLOW_REGISTRY_CACHE:-${HOME:-/root}/.cache/stockflow/apicurio-registry-$REGISTRY_VERSION}"
# The Confluent-compatible API of the registry, as the services want it.
REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"

KAFKA_VERSION="${STOCKFLOW_KAFKA_VERSION:-4.1.2}"
KAFKA_CACHE="${STOCKFLOW_KAFKA_CACHE:-${HOME:-/root}/.cache/stockflow/kafka-$KAFKA_VERSION}"

export STOCKFLOW_STATE_DIR
export STOCKFLOW_KAFKA_BROKERS="${STOCKFLOW_KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}"
export STOCKFLOW_PG_DSN="${STOCKFLOW_PG_DSN:-host=127.0.0.1 port=$PG_PORT dbname=stockflow user=postgres}"

mkdir -p "$RUN_DIR" "$LOG_DIR"

# sf_log MESSAGE...: one line on stderr, prefixed with the calling script's name.
sf_log() {
  printf '%s: %s\n' "$(basename "${0:-stockflow}" .sh)" "$*" >&2
}

# sf_die MESSAGE...: log and exit 1.
sf_die() {
  sf_log "error: $*"
  exit 1
}

# sf_need CMD...: fail with a hint if a command is missing.
sf_need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 \
      || sf_die "'$c' not found; run deploy/local/install-deps.sh"
  done
}

# sf_pid_alive PIDFILE: true if the file names a live process.
sf_pid_alive() {
  local pidfile="$1" pid
  [ -f "$pidfile" ] || return 1
  pid="$(head -n1 "$pidfile" 2>/dev/null | tr -dc '0-9')"
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null
}

# sf_pid_of PIDFILE: print the pid in the file (empty if none).
sf_pid_of() {
  head -n1 "$1" 2>/dev/null | tr -dc '0-9'
}

# sf_wait_gone PID TIMEOUT_S: wait until PID has exited; false on timeout.
sf_wait_gone() {
  local pid="$1" timeout="$2" i
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$pid" 2>/dev/null
}

# sf_stop_pid PIDFILE [TIMEOUT_S]: SIGTERM the process named in PIDFILE, wait
# up to TIMEOUT_S (default 20) for it to exit, then SIGKILL it. Only that pid
# is signalled. Removes the pid file. Succeeds if nothing was running.
sf_stop_pid() {
  local pidfile="$1" timeout="${2:-20}" pid
  if ! sf_pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return 0
  fi
  pid="$(sf_pid_of "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  if ! sf_wait_gone "$pid" "$timeout"; then
    sf_log "pid $pid did not exit within ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sf_wait_gone "$pid" 5 || sf_log "pid $pid still there after SIGKILL"
  fi
  rm -f "$pidfile"
}

# sf_await_up NAME PIDFILE TIMEOUT_S LOGFILE CHECK...: wait until the command
# CHECK... succeeds while the process named in PIDFILE lives. When it exits
# or TIMEOUT_S passes, prints the tail of LOGFILE, stops it (by PIDFILE) and
# returns 1.
sf_await_up() {
  local name="$1" pidfile="$2" timeout="$3" logfile="$4" deadline
  shift 4
  deadline=$((SECONDS + timeout))
  until "$@"; do
    if ! sf_pid_alive "$pidfile"; then
      sf_log "$name exited during start-up; last log lines:"
      tail -n 30 "$logfile" >&2 2>/dev/null || true
      rm -f "$pidfile"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      sf_log "$name did not answer within ${timeout}s; last log lines:"
      tail -n 30 "$logfile" >&2 2>/dev/null || true
      sf_stop_pid "$pidfile" 20
      return 1
    fi
    sleep 0.5
  done
}

# sf_wait_http URL TIMEOUT_S: wait until URL answers 200. Returns 1 on timeout.
sf_wait_http() {
  local url="$1" timeout="$2" deadline code
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true)"
    [ "$code" = "200" ] && return 0
    sleep 0.5
  done
  return 1
}
