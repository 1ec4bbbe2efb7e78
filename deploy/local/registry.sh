#!/usr/bin/env bash
# Apicurio Registry (a schema registry with a Confluent-compatible API) for
# local development and the tests, run from its server distribution fetched
# from Maven Central; in-memory storage: the schemas last as long as the
# process, and the command service registers its schema again at every start.
#
#   registry.sh fetch     unpack the server distribution into the cache
#   registry.sh start     start on 127.0.0.1:$STOCKFLOW_REGISTRY_PORT, wait
#   registry.sh stop      stop it by its pid file
#   registry.sh status    say whether it runs and answers
#   registry.sh url       print the URL the services want (--schema-registry-url)
#
# See docs/operations.md (the registry process) and docs/events.md.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY_PIDFILE="$RUN_DIR/registry.pid"
REGISTRY_MARKER="$REGISTRY_CACHE/.complete"
REGISTRY_JAR="$REGISTRY_CACHE/dist/apicurio-registry-app-$REGISTRY_VERSION-runner.jar"
REGISTRY_START_TIMEOUT="${STOCKFLOW_REGISTRY_START_TIMEOUT:-120}"
REGISTRY_LOG="$LOG_DIR/registry.log"

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd_fetch() {
  if [ -f "$REGISTRY_MARKER" ] && [ -f "$REGISTRY_JAR" ]; then
    sf_log "Apicurio Registry $REGISTRY_VERSION already in $REGISTRY_CACHE"
    return 0
  fi
  sf_need mvn java
  sf_log "fetching Apicurio Registry $REGISTRY_VERSION with Maven into $REGISTRY_CACHE"
  mkdir -p "$REGISTRY_CACHE"
  local tmp="$REGISTRY_CACHE/dist.partial" markers="$REGISTRY_CACHE/markers"
  rm -rf "$tmp" "$markers"
  # The plugin's markers go to the cache too, not into the source tree.
  if ! mvn -q -B -Dstyle.color=never -f "$SF_LOCAL_DIR/registry/pom.xml" \
      -Dapicurio.version="$REGISTRY_VERSION" \
      dependency:unpack -DoutputDirectory="$tmp" \
      -Dmarkers.dir="$markers" >&2; then
    rm -rf "$tmp" "$markers"
    sf_die "mvn could not fetch the registry (see the output above)"
  fi
  rm -rf "$markers"
  [ -f "$tmp/apicurio-registry-app-$REGISTRY_VERSION-runner.jar" ] \
    || sf_die "apicurio-registry-app-$REGISTRY_VERSION-runner.jar missing after the fetch"
  rm -rf "$REGISTRY_CACHE/dist"
  mv "$tmp" "$REGISTRY_CACHE/dist"
  echo "$REGISTRY_VERSION" >"$REGISTRY_MARKER"
  sf_log "fetched ($(du -sh "$REGISTRY_CACHE/dist" | cut -f1))"
}

registry_answers() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
    "$REGISTRY_URL/subjects" 2>/dev/null || true)" = "200" ]
}

cmd_start() {
  if sf_pid_alive "$REGISTRY_PIDFILE"; then
    sf_log "already running (pid $(sf_pid_of "$REGISTRY_PIDFILE")) on 127.0.0.1:$REGISTRY_PORT"
    return 0
  fi
  sf_need java curl
  [ -f "$REGISTRY_MARKER" ] || cmd_fetch
  ! registry_answers \
    || sf_die "something already answers on 127.0.0.1:$REGISTRY_PORT (another registry?)"
  sf_log "starting Apicurio Registry $REGISTRY_VERSION on 127.0.0.1:$REGISTRY_PORT"
  # Quarkus settings: listen on loopback only, no management port (it would
  # take 9000 on every interface), logs to a file, in-memory storage (the
  # default of this distribution).
  nohup env QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_HTTP_PORT="$REGISTRY_PORT" \
    QUARKUS_MANAGEMENT_ENABLED=false QUARKUS_LOG_CONSOLE_COLOR=false \
    java -Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -jar "$REGISTRY_JAR" >>"$REGISTRY_LOG" 2>&1 </dev/null &
  echo $! >"$REGISTRY_PIDFILE"
  local t0=$SECONDS
  sf_await_up "the registry" "$REGISTRY_PIDFILE" "$REGISTRY_START_TIMEOUT" \
    "$REGISTRY_LOG" registry_answers || exit 1
  sf_log "registry ready after $((SECONDS - t0))s (pid $(sf_pid_of "$REGISTRY_PIDFILE"), $REGISTRY_URL, log $REGISTRY_LOG)"
}

cmd_stop() {
  if sf_pid_alive "$REGISTRY_PIDFILE"; then
    sf_log "stopping the registry (pid $(sf_pid_of "$REGISTRY_PIDFILE"))"
    sf_stop_pid "$REGISTRY_PIDFILE" 20
  else
    rm -f "$REGISTRY_PIDFILE"
    sf_log "registry not running"
  fi
}

cmd_status() {
  if sf_pid_alive "$REGISTRY_PIDFILE"; then
    if registry_answers; then
      echo "registry: running (pid $(sf_pid_of "$REGISTRY_PIDFILE")), answering at $REGISTRY_URL"
    else
      echo "registry: running (pid $(sf_pid_of "$REGISTRY_PIDFILE")), NOT answering at $REGISTRY_URL"
      return 1
    fi
  else
    echo "registry: stopped"
    return 3
  fi
}

case "${1:-}" in
fetch) cmd_fetch ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) echo "$REGISTRY_URL" ;;
*) usage ;;
esac
