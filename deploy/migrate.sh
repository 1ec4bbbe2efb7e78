#!/usr/bin/env bash
# Applies schemas/migrations/*.sql not yet applied to the database that the
# standard libpq environment names (PGHOST, PGPORT, PGUSER, PGPASSWORD,
# PGDATABASE, or a connection string in STOCKFLOW_PG_DSN), each file in one
# transaction with its schema_migrations row, in lexical order: the same
# bookkeeping as deploy/local/pg.sh migrate, for a server this project did
# not start (systemd, compose, Kubernetes). Safe to run again; runs at the
# same time are serialised by an advisory lock, and a file that another run
# applied meanwhile makes this one fail without applying it twice.
#
#   deploy/migrate.sh [MIGRATIONS_DIR]     default: ../schemas/migrations
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${1:-${STOCKFLOW_MIGRATIONS_DIR:-$HERE/../schemas/migrations}}"
[ -d "$DIR" ] || { echo "migrate: no folder $DIR" >&2; exit 2; }
command -v psql >/dev/null || { echo "migrate: psql not found (postgresql-client)" >&2; exit 2; }
conn=()
[ -n "${STOCKFLOW_PG_DSN:-}" ] && conn=(-d "$STOCKFLOW_PG_DSN")
q() { psql -X -q -v ON_ERROR_STOP=1 "${conn[@]}" "$@"; }

q -c "set client_min_messages = warning" \
  -c "create table if not exists schema_migrations (
        version text primary key,
        applied_at timestamptz not null default now())"
shopt -s nullglob
mapfile -t files < <(printf '%s\n' "$DIR"/*.sql | LC_ALL=C sort)
n=0
for f in "${files[@]}"; do
  [ -n "$f" ] || continue
  v="$(basename "$f" .sql)"
  [[ "$v" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "migrate: bad file name $f" >&2; exit 2; }
  applied="$(q -tA -c "select count(*) from schema_migrations where version = '$v'")"
  [ "$applied" = "0" ] || continue
  echo "migrate: applying $v" >&2
  q --single-transaction \
    -c "select pg_advisory_xact_lock(hashtext('stockflow_migrate'))" \
    -c "do \$\$ begin if exists (select 1 from schema_migrations where version = '$v') then raise exception 'already applied'; end if; end \$\$" \
    -f "$f" \
    -c "insert into schema_migrations (version) values ('$v')" >/dev/null \
    || { echo "migrate: $v failed; nothing of it was kept" >&2; exit 1; }
  n=$((n + 1))
done
echo "migrate: up to date ($n applied now, ${#files[@]} in total)" >&2
