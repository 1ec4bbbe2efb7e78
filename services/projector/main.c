/* stockflow-projector: parses the settings and runs the projector's app
 * (proj_app: status, worker and HTTP server, or the one-shot rebuild with
 * --rebuild) in the shape every stockflow main has (sf/service.h): logger,
 * process setup, loop, app, signals, start; run; stop on SIGINT or SIGTERM
 * or when the app ends on its own, drain, join its thread, free in
 * reverse. */
#include <stdio.h>

#include "proj_app.h"
#include "proj_config.h"
#include "sf/service.h"

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
  static const sf_service_app_t app = {app_create, app_start, app_stop,
                                       app_wait, app_destroy};
  const sf_service_def_t def = {"stockflow-projector", "projector", &app};
  return sf_service_run(&def, &cfg, cfg.log_level, stderr);
}
