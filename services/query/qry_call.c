/* qry_call: the life of one query request (qry_call.h): the checks common
 * to every endpoint, the position wait, one prepared statement, result ->
 * render, and the mapping of failures to 503 / 504 / 500, with the counters
 * of the statements sent. The handlers that use it are in qry_handlers.c
 * and qry_changes.c; the service core (qry_service.c) creates the call
 * context and asks it whether it is drained. */
#include "qry_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_sql.h"
#include "sf/err.h"

struct qry_calls {
  sf_pg_t *pg;
  qry_waits_t *waits;
  sf_authn_t *authn;
  sf_log_t *log;
  bool closing;
  uint64_t inflight;         /* statements sent, result not yet handled */
  void (*idle_cb)(void *ud); /* set by qry_calls_shutdown */
  void *idle_ud;
  qry_calls_counters_t n;
};

int qry_calls_new(qry_calls_t **out, sf_pg_t *pg, qry_waits_t *waits,
                  sf_authn_t *authn, sf_log_t *log) {
  *out = NULL;
  if (!pg || !waits)
    return SF_EINVAL;
  qry_calls_t *k = calloc(1, sizeof(*k));
  if (!k)
    return SF_ENOMEM;
  k->pg = pg;
  k->waits = waits;
  k->authn = authn;
  k->log = log;
  *out = k;
  return 0;
}

void qry_calls_destroy(qry_calls_t *k) { free(k); }

void qry_calls_shutdown(qry_calls_t *k, void (*idle)(void *ud), void *ud) {
  k->closing = true;
  k->idle_cb = idle;
  k->idle_ud = ud;
}

bool qry_calls_closing(const qry_calls_t *k) { return k->closing; }

uint64_t qry_calls_pending(const qry_calls_t *k) { return k->inflight; }

void qry_calls_stats(const qry_calls_t *k, qry_calls_counters_t *out) {
  *out = k->n;
}

/* ---- common answers ---- */

void qry_respond_not_found(sf_http_req_t *req, const char *what) {
  char detail[64];
  snprintf(detail, sizeof(detail), "%s not found", what);
  sf_http_respond_problem(req, 404, "not_found", detail, NULL);
}

void qry_respond_invalid(sf_http_req_t *req, const char *detail) {
  sf_http_respond_problem(req, 422, "validation_failed", detail, NULL);
}

void qry_respond_bad_cursor(sf_http_req_t *req) {
  sf_http_respond_problem(req, 400, "bad_cursor",
                          "cursor is not one returned by this list", NULL);
}

/* A failure of the call, in the shape of its caller. */
static void call_fail(qry_call_t *c, int status, const char *code,
                      const char *detail) {
  if (c->fail)
    c->fail(c, status, code, detail);
  else
    sf_http_respond_problem(c->req, status, code, detail, NULL);
}

void qry_respond_internal(qry_call_t *c, const char *what) {
  SF_ERROR(c->calls->log, "query", "request %s (%s): %s",
           sf_http_req_id(c->req), sf_http_req_route(c->req), what);
  call_fail(c, 500, "internal", "internal error");
}

/* As on the command service, a 503 says when to try again: the pool
 * reconnects with a backoff of at most 5 s, usually far sooner. */
static void respond_unavailable(qry_call_t *c, const char *detail) {
  c->calls->n.db_unavailable++;
  sf_http_add_header(c->req, "Retry-After", "1");
  call_fail(c, 503, "unavailable", detail);
}

/* ---- the life of a call ---- */

