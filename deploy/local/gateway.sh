#!/usr/bin/env bash
# The gateway: nginx (Debian's package) as the one entry point in front of
# the command and query services, with CORS. Renders
# deploy/gateway/nginx.conf.in into its own folder and runs nginx from there
# (its own pid, temp folders and logs; no system nginx service is involved).
#
#   gateway.sh render   write the configuration, print its path
#   gateway.sh check    render, then `nginx -t` on it
#   gateway.sh run      render, then run nginx in the foreground (exec)
#   gateway.sh start    render and start it in the background (pid file
#                       $STATE/run/gateway.pid, log $STATE/log/gateway.log),
#                       wait until its /healthz answers; nothing if running
#   gateway.sh reload   render again and make the running nginx reload it
#                       (SIGHUP: a new allow-list without dropping anyone)
#   gateway.sh stop     stop it (SIGTERM by its pid file, then SIGKILL)
#
# Environment (all optional; docs/configuration.md):
#   STOCKFLOW_GATEWAY_LISTEN          address:port (default 127.0.0.1:8080)
#   STOCKFLOW_GATEWAY_COMMAND         command service (default $STOCKFLOW_COMMAND_LISTEN or 127.0.0.1:8081)
#   STOCKFLOW_GATEWAY_QUERY           query service (default $STOCKFLOW_QUERY_LISTEN or 127.0.0.1:8082)
#   STOCKFLOW_CORS_ORIGINS            comma-separated allowed origins (default empty: no CORS)
#   STOCKFLOW_CORS_MAX_AGE            seconds a preflight may be cached (default 600)
#   STOCKFLOW_MAX_BODY                largest body in bytes (default 65536, as the services)
#   STOCKFLOW_BATCH_MAX_BODY          largest POST /v1/batches body (default 1048576, as the command service)
#   STOCKFLOW_GATEWAY_STREAM_TIMEOUT  seconds a change stream may stay silent (default 3600)
#   STOCKFLOW_GATEWAY_WORKERS         nginx worker processes (default 1)
#   STOCKFLOW_GATEWAY_WORKER_CONNECTIONS  connections per worker, both sides counted (default 1024)
#   STOCKFLOW_GATEWAY_DIR             its folder (default $STATE/gateway)
#   STOCKFLOW_GATEWAY_ACCESS_LOG      access log file, or "off" (default $STATE/log/gateway-access.log)
#   STOCKFLOW_NGINX                   the nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEMPLATE_DIR="$ROOT/deploy/gateway"
GW_DIR="${STOCKFLOW_GATEWAY_DIR:-$STATE/gateway}"
GW_CONF="$GW_DIR/conf/stockflow-gateway.conf"
GW_PIDFILE="$RUN_DIR/gateway.pid"
GW_LOG="$LOG_DIR/gateway.log"
LISTEN="${STOCKFLOW_GATEWAY_LISTEN:-127.0.0.1:8080}"
UP_COMMAND="${STOCKFLOW_GATEWAY_COMMAND:-${STOCKFLOW_COMMAND_LISTEN:-127.0.0.1:8081}}"
UP_QUERY="${STOCKFLOW_GATEWAY_QUERY:-${STOCKFLOW_QUERY_LISTEN:-127.0.0.1:8082}}"
ORIGINS="${STOCKFLOW_CORS_ORIGINS:-}"
MAX_AGE="${STOCKFLOW_CORS_MAX_AGE:-600}"
MAX_BODY="${STOCKFLOW_MAX_BODY:-65536}"
BATCH_MAX_BODY="${STOCKFLOW_BATCH_MAX_BODY:-1048576}"
STREAM_TIMEOUT="${STOCKFLOW_GATEWAY_STREAM_TIMEOUT:-3600}"
WORKERS="${STOCKFLOW_GATEWAY_WORKERS:-1}"
WORKER_CONNECTIONS="${STOCKFLOW_GATEWAY_WORKER_CONNECTIONS:-1024}"
ACCESS_LOG="${STOCKFLOW_GATEWAY_ACCESS_LOG:-$LOG_DIR/gateway-access.log}"

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

