/* proj_pg: blocking libpq for the projector's worker thread (see proj_pg.h
 * for why blocking is the right choice here).
 *
 * Every PGresult is checked and cleared; an error leaves its SQLSTATE and
 * message in a proj_pg_error_t for the caller's log line, which carries the
 * batch context this module does not know. Besides the plan's statements
 * (proj_batch), this module owns the few statements that depend on what an
 * earlier statement returned: the change log, the notifications and the
 * retention pruning. */
#include "proj_pg.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

/* One changes row per transactions id in $1, in array order: INSERT ...
 * SELECT ... ORDER BY hands out the bigserial ids in that order. */
#define SQL_CHANGES                                                          \
  "WITH c AS (INSERT INTO changes (store_id, product_id, on_hand, reserved," \
  " version, cause, transaction_id, occurred_at)"                            \
  " SELECT t.store_id, t.product_id, t.on_hand_after, t.reserved_after,"     \
  " t.version, t.type, t.id, t.created_at"                                   \
  " FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)"                   \
  " JOIN transactions t ON t.id = u.id ORDER BY u.ord RETURNING id)"         \
  " SELECT count(*), COALESCE(max(id), 0) FROM c"
/* The same for the stock_crossings ids in $1 (rules: cause below_reorder or
 * restored, the levels and version of the movement that crossed). */
#define SQL_XCHANGES                                                         \
  "WITH c AS (INSERT INTO changes (store_id, product_id, on_hand, reserved," \
  " version, cause, transaction_id, occurred_at)"                            \
  " SELECT x.store_id, x.product_id, x.on_hand, x.reserved, x.version,"      \
  " x.kind, x.id, x.created_at"                                              \
  " FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)"                   \
  " JOIN stock_crossings x ON x.id = u.id ORDER BY u.ord RETURNING id)"      \
  " SELECT count(*), COALESCE(max(id), 0) FROM c"
#define SQL_NOTIFY                                 \
  "SELECT CASE WHEN $1::bigint > 0 THEN"           \
  " pg_notify('stockflow_changes', $1::text) END," \
  " pg_notify('stockflow_offsets', '')"
/* The prefix of ids up to the newest row recorded before the cutoff. */
#define SQL_PRUNE                                                              \
  "WITH cut AS (SELECT max(id) AS id FROM changes"                             \
  " WHERE recorded_at < now() - $1::bigint * interval '1 second'),"            \
  " d AS (DELETE FROM changes WHERE id <= (SELECT id FROM cut) RETURNING id)," \
  " m AS (UPDATE changes_meta SET pruned_through = (SELECT id FROM cut)"       \
  " WHERE (SELECT id FROM cut) IS NOT NULL"                                    \
  " AND pruned_through < (SELECT id FROM cut) RETURNING pruned_through)"       \
  " SELECT (SELECT count(*) FROM d),"                                          \
  " COALESCE((SELECT pruned_through FROM m),"                                  \
  " (SELECT pruned_through FROM changes_meta))"

#define STR(x) #x
#define XSTR(x) STR(x)

struct proj_pg {
  PGconn *conn; /* owned; NULL when not connected */
  proj_pg_opts_t o;
  sf_log_t *log;
  proj_sqlarr_t ids;  /* scratch: the inserted transaction ids of a batch */
  proj_sqlarr_t xids; /* scratch: the inserted stock_crossings ids */
};

int proj_pg_new(proj_pg_t **out, const proj_pg_opts_t *opts, sf_log_t *log) {
  if (!out || !opts || !opts->dsn || !opts->group)
    return SF_EINVAL;
  proj_pg_t *pg = calloc(1, sizeof *pg);
  if (!pg)
    return SF_ENOMEM;
  pg->o = *opts;
  pg->log = log;
  proj_sqlarr_init(&pg->ids);
  proj_sqlarr_init(&pg->xids);
  *out = pg;
  return 0;
}

static void drop_conn(proj_pg_t *pg) {
  if (pg->conn)
    PQfinish(pg->conn);
  pg->conn = NULL;
}

void proj_pg_destroy(proj_pg_t *pg) {
  if (!pg)
    return;
  drop_conn(pg);
  proj_sqlarr_free(&pg->ids);
  proj_sqlarr_free(&pg->xids);
  free(pg);
}

