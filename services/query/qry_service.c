/* qry_service: the service core. It owns the waiter set, the call context
 * (qry_call.h: the life of each query request), the change hub and the
 * shutdown flag, answers the operational endpoints (/healthz, /readyz,
 * /metrics) and registers the routes; the /v1 handlers are in
 * qry_handlers.c, the change streams in qry_changes.c. */
#include "qry_service.h"

#include <stdlib.h>
#include <string.h>

#include "qry_call.h"
#include "qry_changes.h"
#include "qry_handlers.h"
#include "qry_graphql.h"
#include "qry_parse.h"
#include "qry_livequery.h"
#include "qry_sql.h"
#include "sf/err.h"
#include "sf/metrics.h"

#define CHANNEL_OFFSETS "stockflow_offsets"
#define CHANNEL_CHANGES "stockflow_changes"

struct qry_service {
  uv_loop_t *loop;
  sf_http_server_t *http;
  sf_pg_t *pg;
  sf_log_t *log;
  qry_service_opts_t opts;
  qry_waits_t *waits;
  qry_calls_t *calls;
  qry_changes_t *changes;
  qry_parse_t *parse; /* the /parse facade; NULL without authentication */
  qry_livequery_t *livequery;
  bool closing;
  qry_drained_cb drained_cb; /* set by qry_service_shutdown until it fires */
  void *drained_ud;
};

/* ---- shutdown and notifications ---- */

/* Fires the shutdown callback once nothing of ours is pending. */
static void maybe_drained(qry_service_t *s) {
  if (!s->closing || !s->drained_cb || qry_calls_pending(s->calls) > 0 ||
      qry_waits_pending(s->waits) > 0 || qry_changes_pending(s->changes) > 0 ||
      qry_livequery_pending(s->livequery) > 0 ||
      (s->parse && !qry_parse_closed(s->parse)))
    return;
  qry_drained_cb cb = s->drained_cb;
  s->drained_cb = NULL;
  cb(s->drained_ud);
}

static void on_idle(void *ud) { maybe_drained(ud); }

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

