#!/usr/bin/env bash
# A private PostgreSQL cluster for local development, kept in the state folder.
#
#   pg.sh init               create the cluster once (initdb)
#   pg.sh start              start it (initialising first if needed) and wait
#   pg.sh stop [MODE]        stop it (pg_ctl -m MODE: fast, the default, or
#                            immediate: no checkpoint, crash recovery at the
#                            next start; the fault tests use both)
#   pg.sh status             say whether it runs and answers
#   pg.sh migrate [dbname]   create the database (default stockflow) if missing
#                            and apply schemas/migrations/*.sql not yet applied
#   pg.sh psql [args...]     psql connected to the cluster (database stockflow)
#
# As root the server runs as the unprivileged 'postgres' user (initdb refuses
# root); otherwise as the current user. See docs/operations.md.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_STATE="$STATE/pg"
# As root the server runs as 'postgres', which must be able to reach its
# folder. A checkout under /root (mode 700) cannot be reached: then the
# cluster lives under /var/tmp instead (one folder per state folder), and
# the state folder keeps a symlink to it.
if [ "$(id -u)" -eq 0 ] && id -u postgres >/dev/null 2>&1 \
    && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
  alt="/var/tmp/stockflow-pg-$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)"
  mkdir -p "$alt"
  if [ ! -e "$PG_STATE" ]; then
    ln -s "$alt" "$PG_STATE"
  fi
  PG_STATE="$alt"
  PG_LOG_OVERRIDE="$alt/postgres.log"
fi
PG_DATA="$PG_STATE/data"
PG_SOCK="$PG_STATE/sock"
PG_LOG="${PG_LOG_OVERRIDE:-$LOG_DIR/postgres.log}"
PG_PIDFILE="$RUN_DIR/postgres.pid"
PG_MIGRATIONS="${STOCKFLOW_MIGRATIONS_DIR:-$ROOT/schemas/migrations}"

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Server binaries: Debian keeps them off PATH, in /usr/lib/postgresql/<major>/bin.
pg_bindir() {
  if [ -n "${STOCKFLOW_PG_BINDIR:-}" ]; then
    echo "$STOCKFLOW_PG_BINDIR"
    return
  fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then
    echo "$d"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  else
    sf_die "PostgreSQL server binaries (initdb) not found; run deploy/local/install-deps.sh"
  fi
}
PG_BIN="$(pg_bindir)"

# Run a server binary as the cluster's owner.
if [ "$(id -u)" -eq 0 ]; then
  PG_OWNER=postgres
  id -u postgres >/dev/null 2>&1 \
    || sf_die "running as root but there is no 'postgres' user; install the postgresql package"
  as_owner() { runuser -u postgres -- "$@"; }
else
  PG_OWNER="$(id -un)"
  as_owner() { "$@"; }
fi

# Client connection over TCP (works for root and for the owner alike).
export PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=postgres
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

prepare_dirs() {
  mkdir -p "$PG_STATE" "$PG_SOCK"
  touch "$PG_LOG"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PG_STATE" "$PG_SOCK" "$PG_LOG"
    chmod 700 "$PG_SOCK"
    if ! runuser -u postgres -- test -w "$PG_STATE" -a -w "$PG_LOG"; then
      sf_die "the 'postgres' user cannot reach $PG_STATE (a parent folder is not searchable by others, e.g. /root is mode 700); set STOCKFLOW_STATE_DIR to a folder under /tmp or /var/tmp, or chmod o+x the parent folders"
    fi
  fi
}

cmd_init() {
  if [ -f "$PG_DATA/PG_VERSION" ]; then
    sf_log "cluster already initialised in $PG_DATA"
    return 0
  fi
  prepare_dirs
  sf_log "initialising cluster in $PG_DATA (owner $PG_OWNER, $("$PG_BIN/postgres" --version))"
  rm -rf "$PG_DATA"
  mkdir -p "$PG_DATA"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DATA"
  chmod 700 "$PG_DATA"
  if ! as_owner "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
      >>"$LOG_DIR/initdb.log" 2>&1; then
    tail -n 20 "$LOG_DIR/initdb.log" >&2
    sf_die "initdb failed (log $LOG_DIR/initdb.log)"
  fi
}

server_answers() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1
}

# The postmaster's pid is the first line of postmaster.pid.
record_pid() {
  head -n1 "$PG_DATA/postmaster.pid" >"$PG_PIDFILE"
}

