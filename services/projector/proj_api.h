/* proj_api: the projector's HTTP endpoints.
 *
 * GET /healthz (process alive), GET /readyz (200 when PostgreSQL is
 * connected and the consumer holds its assignment, else 503 unavailable
 * naming what is missing) and GET /metrics (the server's request metrics
 * plus the projector's own, Prometheus text). Handlers run on the loop
 * thread and only read the thread-safe proj_status_t. No auth: operations
 * endpoints are public by the API contract. */
#ifndef PROJ_API_H
#define PROJ_API_H

#include "proj_status.h"
#include "sf/http.h"

/* The handlers' context: both borrowed, must outlive the server. */
typedef struct proj_api {
  sf_http_server_t *server;
  proj_status_t *status;
} proj_api_t;

/* Adds the three routes to api->server. Returns 0 or the sf_http_route
 * error. */
int proj_api_register(proj_api_t *api);

#endif