nginx_bin() {
  if [ -n "${STOCKFLOW_NGINX:-}" ]; then
    echo "$STOCKFLOW_NGINX"
  elif command -v nginx >/dev/null 2>&1; then
    command -v nginx
  elif [ -x /usr/sbin/nginx ]; then
    echo /usr/sbin/nginx
  else
    sf_die "nginx not found; run deploy/local/install-deps.sh (Debian package nginx)"
  fi
}

# need_match NAME VALUE REGEX: refuse a setting that does not match.
need_match() {
  [[ "$2" =~ $3 ]] || sf_die "$1='$2' is not valid"
}

# origins_map: one map line per allowed origin. An origin is exactly
# scheme://host[:port] (what browsers send), lower-case; anything else, a
# wildcard included, is refused, so no origin is ever matched loosely.
origins_map() {
  local o list=()
  # read, not an unquoted expansion: a "*" must not become file names
  IFS=',' read -ra list <<<"$ORIGINS"
  for o in "${list[@]}"; do
    o="$(printf '%s' "$o" | tr -d ' \t' | tr 'A-Z' 'a-z')"
    [ -n "$o" ] || continue
    need_match STOCKFLOW_CORS_ORIGINS "$o" '^https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$'
    printf '"%s" $http_origin;\n' "$o"
  done
}

