/* proj_pg: blocking libpq for the projector's worker thread (see proj_pg.h
 * for why blocking is the right choice here).
 *
 * Every PGresult is checked and cleared; an error leaves its SQLSTATE and
 * message in a proj_pg_error_t for the caller's log line, which carries the
 * batch context this module does not know. */
#include "proj_pg.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

struct proj_pg {
  PGconn *conn; /* owned; NULL when not connected */
  const char *dsn, *group;
  sf_log_t *log;
};

int proj_pg_new(proj_pg_t **out, const char *dsn, const char *group,
                sf_log_t *log) {
  proj_pg_t *pg = calloc(1, sizeof *pg);
  if (!pg)
    return SF_ENOMEM;
  pg->dsn = dsn;
  pg->group = group;
  pg->log = log;
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
  free(pg);
}

bool proj_pg_connected(const proj_pg_t *pg) {
  return pg->conn && PQstatus(pg->conn) == CONNECTION_OK;
}

/* Fills err from res (may be NULL) or, lacking that, from the connection. */
static void set_err(proj_pg_t *pg, proj_pg_error_t *err, const char *stmt,
                    const PGresult *res) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *msg = res ? PQresultErrorMessage(res) : NULL;
  if (!msg || !*msg)
    msg = pg->conn ? PQerrorMessage(pg->conn) : "no connection";
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
    set_err(pg, err, stmt, res);
    rc = SF_EPG;
  }
  PQclear(res);
  return rc;
}

int proj_pg_connect(proj_pg_t *pg, proj_pg_error_t *err) {
  drop_conn(pg);
  /* Our defaults first: keywords that follow an expanded dbname would
   * override the DSN, so the DSN comes last and wins. */
  const char *const keys[] = {"connect_timeout", "application_name",
                              "keepalives_idle", "keepalives_interval",
                              "keepalives_count", "dbname", NULL};
  const char *const vals[] = {"5", "stockflow-projector", "30", "10", "3",
                              pg->dsn, NULL};
  pg->conn = PQconnectdbParams(keys, vals, 1);
  if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
    set_err(pg, err, "connect", NULL);
    drop_conn(pg);
    return SF_EPG;
  }
  for (int s = 0; s < PROJ_STMT__COUNT; s++) {
    const proj_stmt_def_t *d = proj_stmt_def((proj_stmt_t)s);
    PGresult *res = PQprepare(pg->conn, d->name, d->sql, 0, NULL);
    if (check(pg, res, PGRES_COMMAND_OK, d->name, err)) {
      drop_conn(pg);
      return SF_EPG;
    }
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
  const char *params[1] = {pg->group};
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

int proj_pg_apply(proj_pg_t *pg, const proj_plan_t *plan,
                  proj_pg_error_t *err) {
  int rc = ensure_conn(pg, err);
  if (rc)
    return rc;
  rc = check(pg, PQexec(pg->conn, "BEGIN"), PGRES_COMMAND_OK, "BEGIN", err);
  if (rc)
    goto fail;
  for (int s = 0; s < PROJ_STMT__COUNT; s++) {
    if (plan->rows[s] == 0)
      continue;
    const proj_stmt_def_t *d = proj_stmt_def((proj_stmt_t)s);
    PGresult *res = PQexecPrepared(pg->conn, d->name, d->n_params,
                                   plan->params[s], NULL, NULL, 0);
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
      SF_DEBUG(pg->log, "pg", "%s: %zu rows in, %s changed", d->name,
               plan->rows[s], PQcmdTuples(res));
    rc = check(pg, res, PGRES_COMMAND_OK, d->name, err);
    if (rc)
      goto fail;
  }
  rc = check(pg, PQexec(pg->conn, "COMMIT"), PGRES_COMMAND_OK, "COMMIT", err);
  if (rc)
    goto fail; /* a failed COMMIT rolled back: nothing was applied */
  return 0;

fail:
  rollback(pg);
  return rc;
}
