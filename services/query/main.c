/* stockflow-query: parses the settings and runs the query service's app
 * (qry_app: pool, HTTP server, authentication, query service) in the shape
 * every stockflow main has (sf/service.h): logger, process setup, loop,
 * app, signals, start; run; stop on SIGINT or SIGTERM, drain, free in
 * reverse. */
#include <stdio.h>

#include "qry_app.h"
#include "qry_config.h"
#include "sf/service.h"

static int app_create(const void *cfg, uv_loop_t *loop, sf_log_t *log,
                      void **app) {
  qry_app_t *a = NULL;
  int rc = qry_app_new(&a, loop, cfg, log);
  *app = a;
  return rc;
}
static int app_start(void *app) { return qry_app_start(app); }
static void app_stop(void *app, void (*done)(void *), void *ud) {
  qry_app_stop(app, done, ud);
}
static void app_destroy(void *app) { qry_app_destroy(app); }

int main(int argc, char **argv) {
  qry_settings_t cfg;
  switch (sf_config_parse(qry_config_spec(), &cfg, argc, argv, stdout,
                          stderr)) {
  case SF_CFG_RUN:
    break;
  case SF_CFG_EXIT_OK:
    return 0;
  case SF_CFG_EXIT_USAGE:
    return 2;
  }
  static const sf_service_app_t app = {app_create, app_start, app_stop, NULL,
                                       app_destroy};
  const sf_service_def_t def = {"stockflow-query", "query", &app};
  return sf_service_run(&def, &cfg, cfg.log_level, stderr);
}
