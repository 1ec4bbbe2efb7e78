/* proj_api: /healthz, /readyz and /metrics (see proj_api.h). */
#include "proj_api.h"

#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/metrics.h"

#define METRICS_PREFIX "stockflow_projector"

static void healthz_cb(sf_http_req_t *req, void *ud) {
  (void)ud;
  sf_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void readyz_cb(sf_http_req_t *req, void *ud) {
  proj_api_t *api = ud;
  const char *missing = NULL;
  if (proj_status_ready(api->status, &missing))
    sf_http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
  else
    sf_http_respond_problem(req, 503, "unavailable", missing, NULL);
}

static void metrics_cb(sf_http_req_t *req, void *ud) {
  proj_api_t *api = ud;
  char *http = sf_http_server_metrics(api->server, METRICS_PREFIX);
  char *own = proj_status_metrics(api->status, METRICS_PREFIX);
  sf_metrics_t m;
  sf_metrics_init(&m, METRICS_PREFIX);
  sf_metrics_raw(&m, http ? http : "");
  sf_metrics_raw(&m, own ? own : "");
  size_t len = 0;
  char *body = http && own ? sf_metrics_take(&m, &len) : NULL;
  if (!body)
    sf_metrics_release(&m);
  if (body)
    sf_http_respond(req, 200, SF_METRICS_CONTENT_TYPE, body, len);
  else
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
  free(body);
  free(own);
  free(http);
}

int proj_api_register(proj_api_t *api) {
  int rc = sf_http_route(api->server, "GET", "/healthz", healthz_cb, api);
  if (!rc)
    rc = sf_http_route(api->server, "GET", "/readyz", readyz_cb, api);
  if (!rc)
    rc = sf_http_route(api->server, "GET", "/metrics", metrics_cb, api);
  return rc;
}
