/* service: the one shape of a stockflow main() (see sf/service.h). */
#include "sf/service.h"
#include "sf/err.h"

#include <curl/curl.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>

#define MOD "main"

typedef struct run {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  const sf_service_def_t *def;
  void *app;
  sf_log_t *log;
  bool stopping;
} run_t;

static void stopped_cb(void *ud) {
  run_t *r = ud;
  SF_DEBUG(r->log, MOD, "every handle of the app is closed");
}

static void signal_cb(uv_signal_t *h, int signum) {
  run_t *r = h->data;
  if (r->stopping)
    return;
  r->stopping = true;
  SF_INFO(r->log, MOD, "signal %d: stopping", signum);
  r->def->app->stop(r->app, stopped_cb, r);
}

/* The signal handles, unreferenced: they never keep the loop alive. */
static int signals_start(run_t *r) {
  int rc;
  if ((rc = uv_signal_init(&r->loop, &r->sigint)) != 0)
    return rc;
  if ((rc = uv_signal_init(&r->loop, &r->sigterm)) != 0) {
    uv_close((uv_handle_t *)&r->sigint, NULL);
    return rc;
  }
  r->sigint.data = r->sigterm.data = r;
  uv_unref((uv_handle_t *)&r->sigint);
  uv_unref((uv_handle_t *)&r->sigterm);
  if ((rc = uv_signal_start(&r->sigint, signal_cb, SIGINT)) != 0 ||
      (rc = uv_signal_start(&r->sigterm, signal_cb, SIGTERM)) != 0) {
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
  }
  return rc;
}

int sf_service_run(const sf_service_def_t *def, const void *cfg,
                   const char *log_level, FILE *err) {
  run_t r = {.def = def};
  sf_log_level_t level;
  if (sf_log_level_parse(log_level, &level) != 0) {
    fprintf(err, "%s: invalid log level \"%s\"\n", def->prog, log_level);
    return 2;
  }
  if (sf_log_new(&r.log, def->service, level, err) != 0) {
    fprintf(err, "%s: cannot create the logger\n", def->prog);
    return 1;
  }
  int status = 1;
  /* A write to a peer that went away must fail with EPIPE, not kill us. */
  if (sodium_init() < 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    SF_ERROR(r.log, MOD, "process setup (SIGPIPE, libsodium) failed");
    goto fail_setup;
  }
  /* libcurl (sf_registry, sf_upstream) once, before any thread starts:
   * the modules rely on it instead of initialising it lazily. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    SF_ERROR(r.log, MOD, "process setup (libcurl) failed");
    goto fail_setup;
  }
  int rc = uv_loop_init(&r.loop);
  if (rc) {
    SF_ERROR(r.log, MOD, "uv_loop_init: %s", uv_strerror(rc));
    goto fail_curl;
  }
  rc = def->app->create(cfg, &r.loop, r.log, &r.app);
  if (rc) {
    SF_ERROR(r.log, MOD, "creating the service: %s", sf_strerror(rc));
    uv_run(&r.loop, UV_RUN_DEFAULT); /* what it left closing closes */
    goto fail_app;
  }
  if ((rc = signals_start(&r)) != 0) {
    SF_ERROR(r.log, MOD, "signal handlers: %s", uv_strerror(rc));
    r.stopping = true;
    def->app->stop(r.app, stopped_cb, &r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    goto fail_signals;
  }
  if ((rc = def->app->start(r.app)) != 0) {
    SF_ERROR(r.log, MOD, "starting the service: %s", sf_strerror(rc));
    r.stopping = true;
    def->app->stop(r.app, stopped_cb, &r);
  } else {
    SF_INFO(r.log, MOD, "%s %s started", def->prog, SF_VERSION);
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&r.sigint, NULL);
  uv_close((uv_handle_t *)&r.sigterm, NULL);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  if (rc == 0)
    status = def->app->wait ? def->app->wait(r.app) : 0;
  SF_INFO(r.log, MOD, "stopped");
fail_signals:
  def->app->destroy(r.app);
fail_app:
  if (uv_loop_close(&r.loop) != 0)
    SF_WARN(r.log, MOD, "the loop still had open handles at exit");
fail_curl:
  curl_global_cleanup();
fail_setup:
  sf_log_destroy(r.log);
  return status;
}
