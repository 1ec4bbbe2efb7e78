/* Unit tests of common/src/upstream.c: a real sf_http server on 127.0.0.1
 * (port 0) and the client run in the same uv loop on the test thread. Each
 * test sends requests, runs the loop until they are answered, asserts on
 * what the callbacks recorded, and its teardown closes client and server
 * and checks that the loop has no handle left (ASan checks the memory). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/http.h"
#include "sf/upstream.h"

#include "../curl_fixture.h"

#define MAX_BODY 4096
#define NRES 64

typedef struct result {
  bool fired;
  int calls;
  int err;
  int status;
  char content_type[64];
  char retry_after[16];
  char replayed[16];
  char body[MAX_BODY + 1];
  size_t body_len;
} result_t;

typedef struct fixture {
  uv_loop_t loop;
  sf_http_server_t *srv;
  sf_upstream_t *up;
  int port;
  char url[128];
  result_t res[NRES];
  int answered;           /* requests the server answered */
  int slow_closed;        /* slow requests whose peer left */
  sf_http_req_t *slow[4]; /* held slow requests */
  int n_slow;
  bool up_done, srv_done;
  /* Wakes UV_RUN_ONCE every few ms, so that a step whose only event was a
   * timer does not block forever in the poll for I/O. */
  uv_timer_t tick;
} fixture_t;

/* ---- the server ---- */

/* Answers {"method", "path", "test", "body"} and some headers. */
static void echo_cb(sf_http_req_t *req, void *ud) {
  fixture_t *f = ud;
  size_t len = 0;
  const char *body = sf_http_req_body(req, &len);
  const char *test = sf_http_req_header(req, "X-Test");
  json_t *j = json_pack("{s:s, s:s, s:s?, s:s%}", "method",
                        sf_http_req_method(req), "path", sf_http_req_path(req),
                        "test", test, "body", body ? body : "", len);
  sf_http_add_header(req, "Retry-After", "7");
  sf_http_add_header(req, "Idempotent-Replayed", "true");
  f->answered++;
  sf_http_respond_json(req, 201, j);
}

static void slow_closed_cb(sf_http_req_t *req, void *ud) {
  fixture_t *f = ud;
  f->slow_closed++;
  sf_http_respond(req, 200, "text/plain", "late", 4); /* dropped */
}

/* Never answers until the peer goes away. */
static void slow_cb(sf_http_req_t *req, void *ud) {
  fixture_t *f = ud;
  if (f->n_slow < 4)
    f->slow[f->n_slow++] = req;
  sf_http_req_on_close(req, slow_closed_cb, f);
}

static void big_cb(sf_http_req_t *req, void *ud) {
  (void)ud;
  size_t n = MAX_BODY * 2;
  char *b = malloc(n);
  assert_non_null(b);
  memset(b, 'x', n);
  sf_http_respond(req, 200, "text/plain", b, n);
  free(b);
}

/* 307 to /echo on the same server (an instance naming the owner). */
static void redirect_cb(sf_http_req_t *req, void *ud) {
  fixture_t *f = ud;
  char where[160];
  snprintf(where, sizeof(where), "%s/echo", f->url);
  sf_http_add_header(req, "Location", where);
  sf_http_respond(req, 307, "text/plain", "elsewhere", 9);
}

static void empty_cb(sf_http_req_t *req, void *ud) {
  (void)ud;
  sf_http_respond(req, 204, NULL, NULL, 0);
}

static void tick_cb(uv_timer_t *t) { (void)t; }