bool proj_pg_connected(const proj_pg_t *pg) {
  return pg->conn && PQstatus(pg->conn) == CONNECTION_OK;
}

struct pg_conn *proj_pg_conn(proj_pg_t *pg) {
  return proj_pg_connected(pg) ? pg->conn : NULL;
}

void proj_pg_set_error(proj_pg_t *pg, proj_pg_error_t *err, const char *stmt,
                       const PGresult *res) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *msg = res ? PQresultErrorMessage(res) : NULL;
  if (!msg || !*msg)
    msg = pg->conn ? PQerrorMessage(pg->conn) : "no connection";
  if (!msg || !*msg)
    msg = "unexpected result";
  snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state ? state : "");
  snprintf(err->stmt, sizeof err->stmt, "%s", stmt);
  snprintf(err->message, sizeof err->message, "%s", msg);
  /* libpq messages end with a newline; logs want one line. */
  for (char *c = err->message; *c; c++)
    if (*c == '\n' || *c == '\r' || *c == '\t')
      *c = (c[1] ? ' ' : '\0');
}

/* Checks a result; clears it in every case. */
static int check(proj_pg_t *pg, PGresult *res, ExecStatusType want,
                 const char *stmt, proj_pg_error_t *err) {
  int rc = 0;
  if (!res || PQresultStatus(res) != want) {
    proj_pg_set_error(pg, err, stmt, res);
    rc = SF_EPG;
  }
  PQclear(res);
  return rc;
}

/* A result that is not the one row expected: error filled, result cleared. */
static int fail_result(proj_pg_t *pg, PGresult *res, const char *stmt,
                       proj_pg_error_t *err) {
  proj_pg_set_error(pg, err, stmt, res);
  PQclear(res);
  return SF_EPG;
}

static bool one_row(const PGresult *res) {
  return res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
}

/* Server notices (e.g. "drop cascades to ...") go to the log, not stderr. */
static void notice_cb(void *arg, const char *message) {
  proj_pg_t *pg = arg;
  size_t n = strlen(message);
  while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r'))
    n--;
  SF_DEBUG(pg->log, "pg", "notice: %.*s", (int)n, message);
}

static int prepare(proj_pg_t *pg, const char *name, const char *sql,
                   proj_pg_error_t *err) {
  return check(pg, PQprepare(pg->conn, name, sql, 0, NULL), PGRES_COMMAND_OK,
               name, err);
}

int proj_pg_connect(proj_pg_t *pg, proj_pg_error_t *err) {
  drop_conn(pg);
  /* Our defaults first: keywords that follow an expanded dbname would
   * override the DSN, so the DSN comes last and wins. */
  const char *const keys[] = {"connect_timeout", "application_name",
                              "keepalives_idle", "keepalives_interval",
                              "keepalives_count", "dbname", NULL};
  const char *const vals[] = {"5",
                              pg->o.schema ? "stockflow-projector-rebuild"
                                           : "stockflow-projector",
                              "30", "10", "3", pg->o.dsn, NULL};
  pg->conn = PQconnectdbParams(keys, vals, 1);
  if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
    proj_pg_set_error(pg, err, "connect", NULL);
    drop_conn(pg);
    return SF_EPG;
  }
  PQsetNoticeProcessor(pg->conn, notice_cb, pg);
  if (pg->o.schema) {
    /* Before preparing: a statement resolves its tables on the search_path
     * of its (re-)analysis. */
    char *ident = PQescapeIdentifier(pg->conn, pg->o.schema,
                                     strlen(pg->o.schema));
    char sql[256];
    int rc = SF_EPG;
    if (ident && snprintf(sql, sizeof sql, "SET search_path TO %s", ident) <
                     (int)sizeof sql)
      rc = check(pg, PQexec(pg->conn, sql), PGRES_COMMAND_OK, "search_path",
                 err);
    else
      proj_pg_set_error(pg, err, "search_path", NULL);
    PQfreemem(ident);
    if (rc) {
      drop_conn(pg);
      return rc;
    }
  }
  for (int s = 0; s < PROJ_STMT__COUNT; s++) {
    const proj_stmt_def_t *d = proj_stmt_def((proj_stmt_t)s);
    if (prepare(pg, d->name, d->sql, err)) {
      drop_conn(pg);
      return SF_EPG;
    }
  }
  if (prepare(pg, "proj_changes", SQL_CHANGES, err) ||
      prepare(pg, "proj_xchanges", SQL_XCHANGES, err) ||
      prepare(pg, "proj_notify", SQL_NOTIFY, err) ||
      prepare(pg, "proj_prune", SQL_PRUNE, err)) {
    drop_conn(pg);
    return SF_EPG;
  }
  return 0;
}

