/* proj_app: the projector's lifecycle, in service or rebuild mode (see
 * proj_app.h). The worker or the rebuild runs on a thread of its own; its
 * end wakes the loop through a uv_async, which is closed only then, so the
 * loop ends after the thread's last act, whichever side began the
 * shutdown. */
#include "proj_app.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "proj_api.h"
#include "proj_rebuild.h"
#include "proj_status.h"
#include "proj_worker.h"
#include "sf/config.h"
#include "sf/err.h"
#include "sf/http.h"

#define MOD "main"

struct proj_app {
  uv_loop_t *loop;
  const proj_config_t *cfg;
  sf_log_t *log;
  uv_async_t thread_done; /* the worker's or the rebuild's end */
  bool started;           /* the thread runs (or ran) */
  bool stopping;
  int open_handles; /* of the app: thread_done, and the server in service
                       mode; done fires when it drops to 0 */
  void (*done)(void *ud);
  void *done_ud;
  /* service mode */
  char host[256];
  int port;
  proj_status_t *status;
  proj_worker_opts_t wo;
  proj_worker_t *worker;
  sf_http_server_t *http;
  proj_api_t api;
  /* rebuild mode */
  proj_rebuild_opts_t ro;
  proj_rebuild_t *rb;
  uv_thread_t thread;
  proj_rebuild_report_t rep;
  int rebuild_rc;
};

static void handle_closed(proj_app_t *a) {
  if (--a->open_handles > 0 || !a->done)
    return;
  void (*done)(void *) = a->done;
  a->done = NULL;
  done(a->done_ud);
}

static void http_closed_cb(void *ud) { handle_closed(ud); }

static void async_closed_cb(uv_handle_t *h) { handle_closed(h->data); }

/* Begins the shutdown once: stop the thread, stop listening. */
static void begin_stop(proj_app_t *a) {
  if (a->stopping)
    return;
  a->stopping = true;
  if (a->cfg->rebuild) {
    SF_WARN(a->log, MOD, "stopping the rebuild");
    proj_rebuild_stop(a->rb);
  } else {
    proj_worker_stop(a->worker);
    sf_http_server_close(a->http, http_closed_cb, a);
  }
  if (!a->started) /* no thread will wake the loop */
    uv_close((uv_handle_t *)&a->thread_done, async_closed_cb);
}

/* On the loop, after the thread's last act. */
static void thread_done_cb(uv_async_t *h) {
  proj_app_t *a = h->data;
  if (!a->stopping && !a->cfg->rebuild)
    SF_ERROR(a->log, MOD, "the worker ended on its own: stopping");
  begin_stop(a);
  uv_close((uv_handle_t *)h, async_closed_cb);
}

/* Runs on the worker thread: only uv_async_send is allowed here. */
static void worker_exit_cb(void *ud, int rc) {
  (void)rc;
  proj_app_t *a = ud;
  uv_async_send(&a->thread_done);
}

/* --rebuild-progress-json: one JSON line on stdout (the rebuild thread,
 * then the loop thread once it joined: never both at once). Takes the
 * reference of o. */
static void emit_json(json_t *o, sf_log_t *log) {
  if (!o || json_dumpf(o, stdout, JSON_COMPACT) != 0 ||
      fputc('\n', stdout) == EOF || fflush(stdout) != 0)
    SF_WARN(log, MOD, "cannot write the progress line on stdout");
  json_decref(o);
}

static void rebuild_progress_cb(void *ud, const proj_rebuild_progress_t *p) {
  proj_app_t *a = ud;
  emit_json(json_pack("{s:s, s:I, s:I, s:f, s:o, s:f}", "phase", p->phase,
                      "done", (json_int_t)p->done, "total",
                      (json_int_t)p->total, "rate", p->rate, "eta_s",
                      p->eta_s >= 0 ? json_real(p->eta_s) : json_null(),
                      "elapsed_s", p->elapsed_s),
            a->log);
}

static void rebuild_thread(void *arg) {
  proj_app_t *a = arg;
  a->rebuild_rc = proj_rebuild_run(a->rb, &a->rep);
  uv_async_send(&a->thread_done);
}

static int new_service(proj_app_t *a) {
  const proj_config_t *cfg = a->cfg;
  int rc = sf_config_split_hostport(cfg->listen, a->host, sizeof(a->host),
                                    &a->port);
  if (rc) {
    SF_ERROR(a->log, MOD, "bad listen address \"%s\"", cfg->listen);
    return rc;
  }
  if ((rc = proj_status_new(&a->status)) != 0) {
    SF_ERROR(a->log, MOD, "out of memory");
    return rc;
  }
  a->wo = (proj_worker_opts_t){
      .brokers = cfg->kafka_brokers,
      .group = cfg->group,
      .topic_catalog = cfg->topic_catalog,
      .topic_stock = cfg->topic_stock,
      .registry_url = cfg->schema_registry_url,
      .topic_dlq = cfg->topic_dlq,
      .pg_dsn = cfg->pg_dsn,
      .retention_s = cfg->changes_retention_s,
      .batch_max = (size_t)cfg->batch_max,
      .batch_wait_ms = (int)cfg->batch_wait_ms,
      .on_exit = worker_exit_cb,
      .on_exit_ud = a,
  };
  rc = proj_worker_new(&a->worker, &a->wo, a->status, a->log);
  if (rc) {
    SF_ERROR(a->log, MOD, "cannot create the worker: %s", sf_strerror(rc));
    return rc;
  }
  sf_http_limits_t limits;
  sf_http_limits_default(&limits);
  limits.max_body = (size_t)cfg->max_body;
  rc = sf_http_server_new(&a->http, a->loop, &limits, a->log);
  if (rc) {
    SF_ERROR(a->log, MOD, "cannot create the HTTP server: %s",
             sf_strerror(rc));
    return rc;
  }
  a->api = (proj_api_t){.server = a->http, .status = a->status};
  rc = proj_api_register(&a->api);
  if (rc)
    SF_ERROR(a->log, MOD, "cannot add the routes: %s", sf_strerror(rc));
  return rc;
}