static int setup_limits(void **state, const sf_http_limits_t *limits) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(sf_http_server_new(&f->srv, &f->loop, limits, NULL), 0);
  const char *methods[] = {"GET", "POST", "PUT", "DELETE"};
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(sf_http_route(f->srv, methods[i], "/echo", echo_cb, f),
                     0);
  assert_int_equal(sf_http_route(f->srv, "GET", "/slow", slow_cb, f), 0);
  assert_int_equal(sf_http_route(f->srv, "POST", "/redirect", redirect_cb, f),
                   0);
  assert_int_equal(sf_http_route(f->srv, "GET", "/big", big_cb, f), 0);
  assert_int_equal(sf_http_route(f->srv, "DELETE", "/empty", empty_cb, f), 0);
  assert_int_equal(sf_http_listen(f->srv, "127.0.0.1", 0), 0);
  f->port = sf_http_bound_port(f->srv);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->port);
  assert_int_equal(sf_upstream_new(&f->up, &f->loop, MAX_BODY, NULL), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
  assert_int_equal(uv_timer_start(&f->tick, tick_cb, 5, 5), 0);
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_limits(state, NULL); }

/* A server that takes one connection at a time (a second one is accepted
 * and closed at once). */
static int setup_one_connection(void **state) {
  sf_http_limits_t l;
  sf_http_limits_default(&l);
  l.max_connections = 1;
  return setup_limits(state, &l);
}

static void up_done_cb(void *ud) { ((fixture_t *)ud)->up_done = true; }
static void srv_done_cb(void *ud) { ((fixture_t *)ud)->srv_done = true; }

static void walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "handle left open: %s\n", uv_handle_type_name(h->type));
}

static int teardown(void **state) {
  fixture_t *f = *state;
  uv_close((uv_handle_t *)&f->tick, NULL);
  if (f->up)
    sf_upstream_close(f->up, up_done_cb, f);
  sf_http_server_close(f->srv, srv_done_cb, f);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_true(f->srv_done);
  if (f->up) {
    assert_true(f->up_done);
    sf_upstream_destroy(f->up);
  }
  sf_http_server_destroy(f->srv);
  uv_walk(&f->loop, walk_cb, NULL);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

/* ---- the client ---- */

static void record_cb(const sf_upstream_res_t *res, void *ud) {
  result_t *r = ud;
  r->fired = true;
  r->calls++;
  r->err = res->err;
  r->status = res->status;
  snprintf(r->content_type, sizeof(r->content_type), "%s",
           res->content_type ? res->content_type : "");
  snprintf(r->retry_after, sizeof(r->retry_after), "%s",
           res->retry_after ? res->retry_after : "");
  snprintf(r->replayed, sizeof(r->replayed), "%s",
           res->idempotent_replayed ? res->idempotent_replayed : "");
  assert_true(res->body_len <= MAX_BODY);
  memcpy(r->body, res->body, res->body_len);
  r->body[res->body_len] = '\0';
  r->body_len = res->body_len;
}

static int send_to(fixture_t *f, const char *method, const char *path,
                   const char *body, long timeout_ms, result_t *r,
                   sf_upstream_req_t **out) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", f->url, path);
  const char *headers[] = {"X-Test: hello", "Content-Type: application/json"};
  sf_upstream_call_t call = {.method = method,
                             .url = url,
                             .headers = headers,
                             .n_headers = 2,
                             .body = body,
                             .body_len = body ? strlen(body) : 0,
                             .timeout_ms = timeout_ms};
  return sf_upstream_send(f->up, &call, record_cb, r, out);
}