qry_call_t *qry_call_begin(qry_calls_t *s, sf_http_req_t *req) {
  if (s->closing) {
    sf_http_respond_problem(req, 503, "unavailable", "service shutting down",
                            NULL);
    return NULL;
  }
  /* Authentication and store permissions will be checked here, once for
   * every query endpoint, change streams included (their store_id filter
   * is the store to authorize; an unfiltered stream will need the user's
   * store list). */
  qry_call_t *c = sf_http_req_alloc(req, sizeof(*c));
  if (!c) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return NULL;
  }
  memset(c, 0, sizeof(*c));
  c->calls = s;
  c->req = req;
  /* accounts: the gate has run (qry_route); lists of stores are filtered */
  if (s->authn && sf_authn_store_filter(req, &c->store_filter) != 0) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return NULL;
  }
  const char *tok = sf_http_req_query(req, "min_position");
  if (!tok)
    tok = sf_http_req_header(req, "X-Min-Position");
  if (tok && qry_positions_parse(tok, c->pos, QRY_POSITIONS_MAX,
                                 &c->n_pos) != 0) {
    sf_http_respond_problem(req, 400, "bad_position",
                            "min_position must be a position such as "
                            "stock-3-1234 or catalog-0-17, or a "
                            "comma-separated list of up to 32 of them",
                            NULL);
    return NULL;
  }
  return c;
}

qry_call_t *qry_call_begin_custom(qry_calls_t *k, sf_http_req_t *req,
                                  qry_fail_fn fail) {
  qry_call_t *c = sf_http_req_alloc(req, sizeof(*c));
  if (!c)
    return NULL;
  memset(c, 0, sizeof(*c));
  c->calls = k;
  c->req = req;
  c->fail = fail;
  if (k->closing) {
    sf_http_add_header(req, "Retry-After", "1");
    fail(c, 503, "unavailable", "service shutting down");
    return NULL;
  }
  return c;
}

int qry_route(qry_calls_t *s, sf_http_server_t *http, const char *pattern,
              sf_http_handler_cb cb, void *ud) {
  if (!s->authn)
    return sf_http_route(http, "GET", pattern, cb, ud);
  bool store = strstr(pattern, "{store_id}") != NULL;
  return sf_authn_route(s->authn, http, "GET", pattern,
                        store ? SF_ACT_READ_STORE : SF_ACT_READ_CATALOG,
                        store ? "store_id" : NULL, cb, ud);
}

void qry_call_param(qry_call_t *c, int i, const char *value) {
  c->params[i] = value;
}

void qry_call_param_i64(qry_call_t *c, int i, long long value) {
  snprintf(c->text[i], sizeof(c->text[i]), "%lld", value);
  c->params[i] = c->text[i];
}

bool qry_call_page_params(qry_call_t *c, qry_cursor_kind_t kind,
                          bool descending, int after_i, int limit_i) {
  if (qry_parse_limit(sf_http_req_query(c->req, "limit"), &c->limit) != 0) {
    qry_respond_invalid(c->req, "limit must be an integer from 1 to 500");
    return false;
  }
  const char *cursor = sf_http_req_query(c->req, "cursor");
  if (cursor) {
    if (qry_cursor_decode(cursor, kind, c->text[after_i]) != 0) {
      qry_respond_bad_cursor(c->req);
      return false;
    }
    c->params[after_i] = c->text[after_i];
  } else {
    c->params[after_i] = descending ? QRY_UUID_MAX : QRY_UUID_MIN;
  }
  qry_call_param_i64(c, limit_i, (long long)c->limit + 1);
  return true;
}

/* True for failures worth a 503: the connection, resources, the operator
 * (including statement timeouts) or a transient conflict. Other SQLSTATEs
 * are bugs of ours and answer 500. */
static bool sqlstate_retriable(const char *sqlstate) {
  if (!sqlstate || !*sqlstate)
    return true;
  return strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0 ||
         strncmp(sqlstate, "57", 2) == 0 || strncmp(sqlstate, "40", 2) == 0;
}