static void h_metrics(sf_http_req_t *req, void *ud) {
  qry_service_t *s = ud;
  char *base = sf_http_server_metrics(s->http, "stockflow_query");
  if (!base) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  sf_metrics_t m;
  sf_metrics_init(&m, "stockflow_query");
  sf_metrics_raw(&m, base);
  free(base);
  qry_waits_counters_t w;
  qry_waits_stats(s->waits, &w);
  qry_changes_counters_t ch;
  qry_changes_stats(s->changes, &ch);
  qry_calls_counters_t k;
  qry_calls_stats(s->calls, &k);
  sf_metrics_counter(&m, "db_queries_total", "Statements sent to PostgreSQL.",
                     k.db_queries);
  sf_metrics_counter(&m, "db_errors_total", "Statements that failed.",
                     k.db_errors);
  sf_metrics_counter(&m, "db_unavailable_total",
                     "Requests answered 503 for the database.",
                     k.db_unavailable);
  sf_metrics_gauge(&m, "db_ready", "1 when a PostgreSQL connection is ready.",
                   sf_pg_ready(s->pg) ? 1 : 0);
  sf_metrics_counter(&m, "position_waits_total",
                     "Requests that waited for min_position.", w.started);
  sf_metrics_counter(&m, "position_timeouts_total",
                     "Position waits that timed out (504).", w.timeouts);
  sf_metrics_counter(&m, "position_checks_total",
                     "projector_offsets look-ups of position waits.",
                     w.checks);
  sf_metrics_gauge(&m, "position_waiting", "Position waits in progress.",
                   (int64_t)qry_waits_pending(s->waits));
  sf_metrics_family(&m, "notifications_total", SF_METRIC_COUNTER,
                    "NOTIFY messages received from the projector.");
  sf_metrics_u64(&m, "notifications_total",
                 &(sf_metric_label_t){"channel", CHANNEL_OFFSETS}, 1,
                 w.notifications);
  sf_metrics_u64(&m, "notifications_total",
                 &(sf_metric_label_t){"channel", CHANNEL_CHANGES}, 1,
                 ch.notifications);
  sf_metrics_family(&m, "streams_open", SF_METRIC_GAUGE,
                    "Change streams open now.");
  sf_metrics_u64(&m, "streams_open",
                 &(sf_metric_label_t){"transport", "sse"}, 1, ch.open_sse);
  sf_metrics_u64(&m, "streams_open",
                 &(sf_metric_label_t){"transport", "websocket"}, 1,
                 ch.open_ws);
  sf_metrics_gauge(&m, "streams_live",
                   "Change streams caught up and fed by the shared fetch.",
                   (int64_t)ch.live);
  sf_metrics_counter(&m, "streams_opened_total", "Change streams started.",
                     ch.opened);
  sf_metrics_counter(&m, "streams_overflow_total",
                     "Change streams cut off for passing the buffer limit.",
                     ch.overflows);
  sf_metrics_counter(&m, "streams_stalled_total",
                     "Change streams cut off for making no progress.",
                     ch.stalls);
  sf_metrics_counter(&m, "changes_fetches_total",
                     "Shared fetches of new changes.", ch.fetches);
  sf_metrics_counter(&m, "changes_fetched_total",
                     "Changes read by shared fetches.", ch.fetched);
  sf_metrics_counter(&m, "changes_fanned_out_total",
                     "Change events queued to live streams.", ch.fanned_out);
  sf_metrics_counter(&m, "changes_catchup_pages_total",
                     "Catch-up pages read by streams resuming or starting.",
                     ch.pages);
  qry_livequery_counters_t lq;
  qry_livequery_stats(s->livequery, &lq);
  sf_metrics_gauge(&m, "livequery_connections",
                   "Parse LiveQuery connections open now.", (int64_t)lq.open);
  sf_metrics_gauge(&m, "livequery_subscriptions",
                   "Parse LiveQuery subscriptions open now.",
                   (int64_t)lq.subscriptions);
  sf_metrics_counter(&m, "livequery_resumed_total",
                     "Parse LiveQuery subscriptions resumed from a kept "
                     "position.",
                     lq.resumed);
  sf_metrics_counter(&m, "livequery_cut_off_total",
                     "Parse LiveQuery connections closed for overflow or "
                     "stall.",
                     lq.cut_off);
  sf_metrics_gauge(&m, "livequery_resume_points",
                   "Parse LiveQuery resume positions kept now.",
                   (int64_t)lq.resume_entries);
  size_t len = 0;
  char *all = sf_metrics_take(&m, &len);
  if (!all) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  sf_http_respond(req, 200, SF_METRICS_CONTENT_TYPE, all, len);
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
  rc = qry_calls_new(&s->calls, pg, s->waits, opts->authn, log);
  if (rc != 0)
    goto fail_calls;
  qry_changes_opts_t co = {.max_buffer = opts->stream_max_buffer,
                           .heartbeat_ms = opts->stream_heartbeat_ms};
  rc = qry_changes_new(&s->changes, loop, pg, s->calls, &co, log);
  if (rc != 0)
    goto fail_changes;
  /* the Parse facade's sessions are bearer tokens: it needs the gate */
  if (opts->authn) {
    qry_parse_opts_t po = {.app_id = opts->parse_app_id
                                         ? opts->parse_app_id
                                         : "stockflow",
                           .command_url = opts->command_url};
    rc = qry_parse_new(&s->parse, loop, s->calls, opts->authn, &po, log);
    if (rc != 0) {
      SF_ERROR(log, "query", "parse facade: %s", sf_strerror(rc));
      goto fail_parse;
    }
  }
  qry_livequery_opts_t lo = {.app_id = opts->parse_app_id ? opts->parse_app_id
                                                          : "stockflow",
                             .resume_ms = opts->livequery_resume_ms,
                             .resume_max = opts->livequery_resume_max,
                             .max_buffer = opts->stream_max_buffer,
                             .heartbeat_ms = opts->stream_heartbeat_ms};
  rc = qry_livequery_new(&s->livequery, loop, pg, s->changes, opts->authn,
                         &lo, log);
  if (rc != 0)
    goto fail_livequery;
  rc = qry_sql_prepare_all(pg);
  if (rc != 0) {
    SF_ERROR(log, "query", "preparing statements: %s", sf_strerror(rc));
    goto fail_setup;
  }
  if ((rc = sf_http_route(http, "GET", "/healthz", h_healthz, s)) != 0 ||
      (rc = sf_http_route(http, "GET", "/readyz", h_readyz, s)) != 0 ||
      (rc = sf_http_route(http, "GET", "/metrics", h_metrics, s)) != 0 ||
      (rc = qry_handlers_register(s->calls, http)) != 0 ||
      (rc = qry_changes_register(s->changes, http)) != 0 ||
      (s->parse && (rc = qry_parse_register(s->parse, http)) != 0) ||
      (rc = qry_livequery_register(s->livequery, http)) != 0 ||
      (s->parse && (rc = qry_graphql_register(s->parse, http)) != 0)) {
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
  qry_livequery_destroy(s->livequery);
fail_livequery:
  qry_parse_destroy(s->parse);
fail_parse:
  qry_changes_destroy(s->changes);
fail_changes:
  qry_calls_destroy(s->calls);
fail_calls:
  qry_waits_destroy(s->waits);
fail_waits:
  free(s);
  return rc;
}

static void on_revoke(void *ud, const char *user_id) {
  qry_service_t *s = ud;
  qry_changes_revoke_user(s->changes, user_id);
  qry_livequery_revoke_user(s->livequery, user_id);
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
  qry_calls_shutdown(s->calls, on_idle, s);
  /* the facade's writes in flight are answered before the loop drains */
  if (s->parse)
    qry_parse_close(s->parse, on_idle, s);
  qry_waits_set_idle_cb(s->waits, on_idle, s);
  qry_waits_cancel_all(s->waits);
  /* LiveQuery first: its subscriptions are listeners of the hub */
  qry_livequery_shutdown(s->livequery, on_idle, s);
  qry_changes_shutdown(s->changes, on_idle, s);
  maybe_drained(s);
}

void qry_service_destroy(qry_service_t *s) {
  if (!s)
    return;
  qry_parse_destroy(s->parse);
  qry_livequery_destroy(s->livequery);
  qry_changes_destroy(s->changes);
  qry_calls_destroy(s->calls);
  qry_waits_destroy(s->waits);
  free(s);
}
