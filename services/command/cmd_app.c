/* cmd_app: lifecycle and routes of the command service; the write
 * pipeline is cmd_pipeline.c. See cmd_app.h. */
#include "cmd_app.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_batch.h"
#include "cmd_bus.h"
#include "cmd_catalog.h"
#include "cmd_expiry.h"
#include "cmd_instances.h"
#include "cmd_lanes.h"
#include "cmd_pipeline.h"
#include "cmd_rebuild.h"
#include "cmd_reply.h"
#include "cmd_schema.h"
#include "cmd_stock.h"
#include "cmd_tail.h"
#include "cmd_users.h"
#include "sf/authn.h"
#include "sf/err.h"
#include "sf/json.h"
#include "sf/metrics.h"
#include "sf/progress.h"
#include "sf/uuid.h"

struct cmd_app {
  uv_loop_t *loop;
  const cmd_settings_t *cfg;
  sf_log_t *log;
  sf_http_server_t *http;
  cmd_lanes_t *lanes;
  cmd_bus_t *bus;           /* NULL when the bus intake is off */
  cmd_expiry_t *expiry;     /* NULL when orders never expire (order-ttl-s 0) */
  cmd_pipeline_t *pipeline; /* the state and every write */
  sf_event_codec_t *codec;
  cmd_schema_t *schema; /* the wire format (and registration) of events */
  uv_timer_t idem_timer;
  bool fatal;
  char fatal_reason[256];
  uv_timer_t fatal_timer; /* stops the app after a fence, off the lanes'
                             own callback */
  bool stopping;
  double rebuild_seconds;
  uint64_t rebuild_events;
  cmd_rebuild_progress_t rebuild_progress; /* of the writer's rebuilds */
  void (*stop_done)(void *);
  void *stop_ud;
  /* accounts: users and sessions in PostgreSQL (cmd_users.c, sf/authn.h) */
  sf_pg_t *pg;
  sf_authn_t *authn;
  cmd_users_t *users;
  /* instances: this one's share, its lanes' transactional id prefix, the
   * tail of what the others write (NULL for a single instance) */
  cmd_instances_t ins;
  char txn_prefix[256];
  cmd_tail_t *tail;
  char intake_group[300]; /* the bus intake's group, per instance */
};

static int64_t idem_retention_us(const cmd_settings_t *cfg) {
  return (int64_t)cfg->idem_retention_s * 1000000;
}

/* ---- the pipeline's sink: the writer lanes ---- */

static void sink_submit(void *ud, cmd_unit_t *u) {
  cmd_app_t *a = ud;
  if (!a->lanes) { /* stopped: the lanes answered everything already */
    u->err = SF_ECANCELED;
    cmd_pipeline_unit_done(a->pipeline, u);
    return;
  }
  cmd_lanes_submit(a->lanes, u);
}

static void sink_resync(void *ud, const char *reason) {
  cmd_app_t *a = ud;
  if (a->lanes)
    cmd_lanes_resync(a->lanes, reason);
}

/* instances: a request for something this instance has not read yet waits
 * for the tail of the other instances' events */
static bool sink_park(void *ud, void (*done)(void *, bool), void *done_ud) {
  cmd_app_t *a = ud;
  if (!a->tail || a->stopping)
    return false;
  cmd_tail_sync(a->tail, done, done_ud);
  return true;
}

static void unit_done_cb(void *ud, cmd_unit_t *u) {
  cmd_app_t *a = ud;
  cmd_pipeline_unit_done(a->pipeline, u);
}

static void state_cb(void *ud, cmd_state_t *state, uint64_t generation,
                     double seconds, uint64_t events) {
  cmd_app_t *a = ud;
  cmd_pipeline_set_state(a->pipeline, state, generation);
  /* instances: fold what the others write from where the rebuild ended */
  if (a->tail && cmd_tail_reset(a->tail, state) != 0)
    SF_ERROR(a->log, "command", "the tail of the other instances' events "
                                "could not start; their new catalog entries "
                                "and orders stay unknown until the next "
                                "rebuild");
  a->rebuild_seconds = seconds;
  a->rebuild_events = events;
  SF_INFO(a->log, "command", "ready: %zu products, %zu stores, %zu stock rows "
                             "(rebuilt from %llu events in %.3f s)",
          cmd_state_n_products(state),
          cmd_state_n_stores(state), cmd_state_n_stock(state),
          (unsigned long long)events, seconds);
}