static void on_result(void *ud, int err, const PGresult *res,
                      const char *sqlstate, const char *errmsg) {
  qry_call_t *c = ud;
  qry_calls_t *s = c->calls;
  s->inflight--;
  if (!err) {
    c->render(c, res);
  } else if (err == SF_ECANCELED) {
    s->n.db_errors++;
    respond_unavailable(c, "service shutting down");
  } else if (sqlstate_retriable(sqlstate)) {
    s->n.db_errors++;
    SF_WARN(s->log, "query", "request %s: %s failed (sqlstate %s): %s",
            sf_http_req_id(c->req), c->stmt, sqlstate ? sqlstate : "",
            errmsg ? errmsg : "");
    respond_unavailable(c, "database unavailable");
  } else {
    s->n.db_errors++;
    char what[256];
    snprintf(what, sizeof(what), "%s failed (sqlstate %s): %s", c->stmt,
             sqlstate, errmsg ? errmsg : "");
    qry_respond_internal(c, what);
  }
  /* c is freed with the answer above; s lives on. */
  if (s->idle_cb)
    s->idle_cb(s->idle_ud);
}

static void submit(qry_call_t *c) {
  qry_calls_t *s = c->calls;
  if (s->closing) {
    respond_unavailable(c, "service shutting down");
    return;
  }
  int rc = c->sql ? sf_pg_query_sql(s->pg, c->sql, c->n_params,
                                    c->sql_params, on_result, c)
                  : sf_pg_query(s->pg, c->stmt, c->n_params, c->params,
                                on_result, c);
  if (rc != 0) {
    SF_WARN(s->log, "query", "request %s: %s not queued: %s",
            sf_http_req_id(c->req), c->stmt, sf_strerror(rc));
    respond_unavailable(c, "database unavailable");
    return;
  }
  s->n.db_queries++;
  s->inflight++;
}

static void on_waited(void *ud, qry_wait_outcome_t outcome) {
  qry_call_t *c = ud;
  c->wait = NULL;
  switch (outcome) {
  case QRY_WAIT_APPLIED:
    submit(c);
    return;
  case QRY_WAIT_TIMEOUT:
    call_fail(c, 504, "position_timeout",
              "the read model has not reached min_position yet");
    return;
  case QRY_WAIT_ERROR:
    respond_unavailable(c, "database unavailable");
    return;
  case QRY_WAIT_CANCELED:
    respond_unavailable(c, c->calls->closing ? "service shutting down"
                                             : "request canceled");
    return;
  }
}

/* The peer went away while we wait for its position: stop polling. The
 * request is still answered (and dropped) from on_waited. */
static void on_peer_gone(sf_http_req_t *req, void *ud) {
  (void)req;
  qry_call_t *c = ud;
  if (c->wait)
    qry_wait_cancel(c->wait);
}

void qry_call_run(qry_call_t *c, const char *stmt, int n_params,
                  qry_render_fn render) {
  c->stmt = stmt;
  c->n_params = n_params;
  c->render = render;
  if (c->n_pos == 0) {
    submit(c);
    return;
  }
  int rc = qry_wait_start(c->calls->waits, c->pos, c->n_pos, on_waited, c,
                          &c->wait);
  if (rc != 0) {
    SF_WARN(c->calls->log, "query", "request %s: position wait not started: %s",
            sf_http_req_id(c->req), sf_strerror(rc));
    respond_unavailable(c, "database unavailable");
    return;
  }
  sf_http_req_on_close(c->req, on_peer_gone, c);
}

void qry_call_run_sql(qry_call_t *c, const char *label, const char *sql,
                      int n_params, const char *const *params,
                      qry_render_fn render) {
  c->sql = sql;
  c->sql_params = params;
  qry_call_run(c, label, n_params, render);
}

void qry_call_respond_page(qry_call_t *c, const PGresult *res,
                           const char *key_col, qry_cursor_kind_t kind,
                           const qry_shape_t *shape, const char *owner,
                           json_t *extra) {
  char *text = NULL;
  size_t len = 0;
  int rc = qry_page_build(res, key_col, c->limit, kind, shape, owner != NULL,
                          extra, &text, &len);
  json_decref(extra);
  if (rc == SF_ENOTFOUND) {
    qry_respond_not_found(c->req, owner);
    return;
  }
  if (rc != 0) {
    qry_respond_internal(c, rc == SF_ENOMEM ? "out of memory"
                                            : "malformed result row");
    return;
  }
  sf_http_respond(c->req, 200, "application/json", text, len);
  free(text);
}
