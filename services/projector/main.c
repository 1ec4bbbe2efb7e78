/* stockflow-projector: wires the projector together.
 *
 * Order: configuration -> logger -> loop -> status -> worker (consumer and
 * PostgreSQL handle, no thread yet) -> HTTP server -> signals -> worker
 * thread -> run; teardown in reverse. The main thread runs the libuv loop
 * (HTTP); the worker thread runs consume -> apply (proj_worker). SIGINT or
 * SIGTERM asks the worker to stop and closes the server; the worker's exit
 * wakes the loop through a uv_async, which is closed only then, so the loop
 * ends after the worker's last act, whichever side began the shutdown.
 *
 * With --rebuild it runs the one-shot rebuild instead (proj_rebuild) on a
 * thread, the loop only turning signals into a stop, and exits 0 once the
 * rebuilt tables are switched in. With --rebuild-progress-json its progress
 * also goes to stdout, one JSON object per line (for stockflowctl). */
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "proj_api.h"
#include "proj_config.h"
#include "proj_rebuild.h"
#include "proj_status.h"
#include "proj_worker.h"
#include "sf/config.h"
#include "sf/err.h"
#include "sf/http.h"
#include "sf/log.h"

#define MOD "main"

typedef struct app {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  uv_async_t worker_done;
  sf_http_server_t *http;
  proj_worker_t *worker;
  sf_log_t *log;
  bool stopping;
} app_t;

static void http_closed_cb(void *ud) { (void)ud; }

/* Begins the shutdown once: stop the worker, stop listening. */
static void shutdown_app(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = true;
  proj_worker_stop(app->worker);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  sf_http_server_close(app->http, http_closed_cb, app);
}

static void signal_cb(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  SF_INFO(app->log, MOD, "signal %d: stopping", signum);
  shutdown_app(app);
}

static void worker_done_cb(uv_async_t *h) {
  app_t *app = h->data;
  if (!app->stopping)
    SF_ERROR(app->log, MOD, "the worker ended on its own: stopping");
  shutdown_app(app);
  uv_close((uv_handle_t *)h, NULL);
}

/* Runs on the worker thread: only uv_async_send is allowed here. */
static void worker_exit_cb(void *ud, int rc) {
  (void)rc;
  app_t *app = ud;
  uv_async_send(&app->worker_done);
}

/* ---- --rebuild: a one-shot command ---- */

/* The rebuild runs on a thread so that the loop can turn SIGINT/SIGTERM
 * into proj_rebuild_stop; the thread's end wakes the loop through `done`. */
typedef struct rebuild_app {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  uv_async_t done;
  uv_thread_t thread;
  proj_rebuild_t *rb;
  proj_rebuild_report_t rep;
  int rc;
  sf_log_t *log;
} rebuild_app_t;

/* Writes one JSON line on stdout (the rebuild thread, then the main thread
 * once it joined: never both at once). Takes the reference of o. */
static void emit_json(json_t *o, sf_log_t *log) {
  if (!o || json_dumpf(o, stdout, JSON_COMPACT) != 0 || fputc('\n', stdout) == EOF ||
      fflush(stdout) != 0)
    SF_WARN(log, MOD, "cannot write the progress line on stdout");
  json_decref(o);
}

static void rebuild_progress_cb(void *ud, const proj_rebuild_progress_t *p) {
  rebuild_app_t *ra = ud;
  emit_json(json_pack("{s:s, s:I, s:I, s:f, s:o, s:f}", "phase", p->phase,
                      "done", (json_int_t)p->done, "total",
                      (json_int_t)p->total, "rate", p->rate, "eta_s",
                      p->eta_s >= 0 ? json_real(p->eta_s) : json_null(),
                      "elapsed_s", p->elapsed_s),
            ra->log);
}

static void rebuild_thread(void *arg) {
  rebuild_app_t *ra = arg;
  ra->rc = proj_rebuild_run(ra->rb, &ra->rep);
  uv_async_send(&ra->done);
}

static void rebuild_signal_cb(uv_signal_t *h, int signum) {
  rebuild_app_t *ra = h->data;
  SF_WARN(ra->log, MOD, "signal %d: stopping the rebuild", signum);
  proj_rebuild_stop(ra->rb);
}

static void rebuild_done_cb(uv_async_t *h) {
  rebuild_app_t *ra = h->data;
  uv_close((uv_handle_t *)&ra->sigint, NULL);
  uv_close((uv_handle_t *)&ra->sigterm, NULL);
  uv_close((uv_handle_t *)h, NULL);
}

