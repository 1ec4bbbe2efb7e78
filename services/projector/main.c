/* stockflow-projector: parses the settings and runs the projector's app
 * (proj_app: status, worker and HTTP server, or the one-shot rebuild with
 * --rebuild) in the shape every stockflow main has (sf/service.h): logger,
 * process setup, loop, app, signals, start; run; stop on SIGINT or SIGTERM
 * or when the app ends on its own, drain, join its thread, free in
 * reverse. With --check it runs the conservation check (proj_check)
 * instead and exits 0 (the read model matches the log), 1 (it differs) or
 * 2 (the check could not run). */
#include <curl/curl.h>
#include <stdio.h>

#include "proj_app.h"
#include "proj_check.h"
#include "proj_config.h"
#include "sf/err.h"
#include "sf/log.h"
#include "sf/service.h"

/* The one-shot conservation check: no loop, no HTTP. */
static int run_check(const proj_config_t *cfg) {
  sf_log_level_t level;
  sf_log_t *log = NULL;
  if (sf_log_level_parse(cfg->log_level, &level) != 0) {
    fprintf(stderr, "stockflow-projector: invalid log level \"%s\"\n",
            cfg->log_level);
    return 2;
  }
  if (sf_log_new(&log, "projector", level, stderr)) {
    fprintf(stderr, "stockflow-projector: cannot create the logger\n");
    return 2;
  }
  /* The check reads the log through sf_registry (libcurl): set libcurl up
   * here, once, as sf_service_run does for the services. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    SF_ERROR(log, "main", "process setup (libcurl) failed");
    sf_log_destroy(log);
    return 2;
  }
  proj_check_opts_t co = {.brokers = cfg->kafka_brokers,
                          .group = cfg->group,
                          .topic_stock = cfg->topic_stock,
                          .registry_url = cfg->schema_registry_url,
                          .pg_dsn = cfg->pg_dsn,
                          .timeout_ms = 30000};
  size_t differences = 0;
  int rc = proj_check_run(&co, stdout, log, &differences);
  if (rc)
    SF_ERROR(log, "main", "check failed: %s", sf_strerror(rc));
  curl_global_cleanup();
  sf_log_destroy(log);
  return rc ? 2 : differences ? 1
                              : 0;
}

static int app_create(const void *cfg, uv_loop_t *loop, sf_log_t *log,
                      void **app) {
  proj_app_t *a = NULL;
  int rc = proj_app_new(&a, loop, cfg, log);
  *app = a;
  return rc;
}
static int app_start(void *app) { return proj_app_start(app); }
static void app_stop(void *app, void (*done)(void *), void *ud) {
  proj_app_stop(app, done, ud);
}
static int app_wait(void *app) { return proj_app_wait(app); }
static void app_destroy(void *app) { proj_app_destroy(app); }

int main(int argc, char **argv) {
  proj_config_t cfg;
  switch (sf_config_parse(proj_config_spec(), &cfg, argc, argv, stdout,
                          stderr)) {
  case SF_CFG_RUN:
    break;
  case SF_CFG_EXIT_OK:
    return 0;
  case SF_CFG_EXIT_USAGE:
    return 2;
  }
  if (cfg.check)
    return run_check(&cfg);
  static const sf_service_app_t app = {app_create, app_start, app_stop,
                                       app_wait, app_destroy};
  const sf_service_def_t def = {"stockflow-projector", "projector", &app};
  return sf_service_run(&def, &cfg, cfg.log_level, stderr);
}