/* Runs the loop until every one of the first n results fired. */
static void run_until(fixture_t *f, int n) {
  for (int guard = 0; guard < 100000; guard++) {
    bool all = true;
    for (int i = 0; i < n; i++)
      all = all && f->res[i].fired;
    if (all)
      return;
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  fail_msg("requests did not finish");
}

static json_t *body_json(const result_t *r) {
  json_error_t e;
  json_t *j = json_loads(r->body, 0, &e);
  assert_non_null(j);
  return j;
}

static void test_get(void **state) {
  fixture_t *f = *state;
  assert_int_equal(send_to(f, "GET", "/echo", NULL, 5000, &f->res[0], NULL),
                   0);
  assert_false(f->res[0].fired); /* never inside send */
  run_until(f, 1);
  result_t *r = &f->res[0];
  assert_int_equal(r->err, 0);
  assert_int_equal(r->status, 201);
  assert_string_equal(r->content_type, "application/json");
  assert_string_equal(r->retry_after, "7");
  assert_string_equal(r->replayed, "true");
  json_t *j = body_json(r);
  assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
  assert_string_equal(json_string_value(json_object_get(j, "test")), "hello");
  assert_string_equal(json_string_value(json_object_get(j, "body")), "");
  json_decref(j);
  assert_int_equal(sf_upstream_pending(f->up), 0);
}

static void test_post_put_delete_with_body(void **state) {
  fixture_t *f = *state;
  /* A body over 1 KiB (no Expect: 100-continue wait). */
  char big[2048];
  memset(big, 'a', sizeof(big) - 1);
  big[0] = '"';
  big[sizeof(big) - 2] = '"';
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(send_to(f, "POST", "/echo", "{\"a\":1}", 5000, &f->res[0],
                           NULL),
                   0);
  assert_int_equal(send_to(f, "PUT", "/echo", big, 5000, &f->res[1], NULL), 0);
  assert_int_equal(send_to(f, "DELETE", "/echo", NULL, 5000, &f->res[2], NULL),
                   0);
  assert_int_equal(
      send_to(f, "DELETE", "/empty", NULL, 5000, &f->res[3], NULL), 0);
  run_until(f, 4);
  const char *want_method[] = {"POST", "PUT", "DELETE"};
  const char *want_body[] = {"{\"a\":1}", big, ""};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(f->res[i].err, 0);
    assert_int_equal(f->res[i].status, 201);
    json_t *j = body_json(&f->res[i]);
    assert_string_equal(json_string_value(json_object_get(j, "method")),
                        want_method[i]);
    assert_string_equal(json_string_value(json_object_get(j, "body")),
                        want_body[i]);
    json_decref(j);
  }
  assert_int_equal(f->res[3].err, 0);
  assert_int_equal(f->res[3].status, 204);
  assert_int_equal(f->res[3].body_len, 0);
  assert_string_equal(f->res[3].content_type, "");
}

/* Sends the next request from inside a callback (the client must allow
 * it), then many at once. */
static void chain_cb(const sf_upstream_res_t *res, void *ud) {
  fixture_t *f = ud;
  record_cb(res, &f->res[0]);
  assert_int_equal(send_to(f, "GET", "/echo", NULL, 5000, &f->res[1], NULL),
                   0);
}

static void test_send_from_callback(void **state) {
  fixture_t *f = *state;
  char url[256];
  snprintf(url, sizeof(url), "%s/echo", f->url);
  sf_upstream_call_t call = {.method = "GET", .url = url, .timeout_ms = 5000};
  assert_int_equal(sf_upstream_send(f->up, &call, chain_cb, f, NULL), 0);
  run_until(f, 2);
  assert_int_equal(f->res[0].status, 201);
  assert_int_equal(f->res[1].status, 201);
  assert_int_equal(f->res[1].calls, 1);
}

static void test_many_concurrent(void **state) {
  fixture_t *f = *state;
  for (int i = 0; i < NRES; i++) {
    char body[32];
    snprintf(body, sizeof(body), "{\"i\":%d}", i);
    assert_int_equal(
        send_to(f, "POST", "/echo", body, 10000, &f->res[i], NULL), 0);
  }
  assert_int_equal(sf_upstream_pending(f->up), NRES);
  run_until(f, NRES);
  for (int i = 0; i < NRES; i++) {
    char want[32];
    snprintf(want, sizeof(want), "{\"i\":%d}", i);
    assert_int_equal(f->res[i].err, 0);
    assert_int_equal(f->res[i].status, 201);
    assert_int_equal(f->res[i].calls, 1);
    json_t *j = body_json(&f->res[i]);
    assert_string_equal(json_string_value(json_object_get(j, "body")), want);
    json_decref(j);
  }
  assert_int_equal(f->answered, NRES);
  assert_int_equal(sf_upstream_pending(f->up), 0);
  /* A second round, over the kept-alive connections, still works. */
  memset(f->res, 0, sizeof(f->res));
  for (int i = 0; i < 8; i++)
    assert_int_equal(send_to(f, "GET", "/echo", NULL, 5000, &f->res[i], NULL),
                     0);
  run_until(f, 8);
  for (int i = 0; i < 8; i++)
    assert_int_equal(f->res[i].status, 201);
}