static int run_rebuild(const proj_config_t *cfg, sf_log_t *log) {
  rebuild_app_t ra = {.log = log, .rc = SF_EINTERNAL};
  proj_rebuild_opts_t ro = {
      .brokers = cfg->kafka_brokers,
      .group = cfg->group,
      .topic_catalog = cfg->topic_catalog,
      .topic_stock = cfg->topic_stock,
      .pg_dsn = cfg->pg_dsn,
      .batch_max = (size_t)cfg->batch_max,
      .batch_wait_ms = (int)cfg->batch_wait_ms,
      .progress = cfg->rebuild_progress_json ? rebuild_progress_cb : NULL,
      .progress_ud = &ra,
  };
  int rc = uv_loop_init(&ra.loop);
  if (rc) {
    SF_ERROR(log, MOD, "uv_loop_init: %s", uv_strerror(rc));
    return 1;
  }
  rc = proj_rebuild_new(&ra.rb, &ro, log);
  if (rc) {
    SF_ERROR(log, MOD, "cannot set up the rebuild: %s", sf_strerror(rc));
    goto fail_new;
  }
  uv_signal_init(&ra.loop, &ra.sigint);
  uv_signal_init(&ra.loop, &ra.sigterm);
  ra.sigint.data = ra.sigterm.data = &ra;
  uv_signal_start(&ra.sigint, rebuild_signal_cb, SIGINT);
  uv_signal_start(&ra.sigterm, rebuild_signal_cb, SIGTERM);
  uv_async_init(&ra.loop, &ra.done, rebuild_done_cb);
  ra.done.data = &ra;
  if (uv_thread_create(&ra.thread, rebuild_thread, &ra) != 0) {
    SF_ERROR(log, MOD, "cannot start the rebuild thread");
    rebuild_done_cb(&ra.done);
    uv_run(&ra.loop, UV_RUN_DEFAULT);
    goto fail_thread;
  }
  uv_run(&ra.loop, UV_RUN_DEFAULT);
  uv_thread_join(&ra.thread);
  if (ra.rc == 0)
    SF_INFO(log, MOD,
            "rebuild done: %" PRIu64 " message(s) (%" PRIu64
            " applied, %" PRIu64 " skipped as poison, %" PRIu64
            " under the lock) in %" PRIu64 " batch(es), replay %.1f s (%.0f "
            "messages/s), switch %.3f s; change log ids restart above %" PRId64,
            ra.rep.messages, ra.rep.applied, ra.rep.poison, ra.rep.caught_up,
            ra.rep.batches, ra.rep.replay_seconds,
            ra.rep.replay_seconds > 0
                ? (double)ra.rep.messages / ra.rep.replay_seconds
                : 0.0,
            ra.rep.switch_seconds, ra.rep.pruned_through);
  else
    SF_ERROR(log, MOD, "rebuild failed: %s", sf_strerror(ra.rc));
  if (cfg->rebuild_progress_json && ra.rc == 0)
    emit_json(json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I}",
                        "phase", "done", "messages", (json_int_t)ra.rep.messages,
                        "applied", (json_int_t)ra.rep.applied, "poison",
                        (json_int_t)ra.rep.poison, "batches",
                        (json_int_t)ra.rep.batches, "caught_up",
                        (json_int_t)ra.rep.caught_up, "replay_s",
                        ra.rep.replay_seconds, "switch_s",
                        ra.rep.switch_seconds, "pruned_through",
                        (json_int_t)ra.rep.pruned_through),
             log);
  else if (cfg->rebuild_progress_json)
    emit_json(json_pack("{s:s, s:s, s:s}", "phase", "failed", "error",
                        sf_err_name(ra.rc), "message", sf_strerror(ra.rc)),
              log);
fail_thread:
  proj_rebuild_destroy(ra.rb);
