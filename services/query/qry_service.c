/* qry_service: the service core. It owns the waiter set, the counters and
 * the shutdown flag, answers the operational endpoints (/healthz, /readyz,
 * /metrics) and runs the life of each query request (qry_call.h): position
 * wait, one prepared statement, result -> render, and the mapping of
 * failures to 503 / 504 / 500. The /v1 handlers are in qry_handlers.c. */
#include "qry_service.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_call.h"
#include "qry_changes.h"
#include "qry_sql.h"
#include "sf/err.h"

#define CHANNEL_OFFSETS "stockflow_offsets"
#define CHANNEL_CHANGES "stockflow_changes"

struct qry_service {
  uv_loop_t *loop;
  sf_http_server_t *http;
  sf_pg_t *pg;
  sf_log_t *log;
  qry_service_opts_t opts;
  qry_waits_t *waits;
  qry_changes_t *changes;
  bool closing;
  uint64_t inflight;         /* statements sent, result not yet handled */
  qry_drained_cb drained_cb; /* set by qry_service_shutdown until it fires */
  void *drained_ud;
  uint64_t db_queries;     /* statements sent */
  uint64_t db_errors;      /* statements that failed */
  uint64_t db_unavailable; /* requests answered 503 for the database */
};

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

void qry_respond_internal(qry_call_t *c, const char *what) {
  SF_ERROR(c->svc->log, "query", "request %s (%s): %s",
           sf_http_req_id(c->req), sf_http_req_route(c->req), what);
  sf_http_respond_problem(c->req, 500, "internal", "internal error", NULL);
}

/* As on the command service, a 503 says when to try again: the pool
 * reconnects with a backoff of at most 5 s, usually far sooner. */
static void respond_unavailable(qry_call_t *c, const char *detail) {
  c->svc->db_unavailable++;
  sf_http_add_header(c->req, "Retry-After", "1");
  sf_http_respond_problem(c->req, 503, "unavailable", detail, NULL);
}

/* ---- the life of a call ---- */

/* Fires the shutdown callback once nothing of ours is pending. */
static void maybe_drained(qry_service_t *s) {
  if (!s->closing || !s->drained_cb || s->inflight > 0 ||
      qry_waits_pending(s->waits) > 0 || qry_changes_pending(s->changes) > 0)
    return;
  qry_drained_cb cb = s->drained_cb;
  s->drained_cb = NULL;
  cb(s->drained_ud);
}

static void on_waits_idle(void *ud) { maybe_drained(ud); }

/* NOTIFY from the projector, on the pool's listening connection. */
static void on_notify(void *ud, const char *channel, const char *payload) {
  qry_service_t *s = ud;
  if (s->closing)
    return;
  if (strcmp(channel, CHANNEL_OFFSETS) == 0)
    qry_waits_notify(s->waits);
  else if (strcmp(channel, CHANNEL_CHANGES) == 0)
    qry_changes_notify(s->changes, payload);
}