cmd_start() {
  if sf_pid_alive "$PG_PIDFILE"; then
    sf_log "already running (pid $(sf_pid_of "$PG_PIDFILE")) on 127.0.0.1:$PG_PORT"
    return 0
  fi
  [ -f "$PG_DATA/PG_VERSION" ] || cmd_init
  prepare_dirs
  # A server of ours may run without our pid file (e.g. the file was removed).
  if [ -f "$PG_DATA/postmaster.pid" ] && as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    record_pid
    sf_log "already running (pid $(sf_pid_of "$PG_PIDFILE")); pid file restored"
    return 0
  fi
  sf_log "starting PostgreSQL on 127.0.0.1:$PG_PORT (data $PG_DATA)"
  if ! as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1" start >/dev/null; then
    sf_log "PostgreSQL did not start; last log lines:"
    tail -n 30 "$PG_LOG" >&2 || true
    exit 1
  fi
  record_pid
  sf_log "PostgreSQL ready (pid $(sf_pid_of "$PG_PIDFILE"), log $PG_LOG)"
}

cmd_stop() {
  local mode="${1:-fast}"
  [[ "$mode" =~ ^(fast|immediate)$ ]] || sf_die "bad stop mode '$mode' (want fast or immediate)"
  if ! sf_pid_alive "$PG_PIDFILE"; then
    rm -f "$PG_PIDFILE"
    sf_log "PostgreSQL not running"
    return 0
  fi
  local pid
  pid="$(sf_pid_of "$PG_PIDFILE")"
  sf_log "stopping PostgreSQL (pid $pid, mode $mode)"
  # pg_ctl returns once postmaster.pid is gone; the process exits a moment later.
  if as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w -t 60 stop >/dev/null 2>&1 \
      && sf_wait_gone "$pid" 10; then
    rm -f "$PG_PIDFILE"
  else
    sf_log "pg_ctl stop failed; signalling pid $pid instead"
    sf_stop_pid "$PG_PIDFILE" 30
  fi
}

cmd_status() {
  if sf_pid_alive "$PG_PIDFILE"; then
    if server_answers; then
      echo "postgres: running (pid $(sf_pid_of "$PG_PIDFILE")), answering on 127.0.0.1:$PG_PORT"
    else
      echo "postgres: running (pid $(sf_pid_of "$PG_PIDFILE")), NOT answering on 127.0.0.1:$PG_PORT"
      return 1
    fi
  else
    echo "postgres: stopped"
    return 3
  fi
}

cmd_migrate() {
  local db="${1:-stockflow}"
  [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || sf_die "bad database name '$db' (want [a-z_][a-z0-9_]*)"
  server_answers || sf_die "PostgreSQL does not answer on 127.0.0.1:$PG_PORT; run: $0 start"
  if [ -z "$(psql_q -d postgres -tAc "select 1 from pg_database where datname = '$db'")" ]; then
    sf_log "creating database $db"
    psql_q -d postgres -c "create database $db"
  fi
  psql_q -d "$db" -c "set client_min_messages = warning" \
    -c "create table if not exists schema_migrations (
          version text primary key,
          applied_at timestamptz not null default now())"
  local applied f version n=0
  applied="$(psql_q -d "$db" -tAc "select version from schema_migrations")"
  shopt -s nullglob
  local files=("$PG_MIGRATIONS"/*.sql)
  shopt -u nullglob
  if [ "${#files[@]}" -eq 0 ]; then
    sf_log "no migrations in $PG_MIGRATIONS"
    return 0
  fi
  # Lexical order, whatever the locale.
  mapfile -t files < <(printf '%s\n' "${files[@]}" | LC_ALL=C sort)
  for f in "${files[@]}"; do
    version="$(basename "$f" .sql)"
    [[ "$version" =~ ^[A-Za-z0-9_.-]+$ ]] \
      || sf_die "migration file name '$(basename "$f")' must match [A-Za-z0-9_.-]+.sql"
    if grep -qxF "$version" <<<"$applied"; then
      continue
    fi
    sf_log "applying $version to $db"
    # One transaction: the file and its schema_migrations row commit together.
    if ! psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$db" \
        -f "$f" \
        -c "insert into schema_migrations (version) values ('$version')" >/dev/null; then
      sf_die "migration $version failed; nothing of it was kept"
    fi
    n=$((n + 1))
  done
  sf_log "database $db is up to date ($n applied now, ${#files[@]} in total)"
}

cmd_psql() {
  sf_need psql
  PGDATABASE="${PGDATABASE:-stockflow}" exec psql "$@"
}

case "${1:-}" in
  init) cmd_init ;;
  start) cmd_start ;;
  stop) shift; cmd_stop "$@" ;;
  status) cmd_status ;;
  migrate) shift; cmd_migrate "$@" ;;
  psql) shift; cmd_psql "$@" ;;
  *) usage ;;
esac