static void resync_cb(void *ud, const char *reason) {
  cmd_app_t *a = ud;
  cmd_pipeline_pause(a->pipeline);
  SF_WARN(a->log, "command", "writes paused while the state is rebuilt: %s",
          reason);
}

static void fatal_timer_cb(uv_timer_t *t) {
  cmd_app_t *a = t->data;
  cmd_app_stop(a, NULL, NULL);
}

static void fatal_cb(void *ud, const char *reason) {
  cmd_app_t *a = ud;
  if (a->fatal)
    return;
  a->fatal = true;
  snprintf(a->fatal_reason, sizeof(a->fatal_reason),
           "this command service instance stopped writing: %s", reason);
  cmd_pipeline_stop(a->pipeline, a->fatal_reason);
  SF_ERROR(a->log, "command", "%s; exiting so that a supervisor restarts "
                              "it",
           a->fatal_reason);
  /* not from inside the lanes' callback: they are destroyed by the stop */
  uv_timer_start(&a->fatal_timer, fatal_timer_cb, 0, 0);
}

bool cmd_app_failed(const cmd_app_t *a) { return a->fatal; }

/* ---- operations ---- */

static void problem_plain(sf_http_req_t *req, int status, const char *code,
                          const char *detail) {
  sf_http_respond_problem(req, status, code, detail, NULL);
}

