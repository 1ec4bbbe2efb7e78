/* stockflow-command: parses the settings and runs the command service's
 * app (cmd_app: HTTP server, accounts, writer, bus intake) in the shape
 * every stockflow main has (sf/service.h): logger, process setup, loop,
 * app, signals, start; run; stop on SIGINT or SIGTERM, or by itself when
 * it can no longer write (fenced by another instance: exit status 1, for
 * the supervisor to restart it), drain, free in reverse. */
#include <stdio.h>

#include "cmd_app.h"
#include "cmd_config.h"
#include "sf/service.h"

static int app_create(const void *cfg, uv_loop_t *loop, sf_log_t *log,
                      void **app) {
  cmd_app_t *a = NULL;
  int rc = cmd_app_new(&a, loop, cfg, log);
  *app = a;
  return rc;
}
static int app_start(void *app) { return cmd_app_start(app); }
static void app_stop(void *app, void (*done)(void *), void *ud) {
  cmd_app_stop(app, done, ud);
}
static int app_wait(void *app) { return cmd_app_failed(app) ? 1 : 0; }
static void app_destroy(void *app) { cmd_app_destroy(app); }

int main(int argc, char **argv) {
  cmd_settings_t cfg;
  switch (sf_config_parse(cmd_config_spec(), &cfg, argc, argv, stdout,
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
  const sf_service_def_t def = {"stockflow-command", "command", &app};
  return sf_service_run(&def, &cfg, cfg.log_level, stderr);
}