render() {
  local tmpl="$TEMPLATE_DIR/nginx.conf.in"
  [ -f "$tmpl" ] || sf_die "$tmpl missing"
  need_match STOCKFLOW_GATEWAY_LISTEN "$LISTEN" '^([0-9.]+|\[[0-9a-fA-F:]+\]|localhost):[0-9]{1,5}$'
  need_match STOCKFLOW_GATEWAY_COMMAND "$UP_COMMAND" '^[][A-Za-z0-9.:-]+:[0-9]{1,5}$'
  need_match STOCKFLOW_GATEWAY_QUERY "$UP_QUERY" '^[][A-Za-z0-9.:-]+:[0-9]{1,5}$'
  need_match STOCKFLOW_CORS_MAX_AGE "$MAX_AGE" '^[0-9]{1,7}$'
  need_match STOCKFLOW_MAX_BODY "$MAX_BODY" '^[0-9]{1,9}$'
  need_match STOCKFLOW_BATCH_MAX_BODY "$BATCH_MAX_BODY" '^[0-9]{1,9}$'
  need_match STOCKFLOW_GATEWAY_STREAM_TIMEOUT "$STREAM_TIMEOUT" '^[0-9]{1,7}$'
  need_match STOCKFLOW_GATEWAY_WORKERS "$WORKERS" '^([1-9][0-9]?|auto)$'
  need_match STOCKFLOW_GATEWAY_WORKER_CONNECTIONS "$WORKER_CONNECTIONS" '^[1-9][0-9]{1,5}$'
  [[ "$GW_DIR" != *[[:space:]\;\'\"@#]* ]] || sf_die "STOCKFLOW_GATEWAY_DIR '$GW_DIR' has a character nginx.conf cannot take"
  local access="off"
  if [ "$ACCESS_LOG" != off ]; then
    [[ "$ACCESS_LOG" != *[[:space:]\;\'\"@#]* ]] || sf_die "STOCKFLOW_GATEWAY_ACCESS_LOG has a character nginx.conf cannot take"
    mkdir -p "$(dirname "$ACCESS_LOG")"
    access="$ACCESS_LOG stockflow"
  fi
  local map vary="" buffer="$MAX_BODY"
  map="$(origins_map)"
  [ -n "$map" ] && vary="Origin"
  # Bodies up to 1 MiB are kept in memory; larger ones go to temp/.
  [ "$buffer" -gt 1048576 ] && buffer=1048576
  mkdir -p "$GW_DIR/conf" "$GW_DIR/temp"
  printf '# allowed origins (STOCKFLOW_CORS_ORIGINS), rendered by gateway.sh\n%s\n' \
    "$map" >"$GW_DIR/conf/cors-origins.map"
  cp "$TEMPLATE_DIR/headers.conf" "$TEMPLATE_DIR/proxy.conf" "$GW_DIR/conf/"
  sed -e "s#@DIR@#$GW_DIR#g" -e "s#@LISTEN@#$LISTEN#g" \
      -e "s#@COMMAND@#$UP_COMMAND#g" -e "s#@QUERY@#$UP_QUERY#g" \
      -e "s#@MAX_BODY@#$MAX_BODY#g" -e "s#@BATCH_MAX_BODY@#$BATCH_MAX_BODY#g" \
      -e "s#@BODY_BUFFER@#$buffer#g" -e "s#@STREAM_TIMEOUT@#${STREAM_TIMEOUT}s#g" \
      -e "s#@CORS_MAX_AGE@#$MAX_AGE#g" -e "s#@VARY@#$vary#g" \
      -e "s#@WORKERS@#$WORKERS#g" -e "s#@WORKER_CONNECTIONS@#$WORKER_CONNECTIONS#g" \
      -e "s#@ACCESS_LOG@#$access#g" \
      "$tmpl" >"$GW_CONF.tmp"
  if grep -n '@[A-Z_]*@' "$GW_CONF.tmp" >&2; then
    sf_die "placeholders left unreplaced in $GW_CONF.tmp"
  fi
  mv "$GW_CONF.tmp" "$GW_CONF"
}

# nginx_cmd ARGS...: nginx with this gateway's prefix and configuration;
# its start-up errors go to stderr, not to the system's /var/log/nginx.
nginx_cmd() {
  "$(nginx_bin)" -p "$GW_DIR" -c "$GW_CONF" -e stderr "$@"
}

cmd="${1:-}"
case "$cmd" in
  render)
    render
    echo "$GW_CONF"
    ;;
  check)
    render
    nginx_cmd -t -q
    ;;
  run)
    render
    exec "$(nginx_bin)" -p "$GW_DIR" -c "$GW_CONF" -e stderr
    ;;
  start)
    if sf_pid_alive "$GW_PIDFILE"; then
      sf_log "already running (pid $(sf_pid_of "$GW_PIDFILE"))"
      exit 0
    fi
    render
    nginx_cmd -t -q || sf_die "nginx -t refused $GW_CONF"
    (exec nohup "$(nginx_bin)" -p "$GW_DIR" -c "$GW_CONF" -e stderr >>"$GW_LOG" 2>&1 </dev/null) &
    echo $! >"$GW_PIDFILE"
    deadline=$((SECONDS + 10))
    until curl -s -o /dev/null --max-time 1 "http://$LISTEN/healthz"; do
      if ! sf_pid_alive "$GW_PIDFILE"; then
        tail -n 20 "$GW_LOG" >&2 || true
        rm -f "$GW_PIDFILE"
        sf_die "gateway exited at start (log $GW_LOG)"
      fi
      ((SECONDS < deadline)) || sf_die "gateway: no answer on $LISTEN within 10s (log $GW_LOG)"
      sleep 0.2
    done
    sf_log "started (pid $(sf_pid_of "$GW_PIDFILE"), listen $LISTEN, log $GW_LOG)"
    ;;
  reload)
    sf_pid_alive "$GW_PIDFILE" || sf_die "gateway is not running"
    render
    nginx_cmd -t -q || sf_die "nginx -t refused $GW_CONF; the running gateway keeps its old configuration"
    kill -HUP "$(sf_pid_of "$GW_PIDFILE")"
    sf_log "reloaded (allow-list: ${ORIGINS:-none})"
    ;;
  stop)
    if sf_pid_alive "$GW_PIDFILE"; then
      sf_log "stopping gateway (pid $(sf_pid_of "$GW_PIDFILE"))"
      sf_stop_pid "$GW_PIDFILE" "${STOCKFLOW_STOP_TIMEOUT:-20}"
    else
      rm -f "$GW_PIDFILE"
    fi
    ;;
  *) usage ;;
esac
