#!/usr/bin/env bash
# Stops the local stack in the reverse order of up.sh: the gateway, the
# services (query, projector, command), then PostgreSQL, then Kafka. Each by
# its pid file only.
#
#   down.sh           stop everything, keep the data
#   down.sh --wipe    stop everything, then delete the data and logs in the
#                     state folder (the Kafka jar cache is kept)
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wipe=0
case "${1:-}" in
  "") ;;
  --wipe) wipe=1 ;;
  *) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

"$SF_LOCAL_DIR/gateway.sh" stop

for svc in query projector command; do
  pidfile="$RUN_DIR/$svc.pid"
  if sf_pid_alive "$pidfile"; then
    sf_log "stopping $svc (pid $(sf_pid_of "$pidfile"))"
    sf_stop_pid "$pidfile" "${STOCKFLOW_STOP_TIMEOUT:-20}"
  else
    rm -f "$pidfile"
  fi
done

"$SF_LOCAL_DIR/pg.sh" stop
"$SF_LOCAL_DIR/registry.sh" stop
"$SF_LOCAL_DIR/kafka.sh" stop

if [ "$wipe" = 1 ]; then
  sf_log "wiping kafka/, pg/, gateway/, run/, log/ and the demo markers in $STATE"
  rm -rf "${STATE:?}/kafka" "${STATE:?}/pg" "${STATE:?}/gateway" "${STATE:?}/run" "${STATE:?}/log" \
    "${STATE:?}/demo.json" "${STATE:?}/demo-loaded"
fi
sf_log "stack stopped"
