/* qry_service: the query service's HTTP endpoints over the PostgreSQL read
 * models.
 *
 * qry_service_new registers the service's statements with the pool and its
 * routes (the /v1 queries of API.md plus /healthz, /readyz and /metrics) with
 * the HTTP server. Every handler validates its input, optionally waits for
 * a position token (?min_position= or X-Min-Position), runs one prepared
 * statement and answers from the result callback; nothing blocks the loop.
 *
 * Shutdown order (main.c): qry_service_shutdown (new requests get 503,
 * position waits are canceled, statements already sent finish and are
 * answered), then, once it reports drained, sf_pg_close and
 * sf_http_server_close, and once the loop has run dry qry_service_destroy.
 * Everything on the loop thread; not thread-safe. */
#ifndef QRY_SERVICE_H
#define QRY_SERVICE_H

#include <stdint.h>
#include <uv.h>

#include "sf/authn.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct qry_service qry_service_t;

typedef struct qry_service_opts {
  uint64_t min_position_wait_ms; /* STOCKFLOW_MIN_POSITION_WAIT_MS */
  const char *projector_group;   /* consumer group in projector_offsets */
  const char *topic_catalog;     /* topic of "catalog-" position tokens */
  const char *topic_stock;       /* topic of "stock-" position tokens */
  uint64_t position_poll_ms;     /* safety re-check of a position wait */
  size_t stream_max_buffer;      /* STOCKFLOW_STREAM_MAX_BUFFER */
  uint64_t stream_heartbeat_ms;  /* STOCKFLOW_STREAM_HEARTBEAT_MS */
  const char *parse_app_id;      /* STOCKFLOW_PARSE_APP_ID */
  const char *command_url;       /* the command service, for Parse writes */
  sf_authn_t *authn;             /* accounts: the bearer-token gate (borrowed); NULL
                        serves without authentication (unit tests only) */
} qry_service_opts_t;

/* Creates the service: prepares statements on pg, LISTENs on
 * stockflow_offsets (position waits) and stockflow_changes (change
 * streams) through pg, and adds routes to http.
 * loop, http, pg, log and the strings of opts are borrowed and must outlive
 * the service. Returns 0, SF_EINVAL, SF_ENOMEM or an error of
 * sf_pg_prepare / sf_http_route. */
int qry_service_new(qry_service_t **out, uv_loop_t *loop,
                    sf_http_server_t *http, sf_pg_t *pg,
                    const qry_service_opts_t *opts, sf_log_t *log);

/* Fires once when a shut-down service has no request of its own left in
 * flight. */
typedef void (*qry_drained_cb)(void *ud);

/* Stops taking work: later requests are answered 503 unavailable, position
 * waits are canceled (their requests get 503), change streams are ended,
 * statements already sent run to their answer. drained fires once nothing of the service is pending,
 * possibly before this function returns when nothing was; after it the
 * service no longer uses the pool, so it may be closed. Calling again does
 * nothing. */
void qry_service_shutdown(qry_service_t *s, qry_drained_cb drained, void *ud);

/* Frees the service once the loop has no more of its callbacks pending. */
void qry_service_destroy(qry_service_t *s);

#endif
