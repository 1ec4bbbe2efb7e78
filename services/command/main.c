/* stockflow-command: wires the command service together. Order: settings,
 * logger, libsodium, loop, app (HTTP + writer), signals; run; then stop the
 * app, close the signal handles, drain the loop and free in reverse. */
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "cmd_app.h"
#include "cmd_config.h"
#include "sf/err.h"
#include "sf/log.h"

typedef struct service {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  cmd_app_t *app;
  sf_log_t *log;
  bool stopping;
} service_t;

static void stopped_cb(void *ud) {
  service_t *s = ud;
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void signal_cb(uv_signal_t *h, int signum) {
  service_t *s = h->data;
  if (s->stopping)
    return;
  s->stopping = true;
  SF_INFO(s->log, "main", "signal %d: stopping", signum);
  cmd_app_stop(s->app, stopped_cb, s);
}

/* The instance was fenced by another one: stop, and exit non-zero. */
static void fatal_cb(void *ud) {
  service_t *s = ud;
  if (s->stopping)
    return;
  s->stopping = true;
  SF_ERROR(s->log, "main", "stopping: this instance can no longer write");
  cmd_app_stop(s->app, stopped_cb, s);
}

int main(int argc, char **argv) {
  cmd_settings_t cfg;
  switch (sf_config_parse(cmd_config_spec(), &cfg, argc, argv, stdout, stderr)) {
  case SF_CFG_RUN:
    break;
  case SF_CFG_EXIT_OK:
    return 0;
  case SF_CFG_EXIT_USAGE:
    return 2;
  }
  int status = 1;
  service_t s = {0};
  sf_log_level_t level;
  if (sf_log_level_parse(cfg.log_level, &level) != 0) {
    fprintf(stderr, "stockflow-command: invalid log level \"%s\"\n",
            cfg.log_level);
    return 2;
  }
  if (sf_log_new(&s.log, "command", level, stderr) != 0) {
    fprintf(stderr, "stockflow-command: cannot create the logger\n");
    return 1;
  }
  if (sodium_init() < 0) {
    SF_ERROR(s.log, "main", "libsodium failed to initialise");
    goto fail_sodium;
  }
  signal(SIGPIPE, SIG_IGN);
  if (uv_loop_init(&s.loop) != 0) {
    SF_ERROR(s.log, "main", "uv_loop_init failed");
    goto fail_sodium;
  }
  int rc = cmd_app_new(&s.app, &s.loop, &cfg, s.log);
  if (rc) {
    SF_ERROR(s.log, "main", "creating the service: %s", sf_strerror(rc));
    goto fail_app;
  }
  uv_signal_init(&s.loop, &s.sigint);
  uv_signal_init(&s.loop, &s.sigterm);
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, signal_cb, SIGINT);
  uv_signal_start(&s.sigterm, signal_cb, SIGTERM);
  cmd_app_on_fatal(s.app, fatal_cb, &s);
  rc = cmd_app_start(s.app);
  if (rc) {
    SF_ERROR(s.log, "main", "starting the service: %s", sf_strerror(rc));
    s.stopping = true;
    cmd_app_stop(s.app, stopped_cb, &s);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    goto fail_start;
  }
  SF_INFO(s.log, "main", "stockflow-command %s started", SF_VERSION);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  status = cmd_app_failed(s.app) ? 3 : 0;
  SF_INFO(s.log, "main", "stopped (exit status %d)", status);

fail_start:
  cmd_app_destroy(s.app);
fail_app:
  if (uv_loop_close(&s.loop) != 0)
    SF_WARN(s.log, "main", "loop closed with open handles");
fail_sodium:
  sf_log_destroy(s.log);
  return status;
}