/* Requests one after the other go over the one kept-alive connection:
 * with a server that allows a single connection, a client that opened a
 * new one per request (leaving the idle one open) would be refused. */
static void test_keep_alive(void **state) {
  fixture_t *f = *state;
  for (int i = 0; i < 10; i++) {
    assert_int_equal(send_to(f, i % 2 ? "POST" : "GET", "/echo",
                             i % 2 ? "{}" : NULL, 5000, &f->res[i], NULL),
                     0);
    run_until(f, i + 1);
    assert_int_equal(f->res[i].err, 0);
    assert_int_equal(f->res[i].status, 201);
  }
  assert_int_equal(f->answered, 10);
}

/* A 307 is followed only when asked, with method, body and headers. */
static void test_redirect(void **state) {
  fixture_t *f = *state;
  char url[256];
  snprintf(url, sizeof(url), "%s/redirect", f->url);
  const char *headers[] = {"X-Test: carried", "Authorization: Bearer t"};
  sf_upstream_call_t call = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .n_headers = 2,
                             .body = "{\"k\":2}",
                             .body_len = 7,
                             .timeout_ms = 5000};
  assert_int_equal(sf_upstream_send(f->up, &call, record_cb, &f->res[0], NULL),
                   0);
  call.max_redirects = 1;
  assert_int_equal(sf_upstream_send(f->up, &call, record_cb, &f->res[1], NULL),
                   0);
  run_until(f, 2);
  assert_int_equal(f->res[0].status, 307);
  assert_string_equal(f->res[0].body, "elsewhere");
  assert_int_equal(f->res[1].status, 201);
  json_t *j = body_json(&f->res[1]);
  assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
  assert_string_equal(json_string_value(json_object_get(j, "body")),
                      "{\"k\":2}");
  assert_string_equal(json_string_value(json_object_get(j, "test")),
                      "carried");
  json_decref(j);
}

static void test_connection_refused(void **state) {
  fixture_t *f = *state;
  /* A socket bound but not listening: connecting to it is refused. */
  uv_tcp_t tcp;
  assert_int_equal(uv_tcp_init(&f->loop, &tcp), 0);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&tcp, (const struct sockaddr *)&a, 0), 0);
  struct sockaddr_storage name;
  int len = sizeof(name);
  assert_int_equal(uv_tcp_getsockname(&tcp, (struct sockaddr *)&name, &len),
                   0);
  int port = ntohs(((struct sockaddr_in *)&name)->sin_port);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", port);
  sf_upstream_call_t call = {.method = "GET", .url = url, .timeout_ms = 5000};
  assert_int_equal(sf_upstream_send(f->up, &call, record_cb, &f->res[0], NULL),
                   0);
  run_until(f, 1);
  assert_int_equal(f->res[0].err, SF_EUNAVAILABLE);
  assert_int_equal(f->res[0].status, 0);
  assert_int_equal(f->res[0].body_len, 0);
  uv_close((uv_handle_t *)&tcp, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* tcp lives on this stack frame */
}

static void test_timeout(void **state) {
  fixture_t *f = *state;
  assert_int_equal(send_to(f, "GET", "/slow", NULL, 200, &f->res[0], NULL), 0);
  uint64_t t0 = uv_now(&f->loop);
  run_until(f, 1);
  uint64_t took = uv_now(&f->loop) - t0;
  assert_int_equal(f->res[0].err, SF_ETIMEOUT);
  assert_true(took >= 150 && took < 3000);
  /* The server sees the client go away. */
  for (int i = 0; i < 1000 && f->slow_closed == 0; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->slow_closed, 1);
}