static void h_healthz(sf_http_req_t *req, void *ud) {
  (void)ud;
  sf_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* 503 while the state is rebuilt; once the replay runs, the detail and a
 * "progress" member say how far it got. */
static void rebuilding(cmd_app_t *a, sf_http_req_t *req, const char *what) {
  cmd_rebuild_snapshot_t s;
  cmd_rebuild_progress_read(&a->rebuild_progress, &s);
  if (!s.running) {
    problem_plain(req, 503, "unavailable", what);
    return;
  }
  sf_progress_t p = {.done = s.done, .total = s.total, .rate = s.rate};
  char line[160], detail[320];
  sf_progress_format(&p, "offsets", line, sizeof line);
  snprintf(detail, sizeof detail, "%s: %s", what, line);
  json_t *extra = json_pack(
      "{s:{s:I, s:I, s:f, s:o, s:f}}", "progress", "done", (json_int_t)s.done,
      "total", (json_int_t)s.total, "rate", s.rate, "eta_s",
      s.eta_s >= 0 ? json_real(s.eta_s) : json_null(), "elapsed_s",
      s.elapsed_s);
  sf_http_respond_problem(req, 503, "unavailable", detail, extra);
}

/* instances: this instance's assignment, for /readyz */
static json_t *instance_json(const cmd_app_t *a) {
  json_t *parts = json_array();
  const cmd_state_t *st = cmd_pipeline_state(a->pipeline);
  int32_t n = st ? cmd_state_stock_partitions(st) : 0;
  for (int32_t p = 0; p < n; p++)
    if (cmd_instances_owns_partition(&a->ins, p))
      json_array_append_new(parts, json_integer(p));
  return json_pack("{s:i, s:i, s:o, s:b, s:s}", "index", (int)a->ins.index,
                   "count", (int)a->ins.count, "stock_partitions",
                   parts ? parts : json_null(), "catalog",
                   cmd_instances_owns_catalog(&a->ins), "transactional_id",
                   a->txn_prefix);
}

static void h_readyz(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  if (a->fatal)
    sf_http_respond_problem(req, 503, "unavailable", a->fatal_reason,
                            json_pack("{s:b, s:o}", "fenced", true,
                                      "instance", instance_json(a)));
  else if (!cmd_schema_ready(a->schema)) /* first: the rebuild may wait for
                                            the same registry */
    problem_plain(req, 503, "unavailable",
                  cmd_schema_not_ready_reason(a->schema));
  else if (!cmd_pipeline_has_state(a->pipeline))
    rebuilding(a, req,
               "connecting to Kafka and rebuilding the state from the log");
  else if (cmd_pipeline_resyncing(a->pipeline))
    rebuilding(a, req, "rebuilding the state after a failed commit");
  else if (!cmd_users_ready(a->users)) /* accounts: no admin, or no PG */
    problem_plain(req, 503, "unavailable",
                  cmd_users_not_ready_reason(a->users));
  else
    sf_http_respond_json(req, 200,
                         json_pack("{s:s, s:o}", "status", "ready", "instance",
                                   instance_json(a)));
}

static void h_metrics(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  char *http = sf_http_server_metrics(a->http, "stockflow_command");
  cmd_writer_stats_t ws, lane_ws[CMD_MAX_LANES];
  cmd_lanes_stats(a->lanes, &ws, lane_ws);
  size_t n_lanes = cmd_lanes_count(a->lanes);
  cmd_pipeline_stats_t ps;
  cmd_pipeline_stats(a->pipeline, &ps);
  const cmd_state_t *st = cmd_pipeline_state(a->pipeline);
  sf_metrics_t m;
  sf_metrics_init(&m, "stockflow_command");
  sf_metrics_family(&m, "commands_total", SF_METRIC_COUNTER,
                    "Commands answered, by result.");
  sf_metrics_u64(&m, "commands_total",
                 &(sf_metric_label_t){"result", "accepted"}, 1, ps.accepted);
  sf_metrics_u64(&m, "commands_total",
                 &(sf_metric_label_t){"result", "rejected"}, 1, ps.rejected);
  sf_metrics_u64(&m, "commands_total",
                 &(sf_metric_label_t){"result", "failed"}, 1, ps.failed);
  sf_metrics_gauge(&m, "pending", "Commands waiting for their commit.",
                   (int64_t)ps.pending);
  sf_metrics_counter(&m, "commit_batches_total", "Kafka transactions committed.",
                     ws.batches);
  sf_metrics_counter(&m, "commit_failed_total", "Kafka transactions that failed.",
                     ws.failed_batches);
  sf_metrics_family(&m, "commit_batch_commands", SF_METRIC_SUMMARY,
                    "Commands per committed transaction.");
  sf_metrics_u64(&m, "commit_batch_commands_sum", NULL, 0, ws.batch_units);
  sf_metrics_u64(&m, "commit_batch_commands_count", NULL, 0, ws.batches);
  sf_metrics_counter(&m, "events_produced_total",
                     "Events in committed transactions.", ws.batch_msgs);
  sf_metrics_family(&m, "commit_seconds", SF_METRIC_HISTOGRAM,
                    "Time of a committed transaction from its first message "
                    "to its commit.");
  sf_metrics_histogram(&m, "commit_seconds", NULL, 0, cmd_commit_bounds,
                       ws.commit_buckets, CMD_COMMIT_BUCKETS, ws.batches,
                       ws.commit_seconds_sum);
  sf_metrics_family(&m, "rebuild_seconds", SF_METRIC_GAUGE,
                    "Time of the last rebuild of the state from the log.");
  sf_metrics_f64(&m, "rebuild_seconds", NULL, 0, a->rebuild_seconds);
  sf_metrics_gauge(&m, "rebuild_events", "Events read by the last rebuild.",
                   (int64_t)a->rebuild_events);
  sf_metrics_family(&m, "state_rows", SF_METRIC_GAUGE,
                    "Rows of the in-memory state, by kind.");
  sf_metrics_u64(&m, "state_rows", &(sf_metric_label_t){"kind", "products"}, 1,
                 st ? cmd_state_n_products(st) : 0);
  sf_metrics_u64(&m, "state_rows", &(sf_metric_label_t){"kind", "stores"}, 1,
                 st ? cmd_state_n_stores(st) : 0);
  sf_metrics_u64(&m, "state_rows", &(sf_metric_label_t){"kind", "stock"}, 1,
                 st ? cmd_state_n_stock(st) : 0);
  sf_metrics_counter(&m, "idempotent_replays_total",
                     "Requests answered from an earlier command's result.",
                     ps.replayed);
  sf_metrics_gauge(&m, "idempotency_keys", "Idempotency keys remembered.",
                   st ? (int64_t)cmd_state_n_idem(st) : 0);
  sf_metrics_gauge(&m, "ready", "1 when the service takes writes.",
                   cmd_pipeline_writable(a->pipeline));
  sf_metrics_gauge(&m, "writer_lanes", "Writer lanes committing in parallel.",
                   (int64_t)n_lanes);
  sf_metrics_counter(&m, "writer_recoveries_total",
                     "Producers replaced after a broken transaction.",
                     ws.recoveries);
  sf_metrics_gauge(&m, "lane_waiting",
                   "Units waiting behind a barrier (cross-lane or catalog).",
                   (int64_t)cmd_lanes_waiting(a->lanes));
  sf_metrics_family(&m, "lane_commit_batches_total", SF_METRIC_COUNTER,
                    "Kafka transactions committed, by lane.");
  for (size_t k = 0; k < n_lanes; k++) {
    char lane[24];
    snprintf(lane, sizeof(lane), "%zu", k);
    sf_metrics_u64(&m, "lane_commit_batches_total",
                   &(sf_metric_label_t){"lane", lane}, 1, lane_ws[k].batches);
  }
  sf_metrics_family(&m, "lane_commit_batch_commands", SF_METRIC_SUMMARY,
                    "Commands per committed transaction, by lane.");
  for (size_t k = 0; k < n_lanes; k++) {
    char lane[24];
    snprintf(lane, sizeof(lane), "%zu", k);
    sf_metrics_u64(&m, "lane_commit_batch_commands_sum",
                   &(sf_metric_label_t){"lane", lane}, 1,
                   lane_ws[k].batch_units);
    sf_metrics_u64(&m, "lane_commit_batch_commands_count",
                   &(sf_metric_label_t){"lane", lane}, 1, lane_ws[k].batches);
  }
  if (a->bus) {
    cmd_bus_stats_t bs;
    cmd_bus_stats(a->bus, &bs);
    sf_metrics_counter(&m, "bus_commands_total",
                       "Commands read from the bus intake.", bs.received);
    sf_metrics_counter(&m, "bus_malformed_total",
                       "Bus commands that did not decode.", bs.malformed);
    sf_metrics_counter(&m, "bus_results_total",
                       "Bus command results acknowledged by the broker.",
                       bs.results);
    sf_metrics_counter(&m, "bus_skipped_total",
                       "Bus commands left to the instance that owns their "
                       "store.",
                       bs.skipped);
    sf_metrics_gauge(&m, "bus_commits_blocked",
                     "1 once a bus result could not be published: the "
                     "intake commits no offset until a restart redelivers "
                     "those commands.",
                     (int64_t)bs.commits_blocked);
  }
  /* instances */
  sf_metrics_gauge(&m, "instance_index", "This command instance's number.",
                   (int64_t)a->ins.index);
  sf_metrics_gauge(&m, "instance_count",
                   "Command instances sharing the stock partitions.",
                   (int64_t)a->ins.count);
  sf_metrics_gauge(&m, "owned_partitions",
                   "Stock partitions this instance decides and writes.",
                   st ? cmd_instances_n_owned(&a->ins,
                                              cmd_state_stock_partitions(st))
                      : 0);
  sf_metrics_family(&m, "wrong_instance_total", SF_METRIC_COUNTER,
                    "Requests for another instance's stores or catalog, by "
                    "answer.");
  sf_metrics_u64(&m, "wrong_instance_total",
                 &(sf_metric_label_t){"answer", "redirect"}, 1, ps.redirected);
  sf_metrics_u64(&m, "wrong_instance_total",
                 &(sf_metric_label_t){"answer", "misdirected"}, 1,
                 ps.misdirected);
  uint64_t tail_folded, tail_syncs;
  cmd_tail_stats(a->tail, &tail_folded, &tail_syncs);
  sf_metrics_counter(&m, "tail_events_total",
                     "Events of other instances folded into the state.",
                     tail_folded);
  sf_metrics_counter(&m, "tail_syncs_total",
                     "Requests that waited for the tail before a 404.",
                     tail_syncs);
  cmd_rebuild_snapshot_t rs;
  cmd_rebuild_progress_read(&a->rebuild_progress, &rs);
  sf_metrics_gauge(&m, "rebuild_running",
                   "1 while the state is being rebuilt from the log.",
                   rs.running);
  sf_metrics_gauge(&m, "rebuild_done_offsets",
                   "Log offsets the running (or last) rebuild has read.",
                   (int64_t)rs.done);
  sf_metrics_gauge(&m, "rebuild_total_offsets",
                   "Log offsets the running (or last) rebuild has to read.",
                   (int64_t)rs.total);
  sf_metrics_raw(&m, http ? http : "");
  size_t len = 0;
  char *buf = http ? sf_metrics_take(&m, &len) : NULL;
  free(http);
  if (!buf) {
    sf_metrics_release(&m);
    problem_plain(req, 500, "internal", "out of memory");
    return;
  }
  sf_http_respond(req, 200, SF_METRICS_CONTENT_TYPE, buf, len);
  free(buf);
}

static void idem_timer_cb(uv_timer_t *t) {
  cmd_app_t *a = t->data;
  size_t n = cmd_pipeline_expire_keys(a->pipeline);
  if (n)
    SF_DEBUG(a->log, "command", "%zu idempotency keys expired", n);
}

int cmd_app_new(cmd_app_t **out, uv_loop_t *loop, const cmd_settings_t *cfg,
                sf_log_t *log) {
  cmd_app_t *a = calloc(1, sizeof(*a));
  if (!a)
    return SF_ENOMEM;
  a->loop = loop;
  a->cfg = cfg;
  a->log = log;
  cmd_rebuild_progress_init(&a->rebuild_progress);
  int rc = sf_event_codec_new(&a->codec);
  if (rc) {
    SF_ERROR(log, "command", "loading the event schema: %s", sf_err_name(rc));
    goto fail_codec;
  }
  cmd_schema_opts_t so = {.format = cfg->event_format,
                          .registry_url = cfg->schema_registry_url,
                          .topic_catalog = cfg->topic_catalog,
                          .topic_stock = cfg->topic_stock};
  rc = cmd_schema_new(&a->schema, loop, &so, a->codec, log);
  if (rc)
    goto fail_schema;
  sf_http_limits_t limits;
  sf_http_limits_default(&limits);
  limits.max_body = (size_t)cfg->max_body;
  limits.header_timeout_ms = (uint64_t)cfg->header_timeout_ms;
  limits.idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms;
  rc = sf_http_server_new(&a->http, loop, &limits, log);
  if (rc)
    goto fail_http;
  /* accounts: a PostgreSQL pool for users and sessions, the gate, and the
   * account endpoints; the admin password only from the environment */
  sf_pg_opts_t po = {.dsn = cfg->pg_dsn, .pool_size = (int)cfg->pg_pool};
  rc = sf_pg_new(&a->pg, loop, &po, log);
  if (rc)
    goto fail_pg;
  rc = sf_authn_new(&a->authn, loop, a->pg, NULL, log);
  if (rc)
    goto fail_authn;
  cmd_users_opts_t uo = {.admin_username = cfg->admin_username,
                         .admin_password = getenv("STOCKFLOW_ADMIN_PASSWORD"),
                         .session_ttl_s = cfg->session_ttl_s,
                         .trusted_proxies = cfg->trusted_proxies};
  rc = cmd_users_new(&a->users, loop, a->pg, a->authn, &uo, log);
  if (rc)
    goto fail_users;
  cmd_pipeline_sink_t sink = {sink_submit, sink_resync, sink_park, a};
  rc = cmd_pipeline_new(&a->pipeline, cfg, a->authn, a->schema, &sink, log);
  if (rc)
    goto fail_pipeline;
  struct {
    const char *method, *path;
    sf_http_handler_cb cb;
  } routes[] = {
      {"GET", "/healthz", h_healthz},
      {"GET", "/readyz", h_readyz},
      {"GET", "/metrics", h_metrics},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    rc = sf_http_route(a->http, routes[i].method, routes[i].path, routes[i].cb,
                       a);
    if (rc)
      goto fail_route;
  }
  rc = cmd_users_register(a->http, a->users);
  if (!rc)
    rc = cmd_catalog_routes(a->pipeline, a->http);
  if (!rc)
    rc = cmd_stock_routes(a->pipeline, a->http);
  if (!rc)
    rc = cmd_batch_routes(a->pipeline, a->http, (size_t)cfg->batch_max_body);
  if (rc)
    goto fail_route;
  uv_timer_init(loop, &a->idem_timer);
  a->idem_timer.data = a;
  uv_timer_init(loop, &a->fatal_timer);
  a->fatal_timer.data = a;
  *out = a;
  return 0;

fail_route:
  cmd_pipeline_destroy(a->pipeline);
fail_pipeline:
  cmd_users_destroy(a->users); /* never bootstrapped: no handles yet */
fail_users:
  sf_authn_destroy(a->authn); /* no look-up was ever sent */
fail_authn:
  sf_pg_close(a->pg, NULL, NULL); /* its handles close if the loop runs */
fail_pg:
  sf_http_server_destroy(a->http);
fail_http:
  cmd_schema_close(a->schema); /* its timer closes if the loop runs */
fail_schema:
  sf_event_codec_destroy(a->codec);
fail_codec:
  free(a);
  return rc;
}

size_t cmd_app_lane_count(const cmd_settings_t *cfg) {
  if (cfg->writer_lanes > 0)
    return (size_t)cfg->writer_lanes;
  unsigned n = uv_available_parallelism(); /* one per core */
  return n < 1 ? 1 : n > CMD_MAX_LANES ? CMD_MAX_LANES
                                       : n;
}

int cmd_app_start(cmd_app_t *a) {
  char host[256];
  int port;
  if (sf_config_split_hostport(a->cfg->listen, host, sizeof(host), &port)) {
    SF_ERROR(a->log, "command", "bad listen address \"%s\"", a->cfg->listen);
    return SF_ECONFIG;
  }
  /* instances: the assignment, checked before anything starts */
  a->ins = (cmd_instances_t){(unsigned)a->cfg->instance_index,
                             (unsigned)a->cfg->instance_count,
                             a->cfg->peer_urls ? a->cfg->peer_urls : ""};
  char err[256] = "transactional-id is too long";
  if (cmd_instances_check(&a->ins, err, sizeof(err)) != 0 ||
      cmd_instances_txn_prefix(&a->ins, a->cfg->transactional_id,
                               a->txn_prefix, sizeof(a->txn_prefix) - 8) !=
          0) {
    SF_ERROR(a->log, "command", "instances: %s", err);
    return SF_ECONFIG;
  }
  cmd_pipeline_set_instances(a->pipeline, &a->ins);
  int rc = sf_http_listen(a->http, host, port);
  if (rc)
    return rc;
  SF_INFO(a->log, "command", "listening on %s:%d", host, sf_http_bound_port(a->http));
  cmd_lanes_opts_t lo = {
      .brokers = a->cfg->kafka_brokers,
      .transactional_id = a->txn_prefix,
      .topic_catalog = a->cfg->topic_catalog,
      .topic_stock = a->cfg->topic_stock,
      .registry_url = a->cfg->schema_registry_url,
      .lanes = cmd_app_lane_count(a->cfg),
      .instances = a->ins.count,
      .max_batch = (size_t)a->cfg->max_batch,
      .linger_us = a->cfg->linger_us,
      .commit_gap_us = a->cfg->commit_gap_us,
      .kafka_debug = a->cfg->kafka_debug,
      .txn_timeout_ms = (int)a->cfg->txn_timeout_ms,
      .idem_retention_us = idem_retention_us(a->cfg),
      .rebuild_progress = &a->rebuild_progress,
  };
  uv_timer_start(&a->idem_timer, idem_timer_cb, 60000, 60000);
  rc = cmd_users_bootstrap(a->users); /* accounts: the first admin */
  if (!rc)
    rc = cmd_schema_start(a->schema);
  if (rc)
    return rc;
  if (a->ins.count > 1) {
    SF_INFO(a->log, "command", "instance %u of %u: owns the stock partitions "
                               "p with p mod %u = %u%s; transactional ids %s...",
            a->ins.index, a->ins.count, a->ins.count, a->ins.index,
            cmd_instances_owns_catalog(&a->ins) ? " and the catalog" : "",
            a->txn_prefix);
    cmd_tail_opts_t to = {.brokers = a->cfg->kafka_brokers,
                          .topic_catalog = a->cfg->topic_catalog,
                          .topic_stock = a->cfg->topic_stock,
                          .instances = a->ins,
                          .poll_ms = 10,
                          .sync_timeout_ms = 3000,
                          .registry_url = a->cfg->schema_registry_url};
    rc = cmd_tail_new(&a->tail, a->loop, &to, a->log);
    if (rc)
      return rc;
  }
  cmd_lanes_cbs_t cbs = {unit_done_cb, state_cb, resync_cb, fatal_cb, a};
  rc = cmd_lanes_new(&a->lanes, a->loop, &lo, &cbs, a->log);
  if (!rc && a->cfg->order_ttl_s > 0) /* rules: reservations expire */
    rc = cmd_expiry_new(&a->expiry, a->loop, a->pipeline, a->cfg->order_ttl_s, 500,
                        a->log);
  if (rc || !a->cfg->intake)
    return rc;
  /* instances: each reads every command in a group of its own and
   * answers those of its stores (cmd_instances_intake) */
  if (cmd_instances_intake_group(&a->ins, a->cfg->intake_group,
                                 a->intake_group, sizeof(a->intake_group))) {
    SF_ERROR(a->log, "command", "intake-group is too long");
    return SF_ECONFIG;
  }
  cmd_bus_opts_t bo = {.brokers = a->cfg->kafka_brokers,
                       .topic_commands = a->cfg->topic_commands,
                       .topic_results = a->cfg->topic_results,
                       .group_id = a->intake_group,
                       .max_inflight = 1000};
  return cmd_bus_new(&a->bus, a->loop, a->pipeline, &bo, a->log);
}

static void pg_closed_cb(void *ud) {
  cmd_app_t *a = ud;
  a->pg = NULL;
  if (a->stop_done)
    a->stop_done(a->stop_ud);
}

static void http_closed_cb(void *ud) {
  cmd_app_t *a = ud;
  /* accounts: every request is answered; now the pool can go */
  sf_pg_close(a->pg, pg_closed_cb, a);
}

void cmd_app_stop(cmd_app_t *a, void (*done)(void *), void *ud) {
  if (a->stopping) { /* a signal after the app began to stop by itself */
    if (!a->stop_done) {
      a->stop_done = done;
      a->stop_ud = ud;
    }
    return;
  }
  a->stopping = true;
  a->stop_done = done;
  a->stop_ud = ud;
  /* No new bus commands; then the writer: its pending commands get their
   * answers (503 or 201) before the server closes the connections and the
   * bus publishes the last results. */
  cmd_pipeline_stop(a->pipeline, "the service is shutting down");
  cmd_bus_stop_intake(a->bus);
  cmd_tail_destroy(a->tail); /* parked requests answer 503 */
  a->tail = NULL;
  cmd_expiry_close(a->expiry);
  a->expiry = NULL;
  cmd_lanes_destroy(a->lanes);
  a->lanes = NULL;
  cmd_bus_destroy(a->bus);
  a->bus = NULL;
  uv_close((uv_handle_t *)&a->idem_timer, NULL);
  uv_close((uv_handle_t *)&a->fatal_timer, NULL);
  cmd_schema_close(a->schema);
  a->schema = NULL;
  cmd_users_shutdown(a->users); /* accounts: new account requests 503 */
  sf_http_server_close(a->http, http_closed_cb, a);
}

void cmd_app_destroy(cmd_app_t *a) {
  if (!a)
    return;
  sf_http_server_destroy(a->http);
  sf_authn_destroy(a->authn); /* accounts: after the pool closed */
  cmd_users_destroy(a->users);
  cmd_pipeline_destroy(a->pipeline); /* every unit was answered at stop */
  sf_event_codec_destroy(a->codec);
  free(a);
}