fail_new:
  if (uv_loop_close(&ra.loop))
    SF_WARN(log, MOD, "the loop still had open handles at exit");
  return ra.rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  int status = 1, rc;
  proj_config_t cfg;
  app_t app = {0};
  proj_status_t *st = NULL;

  switch (sf_config_parse(proj_config_spec(), &cfg, argc, argv, stdout,
                          stderr)) {
  case SF_CFG_RUN:
    break;
  case SF_CFG_EXIT_OK:
    return 0;
  case SF_CFG_EXIT_USAGE:
    return 2;
  }
  sf_log_level_t level;
  char host[256];
  int port;
  if (sf_log_level_parse(cfg.log_level, &level)) {
    fprintf(stderr, "stockflow-projector: bad log level \"%s\"\n",
            cfg.log_level);
    return 2;
  }
  if (sf_config_split_hostport(cfg.listen, host, sizeof host, &port)) {
    fprintf(stderr, "stockflow-projector: bad listen address \"%s\"\n",
            cfg.listen);
    return 2;
  }
  if (sf_log_new(&app.log, "projector", level, stderr)) {
    fprintf(stderr, "stockflow-projector: cannot create the logger\n");
    return 1;
  }
  SF_INFO(app.log, MOD, "stockflow-projector %s starting%s", SF_VERSION,
          cfg.rebuild ? " (rebuild)" : "");
  if (cfg.rebuild) {
    status = run_rebuild(&cfg, app.log);
    sf_log_destroy(app.log);
    return status;
  }

  rc = uv_loop_init(&app.loop);
  if (rc) {
    SF_ERROR(app.log, MOD, "uv_loop_init: %s", uv_strerror(rc));
    goto fail_loop;
  }
  if (proj_status_new(&st)) {
    SF_ERROR(app.log, MOD, "out of memory");
    goto fail_status;
  }
  proj_worker_opts_t wo = {
      .brokers = cfg.kafka_brokers,
      .group = cfg.group,
      .topic_catalog = cfg.topic_catalog,
      .topic_stock = cfg.topic_stock,
      .topic_dlq = cfg.topic_dlq,
      .pg_dsn = cfg.pg_dsn,
      .retention_s = cfg.changes_retention_s,
      .batch_max = (size_t)cfg.batch_max,
      .batch_wait_ms = (int)cfg.batch_wait_ms,
      .on_exit = worker_exit_cb,
      .on_exit_ud = &app,
  };
  rc = proj_worker_new(&app.worker, &wo, st, app.log);
  if (rc) {
    SF_ERROR(app.log, MOD, "cannot create the worker: %s", sf_strerror(rc));
    goto fail_worker;
  }

  sf_http_limits_t limits;
  sf_http_limits_default(&limits);
  limits.max_body = (size_t)cfg.max_body;
  rc = sf_http_server_new(&app.http, &app.loop, &limits, app.log);
  if (rc) {
    SF_ERROR(app.log, MOD, "cannot create the HTTP server: %s",
             sf_strerror(rc));
    goto fail_http;
  }
  proj_api_t api = {.server = app.http, .status = st};
  rc = proj_api_register(&api);
  if (!rc)
    rc = sf_http_listen(app.http, host, port);
  if (rc) {
    SF_ERROR(app.log, MOD, "cannot serve on %s: %s", cfg.listen,
             sf_strerror(rc));
    goto fail_listen;
  }

  uv_signal_init(&app.loop, &app.sigint);
  uv_signal_init(&app.loop, &app.sigterm);
  app.sigint.data = app.sigterm.data = &app;
  uv_signal_start(&app.sigint, signal_cb, SIGINT);
  uv_signal_start(&app.sigterm, signal_cb, SIGTERM);
  uv_async_init(&app.loop, &app.worker_done, worker_done_cb);
  app.worker_done.data = &app;

  SF_INFO(app.log, MOD, "serving /healthz, /readyz, /metrics on %s",
          cfg.listen);
  bool started = proj_worker_start(app.worker) == 0;
  if (!started) {
    shutdown_app(&app);
    uv_close((uv_handle_t *)&app.worker_done, NULL);
  }
  uv_run(&app.loop, UV_RUN_DEFAULT);
  status = started && proj_worker_join(app.worker) == 0 ? 0 : 1;
  SF_INFO(app.log, MOD, "stopped");
  goto done;

fail_listen:
  /* Never listened successfully: close it and let the loop finish that. */
  sf_http_server_close(app.http, http_closed_cb, &app);
  uv_run(&app.loop, UV_RUN_DEFAULT);
done:
  sf_http_server_destroy(app.http);
fail_http:
  proj_worker_destroy(app.worker);
fail_worker:
  proj_status_destroy(st);
fail_status:
  if (uv_loop_close(&app.loop))
    SF_WARN(app.log, MOD, "the loop still had open handles at exit");
fail_loop:
  sf_log_destroy(app.log);
  return status;
}