static int ensure_conn(proj_pg_t *pg, proj_pg_error_t *err) {
  if (proj_pg_connected(pg))
    return 0;
  return proj_pg_connect(pg, err);
}

int proj_pg_load_offsets(proj_pg_t *pg, sf_kafka_tp_t *tps, size_t n,
                         proj_pg_error_t *err) {
  int rc = ensure_conn(pg, err);
  if (rc)
    return rc;
  const char *params[1] = {pg->o.group};
  PGresult *res = PQexecParams(
      pg->conn,
      "SELECT topic, partition, next_offset FROM projector_offsets"
      " WHERE consumer_group = $1",
      1, NULL, params, NULL, NULL, 0);
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
    return check(pg, res, PGRES_TUPLES_OK, "load offsets", err);
  int rows = PQntuples(res);
  for (size_t i = 0; i < n; i++) {
    tps[i].offset = SF_KAFKA_OFFSET_BEGINNING;
    for (int r = 0; r < rows; r++) {
      if (strcmp(PQgetvalue(res, r, 0), tps[i].topic) == 0 &&
          atol(PQgetvalue(res, r, 1)) == tps[i].partition) {
        tps[i].offset = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        break;
      }
    }
  }
  PQclear(res);
  return 0;
}

/* Rolls back after a failure; its own failure only matters for the log
 * (the connection may be gone, which the caller sees anyway). */
static void rollback(proj_pg_t *pg) {
  if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK)
    return;
  PGresult *res = PQexec(pg->conn, "ROLLBACK");
  if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
    SF_WARN(pg->log, "pg", "ROLLBACK failed: %s", PQerrorMessage(pg->conn));
  PQclear(res);
}

/* Runs statement s (the stock or the crossings statement) and keeps the ids
 * it returns (in order) in ids. */
static int run_returning(proj_pg_t *pg, const proj_plan_t *plan,
                         proj_stmt_t s, proj_sqlarr_t *ids,
                         proj_pg_error_t *err) {
  const proj_stmt_def_t *d = proj_stmt_def(s);
  PGresult *res = PQexecPrepared(pg->conn, d->name, d->n_params,
                                 plan->params[s], NULL, NULL, 0);
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
    return check(pg, res, PGRES_TUPLES_OK, d->name, err);
  int rows = PQntuples(res);
  for (int r = 0; r < rows; r++)
    (void)proj_sqlarr_add_text(ids, PQgetvalue(res, r, 0)); /* sticky */
  SF_DEBUG(pg->log, "pg", "%s: %zu rows in, %d inserted", d->name,
           plan->rows[s], rows);
  PQclear(res);
  if (!proj_sqlarr_text(ids)) {
    snprintf(err->sqlstate, sizeof err->sqlstate, "%s", "");
    snprintf(err->stmt, sizeof err->stmt, "%s", d->name);
    snprintf(err->message, sizeof err->message, "%s", "out of memory");
    return SF_EPG;
  }
  return 0;
}