static int new_rebuild(proj_app_t *a) {
  const proj_config_t *cfg = a->cfg;
  a->rebuild_rc = SF_EINTERNAL;
  a->ro = (proj_rebuild_opts_t){
      .brokers = cfg->kafka_brokers,
      .group = cfg->group,
      .topic_catalog = cfg->topic_catalog,
      .topic_stock = cfg->topic_stock,
      .registry_url = cfg->schema_registry_url,
      .pg_dsn = cfg->pg_dsn,
      .batch_max = (size_t)cfg->batch_max,
      .batch_wait_ms = (int)cfg->batch_wait_ms,
      .progress = cfg->rebuild_progress_json ? rebuild_progress_cb : NULL,
      .progress_ud = a,
  };
  int rc = proj_rebuild_new(&a->rb, &a->ro, a->log);
  if (rc)
    SF_ERROR(a->log, MOD, "cannot set up the rebuild: %s", sf_strerror(rc));
  return rc;
}

int proj_app_new(proj_app_t **out, uv_loop_t *loop, const proj_config_t *cfg,
                 sf_log_t *log) {
  *out = NULL;
  proj_app_t *a = calloc(1, sizeof(*a));
  if (!a)
    return SF_ENOMEM;
  a->loop = loop;
  a->cfg = cfg;
  a->log = log;
  SF_INFO(log, MOD, "stockflow-projector %s starting%s", SF_VERSION,
          cfg->rebuild ? " (rebuild)" : "");
  int rc = cfg->rebuild ? new_rebuild(a) : new_service(a);
  if (rc == 0 && (rc = uv_async_init(loop, &a->thread_done, thread_done_cb))) {
    SF_ERROR(log, MOD, "uv_async_init: %s", uv_strerror(rc));
    rc = SF_EINTERNAL;
  }
  if (rc) {
    proj_app_destroy(a); /* nothing of it is on the loop yet */
    return rc;
  }
  a->thread_done.data = a;
  a->open_handles = cfg->rebuild ? 1 : 2;
  *out = a;
  return 0;
}

int proj_app_start(proj_app_t *a) {
  if (a->cfg->rebuild) {
    if (uv_thread_create(&a->thread, rebuild_thread, a) != 0) {
      SF_ERROR(a->log, MOD, "cannot start the rebuild thread");
      return SF_EINTERNAL;
    }
    a->started = true;
    return 0;
  }
  int rc = sf_http_listen(a->http, a->host, a->port);
  if (rc) {
    SF_ERROR(a->log, MOD, "cannot serve on %s: %s", a->cfg->listen,
             sf_strerror(rc));
    return rc;
  }
  SF_INFO(a->log, MOD, "serving /healthz, /readyz, /metrics on %s",
          a->cfg->listen);
  if ((rc = proj_worker_start(a->worker)) != 0)
    return rc;
  a->started = true;
  return 0;
}

void proj_app_stop(proj_app_t *a, void (*done)(void *ud), void *ud) {
  if (!a->done && a->open_handles > 0) {
    a->done = done;
    a->done_ud = ud;
  }
  begin_stop(a);
}

int proj_app_wait(proj_app_t *a) {
  if (!a->started)
    return 1;
  if (!a->cfg->rebuild)
    return proj_worker_join(a->worker) == 0 ? 0 : 1;
  uv_thread_join(&a->thread);
  a->started = false;
  if (a->rebuild_rc != 0) {
    SF_ERROR(a->log, MOD, "rebuild failed: %s", sf_strerror(a->rebuild_rc));
    if (a->cfg->rebuild_progress_json)
      emit_json(json_pack("{s:s, s:s, s:s}", "phase", "failed", "error",
                          sf_err_name(a->rebuild_rc), "message",
                          sf_strerror(a->rebuild_rc)),
                a->log);
    return 1;
  }
  const proj_rebuild_report_t *r = &a->rep;
  if (a->cfg->rebuild_progress_json)
    emit_json(json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I}",
                        "phase", "done", "messages", (json_int_t)r->messages,
                        "applied", (json_int_t)r->applied, "poison",
                        (json_int_t)r->poison, "batches",
                        (json_int_t)r->batches, "caught_up",
                        (json_int_t)r->caught_up, "replay_s",
                        r->replay_seconds, "switch_s", r->switch_seconds,
                        "pruned_through", (json_int_t)r->pruned_through),
              a->log);
  SF_INFO(a->log, MOD,
          "rebuild done: %" PRIu64 " message(s) (%" PRIu64 " applied, %" PRIu64
          " skipped as poison, %" PRIu64 " under the lock) in %" PRIu64
          " batch(es), replay %.1f s (%.0f messages/s), switch %.3f s; change "
          "log ids restart above %" PRId64,
          r->messages, r->applied, r->poison, r->caught_up, r->batches,
          r->replay_seconds,
          r->replay_seconds > 0 ? (double)r->messages / r->replay_seconds
                                : 0.0,
          r->switch_seconds, r->pruned_through);
  return 0;
}

void proj_app_destroy(proj_app_t *a) {
  if (!a)
    return;
  sf_http_server_destroy(a->http);
  proj_worker_destroy(a->worker);
  proj_status_destroy(a->status);
  proj_rebuild_destroy(a->rb);
  free(a);
}
