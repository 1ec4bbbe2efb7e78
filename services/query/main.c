/* stockflow-query: HTTP reads over the PostgreSQL read models.
 *
 * main only wires, in this order: settings (qry_config) -> logger -> libuv
 * loop -> PostgreSQL pool -> HTTP server -> query service (statements and
 * routes) -> listen -> signals; then runs the loop. SIGINT or SIGTERM stops
 * in reverse: the service refuses new work (503), cancels position waits and
 * lets statements already sent finish; once it is drained the pool closes,
 * then the HTTP server; when the loop has run dry everything is freed and
 * the process exits 0. */
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "qry_config.h"
#include "qry_service.h"
#include "sf/authn.h"
#include "sf/err.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct app {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  bool signals_open;
  bool stopping;
  sf_log_t *log;
  sf_pg_t *pg;            /* freed by sf_pg_close */
  sf_http_server_t *http; /* closed, then destroyed after the loop */
  qry_service_t *svc;
  sf_authn_t *authn; /* accounts: freed after the pool and the server */
} app_t;

static void on_http_closed(void *ud) {
  app_t *a = ud;
  SF_INFO(a->log, "main", "http server closed");
}

static void on_pg_closed(void *ud) {
  app_t *a = ud;
  a->pg = NULL;
  if (a->http)
    sf_http_server_close(a->http, on_http_closed, a);
}

/* The service has answered everything it started: close the pool. */
static void on_service_drained(void *ud) {
  app_t *a = ud;
  if (a->pg)
    sf_pg_close(a->pg, on_pg_closed, a);
  else if (a->http)
    sf_http_server_close(a->http, on_http_closed, a);
}

/* Starts the shutdown sequence once; safe to call with a partial setup. */
static void begin_stop(app_t *a) {
  if (a->stopping)
    return;
  a->stopping = true;
  if (a->signals_open) {
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    a->signals_open = false;
  }
  if (a->svc)
    qry_service_shutdown(a->svc, on_service_drained, a);
  else
    on_service_drained(a);
}

static void on_signal(uv_signal_t *h, int signum) {
  app_t *a = h->data;
  SF_INFO(a->log, "main", "signal %d: shutting down", signum);
  begin_stop(a);
}

static int start_signals(app_t *a) {
  int rc = uv_signal_init(&a->loop, &a->sigint);
  if (rc != 0)
    return rc;
  rc = uv_signal_init(&a->loop, &a->sigterm);
  if (rc != 0) {
    uv_close((uv_handle_t *)&a->sigint, NULL);
    return rc;
  }
  a->signals_open = true;
  a->sigint.data = a->sigterm.data = a;
  if ((rc = uv_signal_start(&a->sigint, on_signal, SIGINT)) != 0 ||
      (rc = uv_signal_start(&a->sigterm, on_signal, SIGTERM)) != 0)
    return rc;
  return 0;
}

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
  sf_log_level_t level;
  if (sf_log_level_parse(cfg.log_level, &level) != 0) {
    fprintf(stderr, "stockflow-query: invalid log level \"%s\"\n",
            cfg.log_level);
    return 2;
  }
  char host[256];
  int port;
  if (sf_config_split_hostport(cfg.listen, host, sizeof(host), &port) != 0) {
    fprintf(stderr, "stockflow-query: invalid listen address \"%s\"\n",
            cfg.listen);
    return 2;
  }

  app_t a;
  memset(&a, 0, sizeof(a));
  int status = 1;
  int rc = sf_log_new(&a.log, "query", level, stderr);
  if (rc != 0) {
    fprintf(stderr, "stockflow-query: logger: %s\n", sf_strerror(rc));
    return 1;
  }
  /* A write to a peer that went away must fail with EPIPE, not kill us. */
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  if (sigaction(SIGPIPE, &sa, NULL) != 0 || sodium_init() < 0) {
    SF_ERROR(a.log, "main", "process setup (SIGPIPE, libsodium) failed");
    goto fail_loop;
  }
  if ((rc = uv_loop_init(&a.loop)) != 0) {
    SF_ERROR(a.log, "main", "uv_loop_init: %s", uv_strerror(rc));
    goto fail_loop;
  }
  sf_pg_opts_t po = {.dsn = cfg.pg_dsn,
                     .pool_size = (int)cfg.pg_pool,
                     .max_queue = 0,
                     .statement_timeout_ms = (int)cfg.pg_statement_timeout_ms};
  if ((rc = sf_pg_new(&a.pg, &a.loop, &po, a.log)) != 0) {
    SF_ERROR(a.log, "main", "postgresql pool: %s", sf_strerror(rc));
    goto fail_pg;
  }
  sf_http_limits_t limits;
  sf_http_limits_default(&limits);
  limits.max_body = (size_t)cfg.max_body;
  if ((rc = sf_http_server_new(&a.http, &a.loop, &limits, a.log)) != 0) {
    SF_ERROR(a.log, "main", "http server: %s", sf_strerror(rc));
    goto fail_stack;
  }
  /* accounts: the bearer-token gate, on the same pool */
  if ((rc = sf_authn_new(&a.authn, &a.loop, a.pg, NULL, a.log)) != 0) {
    SF_ERROR(a.log, "main", "authentication: %s", sf_strerror(rc));
    goto fail_stack;
  }
  qry_service_opts_t so = {
      .min_position_wait_ms = (uint64_t)cfg.min_position_wait_ms,
      .projector_group = cfg.projector_group,
      .topic_catalog = cfg.topic_catalog,
      .topic_stock = cfg.topic_stock,
      .position_poll_ms = (uint64_t)cfg.position_poll_ms,
      .stream_max_buffer = (size_t)cfg.stream_max_buffer,
      .stream_heartbeat_ms = (uint64_t)cfg.stream_heartbeat_ms,
      .authn = a.authn};
  if ((rc = qry_service_new(&a.svc, &a.loop, a.http, a.pg, &so, a.log)) != 0) {
    SF_ERROR(a.log, "main", "query service: %s", sf_strerror(rc));
    goto fail_stack;
  }
  if ((rc = sf_http_listen(a.http, host, port)) != 0)
    goto fail_stack; /* reason logged by sf_http_listen */
  if ((rc = start_signals(&a)) != 0) {
    SF_ERROR(a.log, "main", "signal handlers: %s", uv_strerror(rc));
    goto fail_stack;
  }
  SF_INFO(a.log, "main", "listening on %s:%d", host, sf_http_bound_port(a.http));
  uv_run(&a.loop, UV_RUN_DEFAULT);
  status = 0;

fail_stack:
  begin_stop(&a); /* no-op after a signal */
  uv_run(&a.loop, UV_RUN_DEFAULT); /* until pool, server and signals closed */
  qry_service_destroy(a.svc);
  if (a.http)
    sf_http_server_destroy(a.http);
  sf_authn_destroy(a.authn); /* accounts: its routes and cache */
fail_pg:
  if ((rc = uv_loop_close(&a.loop)) != 0)
    SF_WARN(a.log, "main", "uv_loop_close: %s", uv_strerror(rc));
fail_loop:
  SF_INFO(a.log, "main", "stopped");
  sf_log_destroy(a.log);
  return status;
}
