/* qry_app: the query service's lifecycle (see qry_app.h). */
#include "qry_app.h"

#include <stdlib.h>

#include "qry_service.h"
#include "sf/authn.h"
#include "sf/config.h"
#include "sf/err.h"
#include "sf/http.h"
#include "sf/pg.h"

struct qry_app {
  uv_loop_t *loop;
  const qry_settings_t *cfg;
  sf_log_t *log;
  char host[256];
  int port;
  sf_pg_t *pg;            /* freed by sf_pg_close */
  sf_http_server_t *http; /* closed, then destroyed */
  sf_authn_t *authn;      /* freed after the pool and the server */
  qry_service_t *svc;
  bool stopping;
  void (*done)(void *ud);
  void *done_ud;
};

int qry_app_new(qry_app_t **out, uv_loop_t *loop, const qry_settings_t *cfg,
                sf_log_t *log) {
  *out = NULL;
  qry_app_t *a = calloc(1, sizeof(*a));
  if (!a)
    return SF_ENOMEM;
  a->loop = loop;
  a->cfg = cfg;
  a->log = log;
  int rc = sf_config_split_hostport(cfg->listen, a->host, sizeof(a->host),
                                    &a->port);
  if (rc) {
    SF_ERROR(log, "query", "invalid listen address \"%s\"", cfg->listen);
    goto fail_listen;
  }
  sf_pg_opts_t po = {.dsn = cfg->pg_dsn,
                     .pool_size = (int)cfg->pg_pool,
                     .max_queue = 0,
                     .statement_timeout_ms = (int)cfg->pg_statement_timeout_ms};
  if ((rc = sf_pg_new(&a->pg, loop, &po, log)) != 0) {
    SF_ERROR(log, "query", "postgresql pool: %s", sf_strerror(rc));
    goto fail_pg;
  }
  sf_http_limits_t limits;
  sf_http_limits_default(&limits);
  limits.max_body = (size_t)cfg->max_body;
  if ((rc = sf_http_server_new(&a->http, loop, &limits, log)) != 0) {
    SF_ERROR(log, "query", "http server: %s", sf_strerror(rc));
    goto fail_http;
  }
  /* accounts: the bearer-token gate, on the same pool */
  if ((rc = sf_authn_new(&a->authn, loop, a->pg, NULL, log)) != 0) {
    SF_ERROR(log, "query", "authentication: %s", sf_strerror(rc));
    goto fail_authn;
  }
  qry_service_opts_t so = {
      .min_position_wait_ms = (uint64_t)cfg->min_position_wait_ms,
      .projector_group = cfg->projector_group,
      .topic_catalog = cfg->topic_catalog,
      .topic_stock = cfg->topic_stock,
      .position_poll_ms = (uint64_t)cfg->position_poll_ms,
      .stream_max_buffer = (size_t)cfg->stream_max_buffer,
      .stream_heartbeat_ms = (uint64_t)cfg->stream_heartbeat_ms,
      .parse_app_id = cfg->parse_app_id,
      .command_url = cfg->command_url,
      .authn = a->authn};
  if ((rc = qry_service_new(&a->svc, loop, a->http, a->pg, &so, log)) != 0) {
    SF_ERROR(log, "query", "query service: %s", sf_strerror(rc));
    goto fail_service;
  }
  *out = a;
  return 0;

fail_service:
  sf_authn_destroy(a->authn); /* no look-up was ever sent */
fail_authn:
  sf_http_server_destroy(a->http); /* never listened */
fail_http:
  sf_pg_close(a->pg, NULL, NULL); /* its handles close if the loop runs */
fail_pg:
fail_listen:
  free(a);
  return rc;
}

int qry_app_start(qry_app_t *a) {
  int rc = sf_http_listen(a->http, a->host, a->port);
  if (rc)
    return rc; /* reason logged by sf_http_listen */
  SF_INFO(a->log, "query", "listening on %s:%d", a->host,
          sf_http_bound_port(a->http));
  return 0;
}

static void on_http_closed(void *ud) {
  qry_app_t *a = ud;
  SF_INFO(a->log, "query", "http server closed");
  if (a->done)
    a->done(a->done_ud);
}

static void on_pg_closed(void *ud) {
  qry_app_t *a = ud;
  a->pg = NULL;
  sf_http_server_close(a->http, on_http_closed, a);
}

/* The service has answered everything it started: close the pool. */
static void on_service_drained(void *ud) {
  qry_app_t *a = ud;
  sf_pg_close(a->pg, on_pg_closed, a);
}

void qry_app_stop(qry_app_t *a, void (*done)(void *ud), void *ud) {
  if (a->stopping)
    return;
  a->stopping = true;
  a->done = done;
  a->done_ud = ud;
  qry_service_shutdown(a->svc, on_service_drained, a);
}

void qry_app_destroy(qry_app_t *a) {
  if (!a)
    return;
  qry_service_destroy(a->svc);
  sf_http_server_destroy(a->http);
  sf_authn_destroy(a->authn); /* accounts: its routes and cache */
  free(a);
}