static void test_cancel(void **state) {
  fixture_t *f = *state;
  sf_upstream_req_t *req = NULL;
  assert_int_equal(send_to(f, "GET", "/slow", NULL, 5000, &f->res[0], &req),
                   0);
  assert_non_null(req);
  for (int i = 0; i < 1000 && f->n_slow == 0; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->n_slow, 1);
  sf_upstream_cancel(req);
  assert_int_equal(sf_upstream_pending(f->up), 0);
  for (int i = 0; i < 1000 && f->slow_closed == 0; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->slow_closed, 1);
  assert_false(f->res[0].fired);
  /* The client still works after a cancel. */
  assert_int_equal(send_to(f, "GET", "/echo", NULL, 5000, &f->res[1], NULL),
                   0);
  for (int i = 0; i < 100000 && !f->res[1].fired; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->res[1].status, 201);
  assert_false(f->res[0].fired);
}

static void test_close_with_pending(void **state) {
  fixture_t *f = *state;
  assert_int_equal(send_to(f, "GET", "/slow", NULL, 5000, &f->res[0], NULL), 0);
  assert_int_equal(send_to(f, "GET", "/slow", NULL, 5000, &f->res[1], NULL), 0);
  for (int i = 0; i < 1000 && f->n_slow < 2; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->n_slow, 2);
  sf_upstream_close(f->up, up_done_cb, f);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(f->res[i].calls, 1);
    assert_int_equal(f->res[i].err, SF_ECANCELED);
  }
  /* Refused once closing. */
  assert_int_equal(send_to(f, "GET", "/echo", NULL, 5000, &f->res[2], NULL),
                   SF_ESTATE);
  for (int i = 0; i < 1000 && !f->up_done; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(f->up_done);
  sf_upstream_destroy(f->up);
  f->up = NULL;
  for (int i = 0; i < 1000 && f->slow_closed < 2; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->slow_closed, 2);
  assert_false(f->res[2].fired);
}

static void test_oversized_answer(void **state) {
  fixture_t *f = *state;
  assert_int_equal(send_to(f, "GET", "/big", NULL, 5000, &f->res[0], NULL), 0);
  run_until(f, 1);
  assert_int_equal(f->res[0].err, SF_ETOOBIG);
  assert_int_equal(f->res[0].body_len, 0);
}

static void test_bad_arguments(void **state) {
  fixture_t *f = *state;
  result_t r = {0};
  sf_upstream_call_t call = {.method = "GET", .url = f->url, .timeout_ms = 0};
  assert_int_equal(sf_upstream_send(f->up, &call, record_cb, &r, NULL),
                   SF_EINVAL);
  call.timeout_ms = 1000;
  call.method = "get me";
  assert_int_equal(sf_upstream_send(f->up, &call, record_cb, &r, NULL),
                   SF_EINVAL);
  call.method = "GET";
  call.url = NULL;
  assert_int_equal(sf_upstream_send(f->up, &call, record_cb, &r, NULL),
                   SF_EINVAL);
  /* A scheme other than http(s) fails through the callback, not a crash. */
  call.url = "file:///etc/passwd";
  assert_int_equal(sf_upstream_send(f->up, &call, record_cb, &f->res[0], NULL),
                   0);
  run_until(f, 1);
  assert_int_equal(f->res[0].err, SF_EIO);
  assert_false(r.fired);
  sf_upstream_t *u = NULL;
  assert_int_equal(sf_upstream_new(&u, &f->loop, 0, NULL), SF_EINVAL);
  assert_null(u);
}

/* libcurl is set up once per process before the module is used, as
 * sf_service_run does in the services (sf/upstream.h). */
int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_post_put_delete_with_body, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_send_from_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keep_alive, setup_one_connection,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_redirect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_with_pending, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_oversized_answer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
  };
  return cmocka_run_group_tests(tests, curl_group_setup, curl_group_teardown);
}
