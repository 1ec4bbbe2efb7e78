/* sf-http201: the HTTP limit of the machine. The services' own HTTP stack
 * (sf_http: libuv + llhttp, router, per-route metrics) on one loop thread,
 * answering every write route of the command API with a fixed 201 JSON body
 * of the size of a real answer, and every read route with a fixed 200. No
 * Kafka, no state, no JSON parsing of the request: what is left is the cost
 * of HTTP itself, measured with the same client and payloads as the real
 * service.
 *
 *   sf-http201 [--listen 127.0.0.1:18201]
 *
 * Stops on SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sf/config.h"
#include "sf/err.h"
#include "sf/http.h"
#include "sf/log.h"

/* The shape and size of POST /v1/stores/{id}/transactions' answer. */
static const char k_created[] =
    "{\"transaction_id\":\"0190a4c2-7e1f-7000-8000-000000000001\","
    "\"store_id\":\"0190a4c2-7e1f-7000-8000-000000000002\","
    "\"product_id\":\"0190a4c2-7e1f-7000-8000-000000000003\","
    "\"order_id\":\"0190a4c2-7e1f-7000-8000-000000000004\","
    "\"type\":\"sale\",\"quantity\":1,\"delta\":-1,\"on_hand\":999999,"
    "\"reserved\":0,\"available\":999999,\"version\":2,"
    "\"position\":\"stock-3-1234\",\"created_at\":\"2026-01-01T00:00:00.000000Z\"}";

static const char k_row[] =
    "{\"store_id\":\"0190a4c2-7e1f-7000-8000-000000000002\","
    "\"product_id\":\"0190a4c2-7e1f-7000-8000-000000000003\",\"sku\":\"BENCH-1\","
    "\"name\":\"bench product 1\",\"on_hand\":999999,\"reserved\":0,"
    "\"available\":999999,\"version\":2,"
    "\"updated_at\":\"2026-01-01T00:00:00.000000Z\"}";

typedef struct app {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  sf_http_server_t *http;
  sf_log_t *log;
  bool stopping;
} app_t;

static void created_cb(sf_http_req_t *req, void *ud) {
  (void)ud;
  sf_http_respond(req, 201, "application/json", k_created,
                  sizeof(k_created) - 1);
}

static void row_cb(sf_http_req_t *req, void *ud) {
  (void)ud;
  sf_http_respond(req, 200, "application/json", k_row, sizeof(k_row) - 1);
}

static void closed_cb(void *ud) {
  app_t *a = ud;
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
}

static void signal_cb(uv_signal_t *h, int signum) {
  app_t *a = h->data;
  (void)signum;
  if (a->stopping)
    return;
  a->stopping = true;
  sf_http_server_close(a->http, closed_cb, a);
}

int main(int argc, char **argv) {
  const char *listen = "127.0.0.1:18201";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
      listen = argv[++i];
    } else {
      fprintf(stderr, "usage: sf-http201 [--listen HOST:PORT]\n");
      return 2;
    }
  }
  char host[256];
  int port;
  if (sf_config_split_hostport(listen, host, sizeof(host), &port)) {
    fprintf(stderr, "sf-http201: bad listen address %s\n", listen);
    return 2;
  }
  int status = 1;
  app_t a = {0};
  if (sf_log_new(&a.log, "http201", SF_LOG_WARN, stderr)) {
    fprintf(stderr, "sf-http201: cannot create the logger\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  if (uv_loop_init(&a.loop)) {
    fprintf(stderr, "sf-http201: uv_loop_init failed\n");
    goto fail_loop;
  }
  if (sf_http_server_new(&a.http, &a.loop, NULL, a.log)) {
    fprintf(stderr, "sf-http201: cannot create the server\n");
    goto fail_server;
  }
  static const char *const writes[] = {
      "/v1/stores/{store_id}/transactions", "/v1/transfers",
      "/v1/stores/{store_id}/orders", "/v1/orders/{id}/fulfil",
      "/v1/orders/{id}/cancel", "/v1/stores", "/v1/products", "/v1/batches"};
  static const char *const reads[] = {
      "/v1/stores/{store_id}/inventory",
      "/v1/stores/{store_id}/inventory/{product_id}", "/v1/products/{id}",
      "/healthz", "/readyz"};
  int rc = 0;
  for (size_t i = 0; !rc && i < sizeof(writes) / sizeof(writes[0]); i++)
    rc = sf_http_route(a.http, "POST", writes[i], created_cb, &a);
  for (size_t i = 0; !rc && i < sizeof(reads) / sizeof(reads[0]); i++)
    rc = sf_http_route(a.http, "GET", reads[i], row_cb, &a);
  if (rc) {
    fprintf(stderr, "sf-http201: route: %s\n", sf_strerror(rc));
    sf_http_server_destroy(a.http);
    goto fail_server;
  }
  uv_signal_init(&a.loop, &a.sigint);
  uv_signal_init(&a.loop, &a.sigterm);
  a.sigint.data = a.sigterm.data = &a;
  uv_signal_start(&a.sigint, signal_cb, SIGINT);
  uv_signal_start(&a.sigterm, signal_cb, SIGTERM);
  if (sf_http_listen(a.http, host, port)) {
    fprintf(stderr, "sf-http201: cannot listen on %s\n", listen);
    a.stopping = true;
    sf_http_server_close(a.http, closed_cb, &a);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    goto fail_run;
  }
  fprintf(stderr, "sf-http201: listening on %s:%d\n", host,
          sf_http_bound_port(a.http));
  uv_run(&a.loop, UV_RUN_DEFAULT);
  status = 0;
fail_run:
  sf_http_server_destroy(a.http);
fail_server:
  if (uv_loop_close(&a.loop))
    fprintf(stderr, "sf-http201: loop closed with open handles\n");
fail_loop:
  sf_log_destroy(a.log);
  return status;
}