/* One changes row per id of ids, by statement name. */
static int run_change_rows(proj_pg_t *pg, const char *name,
                           proj_sqlarr_t *ids, proj_pg_result_t *res,
                           proj_pg_error_t *err) {
  if (ids->count == 0)
    return 0;
  const char *params[1] = {proj_sqlarr_text(ids)};
  PGresult *r = PQexecPrepared(pg->conn, name, 1, params, NULL, NULL, 0);
  if (!one_row(r))
    return fail_result(pg, r, name, err);
  res->changes += (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  int64_t max = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  if (max > res->max_change)
    res->max_change = max;
  PQclear(r);
  return 0;
}

/* The lock, then one changes row per id in pg->ids, then one per crossing
 * in pg->xids (after the stock changes of the batch: a crossing's change
 * follows the change of the movement that crossed). */
static int run_changes(proj_pg_t *pg, proj_pg_result_t *res,
                       proj_pg_error_t *err) {
  int rc = check(pg,
                 PQexec(pg->conn, "SELECT pg_advisory_xact_lock(" XSTR(
                                      PROJ_CHANGES_LOCK) ")"),
                 PGRES_TUPLES_OK, "changes lock", err);
  if (!rc)
    rc = run_change_rows(pg, "proj_changes", &pg->ids, res, err);
  if (!rc)
    rc = run_change_rows(pg, "proj_xchanges", &pg->xids, res, err);
  return rc;
}

static int apply_statements(proj_pg_t *pg, const proj_plan_t *plan,
                            proj_pg_result_t *res, proj_pg_error_t *err) {
  proj_sqlarr_reset(&pg->ids);
  proj_sqlarr_reset(&pg->xids);
  *res = (proj_pg_result_t){0, 0};
  for (int s = 0; s < PROJ_STMT__COUNT; s++) {
    if (plan->rows[s] == 0)
      continue;
    int rc;
    if (s == PROJ_STMT_OFFSETS && pg->o.change_log &&
        (pg->ids.count > 0 || pg->xids.count > 0)) {
      rc = run_changes(pg, res, err);
      if (rc)
        return rc;
    }
    if (s == PROJ_STMT_STOCK) {
      rc = run_returning(pg, plan, PROJ_STMT_STOCK, &pg->ids, err);
    } else if (s == PROJ_STMT_CROSSINGS) {
      rc = run_returning(pg, plan, PROJ_STMT_CROSSINGS, &pg->xids, err);
    } else {
      const proj_stmt_def_t *d = proj_stmt_def((proj_stmt_t)s);
      PGresult *r = PQexecPrepared(pg->conn, d->name, d->n_params,
                                   plan->params[s], NULL, NULL, 0);
      if (r && PQresultStatus(r) == PGRES_COMMAND_OK)
        SF_DEBUG(pg->log, "pg", "%s: %zu rows in, %s changed", d->name,
                 plan->rows[s], PQcmdTuples(r));
      rc = check(pg, r, PGRES_COMMAND_OK, d->name, err);
    }
    if (rc)
      return rc;
  }
  if (pg->o.change_log) {
    char max[24];
    snprintf(max, sizeof max, "%" PRId64, res->max_change);
    const char *params[1] = {max};
    int rc = check(pg,
                   PQexecPrepared(pg->conn, "proj_notify", 1, params, NULL,
                                  NULL, 0),
                   PGRES_TUPLES_OK, "proj_notify", err);
    if (rc)
      return rc;
  }
  return 0;
}

int proj_pg_apply_open(proj_pg_t *pg, const proj_plan_t *plan,
                       proj_pg_result_t *res, proj_pg_error_t *err) {
  proj_pg_result_t dummy;
  if (!proj_pg_connected(pg)) {
    proj_pg_set_error(pg, err, "apply", NULL);
    return SF_EPG;
  }
  return apply_statements(pg, plan, res ? res : &dummy, err);
}

int proj_pg_apply(proj_pg_t *pg, const proj_plan_t *plan,
                  proj_pg_result_t *res, proj_pg_error_t *err) {
  proj_pg_result_t dummy;
  if (!res)
    res = &dummy;
  int rc = ensure_conn(pg, err);
  if (rc)
    return rc;
  rc = check(pg, PQexec(pg->conn, "BEGIN"), PGRES_COMMAND_OK, "BEGIN", err);
  if (rc)
    goto fail;
  rc = apply_statements(pg, plan, res, err);
  if (rc)
    goto fail;
  rc = check(pg, PQexec(pg->conn, "COMMIT"), PGRES_COMMAND_OK, "COMMIT", err);
  if (rc)
    goto fail; /* a failed COMMIT rolled back: nothing was applied */
  return 0;

fail:
  rollback(pg);
  return rc;
}

int proj_pg_prune(proj_pg_t *pg, long long retention_s, int64_t *deleted,
                  int64_t *pruned_through, proj_pg_error_t *err) {
  int rc = ensure_conn(pg, err);
  if (rc)
    return rc;
  char secs[24];
  snprintf(secs, sizeof secs, "%lld", retention_s);
  const char *params[1] = {secs};
  /* One statement: its own implicit transaction. */
  PGresult *r =
      PQexecPrepared(pg->conn, "proj_prune", 1, params, NULL, NULL, 0);
  if (!one_row(r))
    return fail_result(pg, r, "proj_prune", err);
  *deleted = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  *pruned_through = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  return 0;
}