qry_call_t *qry_call_begin(qry_service_t *s, sf_http_req_t *req) {
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
  c->svc = s;
  c->req = req;
  /* accounts: the gate has run (qry_route); lists of stores are filtered */
  if (s->opts.authn && sf_authn_store_filter(req, &c->store_filter) != 0) {
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

int qry_route(qry_service_t *s, sf_http_server_t *http, const char *pattern,
              sf_http_handler_cb cb, void *ud) {
  if (!s->opts.authn)
    return sf_http_route(http, "GET", pattern, cb, ud);
  bool store = strstr(pattern, "{store_id}") != NULL;
  return sf_authn_route(s->opts.authn, http, "GET", pattern,
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
  qry_service_t *s = c->svc;
  s->inflight--;
  if (!err) {
    c->render(c, res);
  } else if (err == SF_ECANCELED) {
    s->db_errors++;
    respond_unavailable(c, "service shutting down");
  } else if (sqlstate_retriable(sqlstate)) {
    s->db_errors++;
    SF_WARN(s->log, "query", "request %s: %s failed (sqlstate %s): %s",
            sf_http_req_id(c->req), c->stmt, sqlstate ? sqlstate : "",
            errmsg ? errmsg : "");
    respond_unavailable(c, "database unavailable");
  } else {
    s->db_errors++;
    char what[256];
    snprintf(what, sizeof(what), "%s failed (sqlstate %s): %s", c->stmt,
             sqlstate, errmsg ? errmsg : "");
    qry_respond_internal(c, what);
  }
  /* c is freed with the answer above; s lives on. */
  maybe_drained(s);
}

static void submit(qry_call_t *c) {
  qry_service_t *s = c->svc;
  if (s->closing) {
    respond_unavailable(c, "service shutting down");
    return;
  }
  int rc = sf_pg_query(s->pg, c->stmt, c->n_params, c->params, on_result, c);
  if (rc != 0) {
    SF_WARN(s->log, "query", "request %s: %s not queued: %s",
            sf_http_req_id(c->req), c->stmt, sf_strerror(rc));
    respond_unavailable(c, "database unavailable");
    return;
  }
  s->db_queries++;
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
    sf_http_respond_problem(c->req, 504, "position_timeout",
                            "the read model has not reached min_position yet",
                            NULL);
    return;
  case QRY_WAIT_ERROR:
    respond_unavailable(c, "database unavailable");
    return;
  case QRY_WAIT_CANCELED:
    respond_unavailable(c, c->svc->closing ? "service shutting down"
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
  int rc = qry_wait_start(c->svc->waits, c->pos, c->n_pos, on_waited, c,
                          &c->wait);
  if (rc != 0) {
    SF_WARN(c->svc->log, "query", "request %s: position wait not started: %s",
            sf_http_req_id(c->req), sf_strerror(rc));
    respond_unavailable(c, "database unavailable");
    return;
  }
  sf_http_req_on_close(c->req, on_peer_gone, c);
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

/* ---- operational endpoints ---- */

static void h_healthz(sf_http_req_t *req, void *ud) {
  (void)ud;
  json_t *body = json_pack("{s:s}", "status", "ok");
  if (!body) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  sf_http_respond_json(req, 200, body);
}

static void h_readyz(sf_http_req_t *req, void *ud) {
  qry_service_t *s = ud;
  if (s->closing) {
    sf_http_respond_problem(req, 503, "unavailable", "service shutting down",
                            NULL);
    return;
  }
  if (!sf_pg_ready(s->pg)) {
    sf_http_respond_problem(req, 503, "unavailable",
                            "postgresql: no connection ready", NULL);
    return;
  }
  json_t *body = json_pack("{s:s}", "status", "ready");
  if (!body) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  sf_http_respond_json(req, 200, body);
}

/* Prints the HELP and TYPE lines and the value of one metric. */
static void metric(FILE *f, const char *name, const char *type,
                   const char *help, uint64_t value) {
  fprintf(f, "# HELP stockflow_query_%s %s\n# TYPE stockflow_query_%s %s\n"
             "stockflow_query_%s %" PRIu64 "\n",
          name, help, name, type, name, value);
}

static void h_metrics(sf_http_req_t *req, void *ud) {
  qry_service_t *s = ud;
  char *base = sf_http_server_metrics(s->http, "stockflow_query");
  char *all = NULL;
  size_t len = 0;
  FILE *f = base ? open_memstream(&all, &len) : NULL;
  if (!f) {
    free(base);
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  fputs(base, f);
  free(base);
  qry_waits_counters_t w;
  qry_waits_stats(s->waits, &w);
  qry_changes_counters_t ch;
  qry_changes_stats(s->changes, &ch);
  metric(f, "db_queries_total", "counter", "Statements sent to PostgreSQL.",
         s->db_queries);
  metric(f, "db_errors_total", "counter", "Statements that failed.",
         s->db_errors);
  metric(f, "db_unavailable_total", "counter",
         "Requests answered 503 for the database.", s->db_unavailable);
  metric(f, "db_ready", "gauge", "1 when a PostgreSQL connection is ready.",
         sf_pg_ready(s->pg) ? 1 : 0);
  metric(f, "position_waits_total", "counter",
         "Requests that waited for min_position.", w.started);
  metric(f, "position_timeouts_total", "counter",
         "Position waits that timed out (504).", w.timeouts);
  metric(f, "position_checks_total", "counter",
         "projector_offsets look-ups of position waits.", w.checks);
  metric(f, "position_waiting", "gauge", "Position waits in progress.",
         qry_waits_pending(s->waits));
  fprintf(f,
          "# HELP stockflow_query_notifications_total NOTIFY messages "
          "received from the projector.\n"
          "# TYPE stockflow_query_notifications_total counter\n"
          "stockflow_query_notifications_total{channel=\"" CHANNEL_OFFSETS
          "\"} %" PRIu64 "\n"
          "stockflow_query_notifications_total{channel=\"" CHANNEL_CHANGES
          "\"} %" PRIu64 "\n",
          w.notifications, ch.notifications);
  fprintf(f, "# HELP stockflow_query_streams_open Change streams open now.\n"
             "# TYPE stockflow_query_streams_open gauge\n"
             "stockflow_query_streams_open{transport=\"sse\"} %zu\n"
             "stockflow_query_streams_open{transport=\"websocket\"} %zu\n",
          ch.open_sse, ch.open_ws);
  metric(f, "streams_live", "gauge",
         "Change streams caught up and fed by the shared fetch.", ch.live);
  metric(f, "streams_opened_total", "counter", "Change streams started.",
         ch.opened);
  metric(f, "streams_overflow_total", "counter",
         "Change streams cut off for passing the buffer limit.",
         ch.overflows);
  metric(f, "streams_stalled_total", "counter",
         "Change streams cut off for making no progress.", ch.stalls);
  metric(f, "changes_fetches_total", "counter",
         "Shared fetches of new changes.", ch.fetches);
  metric(f, "changes_fetched_total", "counter",
         "Changes read by shared fetches.", ch.fetched);
  metric(f, "changes_fanned_out_total", "counter",
         "Change events queued to live streams.", ch.fanned_out);
  metric(f, "changes_catchup_pages_total", "counter",
         "Catch-up pages read by streams resuming or starting.", ch.pages);
  if (fclose(f) != 0 || !all) {
    free(all);
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  sf_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", all,
                  len);
  free(all);
}

/* ---- lifecycle ---- */

static void on_revoke(void *ud, const char *user_id);

int qry_service_new(qry_service_t **out, uv_loop_t *loop,
                    sf_http_server_t *http, sf_pg_t *pg,
                    const qry_service_opts_t *opts, sf_log_t *log) {
  if (!out || !loop || !http || !pg || !opts)
    return SF_EINVAL;
  qry_service_t *s = calloc(1, sizeof(*s));
  if (!s)
    return SF_ENOMEM;
  s->loop = loop;
  s->http = http;
  s->pg = pg;
  s->log = log;
  s->opts = *opts;
  qry_wait_opts_t wo = {.group = opts->projector_group,
                        .topic_catalog = opts->topic_catalog,
                        .topic_stock = opts->topic_stock,
                        .max_wait_ms = opts->min_position_wait_ms,
                        .interval_ms = opts->position_poll_ms};
  int rc = qry_waits_new(&s->waits, loop, pg, &wo, log);
  if (rc != 0)
    goto fail_waits;
  qry_changes_opts_t co = {.max_buffer = opts->stream_max_buffer,
                           .heartbeat_ms = opts->stream_heartbeat_ms};
  rc = qry_changes_new(&s->changes, loop, pg, s, &co, log);
  if (rc != 0)
    goto fail_changes;
  rc = qry_sql_prepare_all(pg);
  if (rc != 0) {
    SF_ERROR(log, "query", "preparing statements: %s", sf_strerror(rc));
    goto fail_setup;
  }
  if ((rc = sf_http_route(http, "GET", "/healthz", h_healthz, s)) != 0 ||
      (rc = sf_http_route(http, "GET", "/readyz", h_readyz, s)) != 0 ||
      (rc = sf_http_route(http, "GET", "/metrics", h_metrics, s)) != 0 ||
      (rc = qry_handlers_register(s, http)) != 0 ||
      (rc = qry_changes_register(s->changes, http)) != 0) {
    SF_ERROR(log, "query", "adding routes: %s", sf_strerror(rc));
    goto fail_setup;
  }
  if ((rc = sf_pg_listen(pg, CHANNEL_OFFSETS, on_notify, s)) != 0 ||
      (rc = sf_pg_listen(pg, CHANNEL_CHANGES, on_notify, s)) != 0) {
    SF_ERROR(log, "query", "LISTEN: %s", sf_strerror(rc));
    goto fail_setup;
  }
  /* accounts: a logout or a role change ends the user's open streams */
  if (s->opts.authn)
    sf_authn_on_revoke(s->opts.authn, on_revoke, s);
  *out = s;
  return 0;

fail_setup:
  qry_changes_destroy(s->changes);
fail_changes:
  qry_waits_destroy(s->waits);
fail_waits:
  free(s);
  return rc;
}

static void on_revoke(void *ud, const char *user_id) {
  qry_service_t *s = ud;
  qry_changes_revoke_user(s->changes, user_id);
}

void qry_service_shutdown(qry_service_t *s, qry_drained_cb drained,
                          void *ud) {
  if (!s || s->closing)
    return;
  s->closing = true;
  if (s->opts.authn)
    sf_authn_on_revoke(s->opts.authn, NULL, NULL);
  s->drained_cb = drained;
  s->drained_ud = ud;
  qry_waits_set_idle_cb(s->waits, on_waits_idle, s);
  qry_waits_cancel_all(s->waits);
  qry_changes_shutdown(s->changes, on_waits_idle, s);
  maybe_drained(s);
}

void qry_service_destroy(qry_service_t *s) {
  if (!s)
    return;
  qry_changes_destroy(s->changes);
  qry_waits_destroy(s->waits);
  free(s);
}
