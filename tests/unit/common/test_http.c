/* Unit tests of common/src/http.c and http_router.c: a real server on
 * 127.0.0.1 (port 0) runs in a uv loop on the test thread while a client
 * thread talks to it over blocking sockets. The client thread only records
 * what it saw (cmocka asserts must stay on the test thread); each test then
 * asserts on the records, and its teardown checks that the loop closes with
 * no handle left open (ASan checks the memory). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sf/err.h"
#include "sf/http.h"

#define NREC 8
#define RECSZ 16384

typedef struct fixture fixture_t;
typedef void (*client_fn)(fixture_t *f);

struct fixture {
  uv_loop_t loop;
  sf_http_server_t *srv;
  int port;
  uv_async_t stop;
  uv_timer_t timer;
  uv_thread_t thread;
  client_fn client;
  bool done;
  /* Server side, touched on the loop thread only. */
  sf_http_req_t *pending; /* a deferred request awaiting the timer */
  int closes;             /* on_close callbacks fired */
  int answered_canceled;  /* deferred answers given after a cancel */
  int stream_write_rc;    /* stream_write after the peer left */
  bool answer_in_on_close;
  int shared_done; /* sf_http_stream_write_shared done callbacks */
  int ws_closes;   /* on_close of upgraded requests */
  int freed[2];    /* sf_http_req_on_free callbacks, in order of firing */
  int n_freed;
  char *big; /* a large shared buffer (owned by the test) */
  /* Client side records, read after the thread is joined. */
  char rec[NREC][RECSZ];
  long ms[NREC];
  int flag[NREC];
};

/* ---- client helpers (client thread) ---- */

typedef struct cli {
  int fd;
  char buf[65536];
  size_t len;
} cli_t;

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int cli_connect(cli_t *c, int port) {
  c->len = 0;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0)
    return -1;
  struct timeval tv = {3, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return connect(c->fd, (struct sockaddr *)&a, sizeof(a));
}

static void cli_sendn(cli_t *c, const char *s, size_t n) {
  while (n) {
    ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);
    if (k <= 0)
      return;
    s += k;
    n -= (size_t)k;
  }
}

static void cli_send(cli_t *c, const char *s) { cli_sendn(c, s, strlen(s)); }

static char *find_bytes(char *hay, size_t n, const char *needle);

/* One response into out (NUL-terminated): headers, then Content-Length
 * bytes of body, or everything up to EOF without Content-Length. Returns its
 * length or -1. */
static long cli_response(cli_t *c, char *out, size_t cap) {
  for (;;) {
    char *end = find_bytes(c->buf, c->len, "\r\n\r\n");
    if (end) {
      size_t head = (size_t)(end - c->buf) + 4;
      char *cl = find_bytes(c->buf, head, "Content-Length: ");
      if (cl) {
        size_t total = head + strtoul(cl + 16, NULL, 10);
        if (c->len >= total) {
          size_t n = total < cap - 1 ? total : cap - 1;
          memcpy(out, c->buf, n);
          out[n] = '\0';
          memmove(c->buf, c->buf + total, c->len - total);
          c->len -= total;
          return (long)n;
        }
      }
    }
    ssize_t k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (k <= 0) {
      if (end || c->len) { /* no Content-Length: up to EOF */
        size_t n = c->len < cap - 1 ? c->len : cap - 1;
        memcpy(out, c->buf, n);
        out[n] = '\0';
        c->len = 0;
        return (long)n;
      }
      return -1;
    }
    c->len += (size_t)k;
  }
}

/* True when the server closed the connection (EOF or reset) within 3 s. */
static bool cli_closed(cli_t *c) {
  char tmp[4096];
  for (;;) {
    ssize_t k = recv(c->fd, tmp, sizeof(tmp), 0);
    if (k == 0 || (k < 0 && errno == ECONNRESET))
      return true;
    if (k < 0)
      return false; /* timeout */
  }
}

static void cli_end(cli_t *c) { close(c->fd); }

static char *find_bytes(char *hay, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(hay + i, needle, k) == 0)
      return hay + i;
  return NULL;
}

/* ---- server side (loop thread) ---- */

static void h_items(sf_http_req_t *r, void *ud) {
  (void)ud;
  const char *flag = sf_http_req_query(r, "flag");
  json_t *o = json_pack(
      "{s:s, s:s, s:s?, s:s?, s:s?, s:s, s:s}", "store",
      sf_http_req_param(r, "store_id"), "item", sf_http_req_param(r, "item"),
      "q", sf_http_req_query(r, "q"), "x", sf_http_req_query(r, "x"), "flag",
      flag, "path", sf_http_req_path(r), "route", sf_http_req_route(r));
  sf_http_respond_json(r, 200, o);
}

static void h_echo(sf_http_req_t *r, void *ud) {
  (void)ud;
  size_t len;
  const char *body = sf_http_req_body(r, &len);
  char n[32];
  snprintf(n, sizeof(n), "%zu", len);
  assert_int_equal(sf_http_add_header(r, "X-Len", n), 0);
  assert_int_equal(sf_http_add_header(r, "X-Bad", "a\r\nInjected: 1"),
                   SF_EINVAL);
  char *copy = sf_http_req_alloc(r, len + 1);
  assert_non_null(copy);
  memcpy(copy, body, len + 1);
  sf_http_respond(r, 201, sf_http_req_is_json(r) ? "application/json" : "text/plain",
                  copy, len);
}

static void deferred_cb(uv_timer_t *t) {
  fixture_t *f = t->data;
  sf_http_req_t *r = f->pending;
  f->pending = NULL;
  if (!r)
    return;
  if (sf_http_req_canceled(r))
    f->answered_canceled++;
  sf_http_respond(r, 200, "text/plain", "late", 4);
}

static void on_close(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  f->closes++;
  assert_true(sf_http_req_canceled(r));
  if (f->answer_in_on_close && f->pending == r) {
    f->pending = NULL;
    sf_http_respond(r, 200, "text/plain", "dropped", 7);
  }
}

static void on_freed_1(void *ud) {
  fixture_t *f = ud;
  if (f->n_freed < 2)
    f->freed[f->n_freed] = 1;
  f->n_freed++;
}

static void on_freed_2(void *ud) {
  fixture_t *f = ud;
  if (f->n_freed < 2)
    f->freed[f->n_freed] = 2;
  f->n_freed++;
}

/* /deferred answers after 50 ms, /hang after 300 ms. Both run two
 * sf_http_req_on_free callbacks when the request goes. */
static void h_deferred(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  assert_null(f->pending);
  assert_int_equal(sf_http_req_on_free(r, NULL, f), SF_EINVAL);
  assert_int_equal(sf_http_req_on_free(r, on_freed_1, f), 0);
  assert_int_equal(sf_http_req_on_free(r, on_freed_2, f), 0);
  f->pending = r;
  sf_http_req_on_close(r, on_close, f);
  uv_timer_start(&f->timer, deferred_cb,
                 strcmp(sf_http_req_path(r), "/hang") == 0 ? 300 : 50, 0);
}

static void stream_close_cb(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  f->closes++;
  f->stream_write_rc = sf_http_stream_write(r, "data: x\n\n", 9);
  sf_http_stream_end(r);
}

static void h_stream(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  assert_int_equal(sf_http_stream_start(r, 200, "text/event-stream"), 0);
  assert_int_equal(sf_http_stream_write(r, "data: 1\n\n", 9), 0);
  assert_int_equal(sf_http_stream_write(r, "data: 2\n\n", 9), 0);
  if (sf_http_req_query(r, "end")) {
    sf_http_stream_end(r);
    return;
  }
  sf_http_req_on_close(r, stream_close_cb, f);
}

/* /upgrade: switches to the "echo" protocol; every byte is echoed back,
 * and the text "bye" ends the stream. */
static void echo_data_cb(sf_http_req_t *r, const char *data, size_t len,
                         void *ud) {
  (void)ud;
  assert_int_equal(sf_http_stream_write(r, data, len), 0);
  if (len >= 3 && memcmp(data + len - 3, "bye", 3) == 0)
    sf_http_stream_end(r);
}

static void upgrade_close_cb(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  f->ws_closes++;
  sf_http_stream_end(r);
}

static void h_upgrade(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  assert_int_equal(sf_http_upgrade(r, "bad proto", echo_data_cb, f),
                   SF_EINVAL);
  assert_int_equal(sf_http_upgrade(r, "echo", NULL, f), SF_EINVAL);
  assert_int_equal(sf_http_add_header(r, "X-Proto", "echo/1"), 0);
  assert_int_equal(sf_http_upgrade(r, "echo", echo_data_cb, f), 0);
  assert_int_equal(sf_http_upgrade(r, "echo", echo_data_cb, f), SF_ESTATE);
  sf_http_req_on_close(r, upgrade_close_cb, f);
}

static void shared_done_cb(void *ud) {
  fixture_t *f = ud;
  f->shared_done++;
}

/* /shared: two shared writes of one static buffer, then the end; with
 * ?big=1, one 8 MiB shared write to a peer that never reads. */
static void shared_close_cb(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  f->closes++;
  sf_http_stream_end(r);
}

static void h_shared(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  static const char ev[] = "id: 1\nevent: change\ndata: {}\n\n";
  assert_int_equal(
      sf_http_stream_write_shared(r, ev, sizeof(ev) - 1, shared_done_cb, f),
      SF_ESTATE);
  assert_int_equal(sf_http_stream_start(r, 200, "text/event-stream"), 0);
  assert_int_equal(sf_http_stream_write_shared(r, ev, 0, shared_done_cb, f),
                   SF_EINVAL);
  int before = f->shared_done;
  if (sf_http_req_query(r, "big")) {
    assert_int_equal(sf_http_stream_write_shared(r, f->big, 8u << 20,
                                                 shared_done_cb, f),
                     0);
    assert_true(sf_http_stream_pending(r) > 0);
    assert_int_equal(f->shared_done, before); /* never inside the call */
    sf_http_req_on_close(r, shared_close_cb, f);
    return;
  }
  for (int i = 0; i < 2; i++)
    assert_int_equal(sf_http_stream_write_shared(r, ev, sizeof(ev) - 1,
                                                 shared_done_cb, f),
                     0);
  assert_int_equal(f->shared_done, before);
  sf_http_stream_end(r);
}

static void h_problem(sf_http_req_t *r, void *ud) {
  (void)ud;
  sf_http_respond_problem(r, 422, "validation_failed", "quantity must be > 0",
                          json_pack("{s:[s]}", "fields", "quantity"));
}

static void h_metrics(sf_http_req_t *r, void *ud) {
  fixture_t *f = ud;
  char *text = sf_http_server_metrics(f->srv, "test");
  assert_non_null(text);
  sf_http_respond(r, 200, "text/plain; version=0.0.4", text, strlen(text));
  free(text);
}

static void done_cb(void *ud) {
  fixture_t *f = ud;
  f->done = true;
}

static void stop_cb(uv_async_t *a) {
  fixture_t *f = a->data;
  if (f->pending && !f->answer_in_on_close) {
    sf_http_req_t *r = f->pending;
    f->pending = NULL;
    sf_http_respond(r, 200, "text/plain", "bye", 3);
  }
  if (!f->answer_in_on_close)
    uv_close((uv_handle_t *)&f->timer, NULL);
  sf_http_server_close(f->srv, done_cb, f);
  uv_close((uv_handle_t *)&f->stop, NULL);
}

static void client_main(void *arg) {
  fixture_t *f = arg;
  f->client(f);
  uv_async_send(&f->stop);
}

/* Runs client against a fresh server with limits (NULL: defaults). */
static void run(fixture_t *f, const sf_http_limits_t *limits, client_fn fn) {
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(sf_http_server_new(&f->srv, &f->loop, limits, NULL), 0);
  sf_http_server_t *s = f->srv;
  assert_int_equal(sf_http_route(s, "GET", "/v1/stores/{store_id}/items/{item}",
                                 h_items, f),
                   0);
  assert_int_equal(sf_http_route(s, "POST", "/echo", h_echo, f), 0);
  assert_int_equal(sf_http_route(s, "PUT", "/echo", h_echo, f), 0);
  assert_int_equal(sf_http_route(s, "GET", "/deferred", h_deferred, f), 0);
  assert_int_equal(sf_http_route(s, "GET", "/hang", h_deferred, f), 0);
  assert_int_equal(sf_http_route(s, "GET", "/stream", h_stream, f), 0);
  assert_int_equal(sf_http_route(s, "GET", "/problem", h_problem, f), 0);
  assert_int_equal(sf_http_route(s, "GET", "/upgrade", h_upgrade, f), 0);
  assert_int_equal(sf_http_route(s, "GET", "/shared", h_shared, f), 0);
  assert_int_equal(sf_http_route(s, "GET", "/metrics", h_metrics, f), 0);
  /* PUT /echo takes bodies up to 200 bytes whatever max_body says */
  assert_int_equal(sf_http_body_limit(s, "PUT", "/echo", 200), 0);
  assert_int_equal(sf_http_body_limit(s, "PUT", "/x/{id}", 200), SF_EINVAL);
  assert_int_equal(sf_http_listen(s, "127.0.0.1", 0), 0);
  f->port = sf_http_bound_port(s);
  assert_true(f->port > 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->timer), 0);
  f->timer.data = f;
  assert_int_equal(uv_async_init(&f->loop, &f->stop, stop_cb), 0);
  f->stop.data = f;
  f->client = fn;
  assert_int_equal(uv_thread_create(&f->thread, client_main, f), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_thread_join(&f->thread), 0);
  if (f->answer_in_on_close && !uv_is_closing((uv_handle_t *)&f->timer)) {
    uv_close((uv_handle_t *)&f->timer, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
  }
  assert_true(f->done);
  sf_http_server_destroy(f->srv);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle closed */
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (!f)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  free(*state);
  return 0;
}

static bool has(const char *hay, const char *needle) {
  return strstr(hay, needle) != NULL;
}

/* ---- tests ---- */

static void c_params(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /v1/stores/s%201/items/a%2Fb?q=hello+world&x=%41%42&flag"
               " HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123.x_y\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ);
  cli_send(&c, "GET /v1/stores/s1/items/i1/ HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[1], RECSZ);
  cli_send(&c, "GET /v1/stores/a%00/items/b HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[2], RECSZ);
  cli_send(&c, "GET /v1/stores/a%zz/items/b HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[3], RECSZ);
  cli_send(&c, "GET /v1/stores//items/b?q=%4 HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[4], RECSZ);
  cli_send(&c, "GET /v1/stores/s/items/i?q=%4 HTTP/1.1\r\n"
               "X-Request-Id: has space\r\n\r\n");
  cli_response(&c, f->rec[5], RECSZ);
  cli_end(&c);
}

static void test_get_params_and_query(void **state) {
  fixture_t *f = *state;
  run(f, NULL, c_params);
  const char *r = f->rec[0];
  assert_true(has(r, "HTTP/1.1 200 OK\r\n"));
  assert_true(has(r, "Content-Type: application/json\r\n"));
  assert_true(has(r, "X-Request-Id: abc-123.x_y\r\n"));
  assert_false(has(r, "Connection: close"));
  assert_true(has(r, "\"store\":\"s 1\""));
  assert_true(has(r, "\"item\":\"a/b\""));
  assert_true(has(r, "\"q\":\"hello world\""));
  assert_true(has(r, "\"x\":\"AB\""));
  assert_true(has(r, "\"flag\":\"\""));
  assert_true(has(r, "\"path\":\"/v1/stores/s 1/items/a/b\""));
  assert_true(has(r, "\"route\":\"/v1/stores/{store_id}/items/{item}\""));
  assert_true(has(f->rec[1], "HTTP/1.1 404 Not Found\r\n"));   /* trailing / */
  assert_true(has(f->rec[2], "HTTP/1.1 400 Bad Request\r\n")); /* %00 */
  assert_true(has(f->rec[3], "HTTP/1.1 400 Bad Request\r\n")); /* %zz */
  assert_true(has(f->rec[4], "HTTP/1.1 400 Bad Request\r\n")); /* query %4 */
  assert_true(has(f->rec[5], "HTTP/1.1 400 Bad Request\r\n"));
  assert_false(has(f->rec[5], "has space"));        /* id was generated */
  assert_true(has(f->rec[5], "\"request_id\":\"")); /* and reported */
}

static void c_post(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  /* keep-alive: three requests on one connection, the last one chunked */
  cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Type: application/json; "
               "charset=utf-8\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}");
  cli_response(&c, f->rec[0], RECSZ);
  cli_send(&c, "PUT /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  cli_response(&c, f->rec[1], RECSZ);
  cli_send(&c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
  cli_response(&c, f->rec[2], RECSZ);
  /* HTTP/1.0 without keep-alive: answered, then closed */
  cli_send(&c, "POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi");
  cli_response(&c, f->rec[3], RECSZ);
  f->flag[0] = cli_closed(&c);
  cli_end(&c);
  /* HTTP/1.0 with keep-alive stays open */
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\n"
               "Content-Length: 1\r\n\r\nx");
  cli_response(&c, f->rec[4], RECSZ);
  cli_send(&c, "POST /echo HTTP/1.1\r\nConnection: close\r\n"
               "Content-Length: 1\r\n\r\ny");
  cli_response(&c, f->rec[5], RECSZ);
  f->flag[1] = cli_closed(&c);
  cli_end(&c);
}

static void test_post_keepalive(void **state) {
  fixture_t *f = *state;
  run(f, NULL, c_post);
  assert_true(has(f->rec[0], "HTTP/1.1 201 Created\r\n"));
  assert_true(has(f->rec[0], "Content-Type: application/json\r\n"));
  assert_true(has(f->rec[0], "Content-Length: 11\r\n"));
  assert_true(has(f->rec[0], "X-Len: 11\r\n"));
  assert_false(has(f->rec[0], "Injected"));
  assert_true(has(f->rec[0], "\r\n\r\n{\"a\":\"b c\"}"));
  assert_true(has(f->rec[1], "HTTP/1.1 201 Created\r\n"));
  assert_true(has(f->rec[1], "X-Len: 0\r\n"));
  assert_true(has(f->rec[2], "X-Len: 7\r\n"));
  assert_true(has(f->rec[2], "\r\n\r\nabcdefg"));
  assert_true(has(f->rec[3], "Connection: close\r\n"));
  assert_true(has(f->rec[3], "\r\n\r\nhi"));
  assert_true(f->flag[0]);
  assert_true(has(f->rec[4], "Connection: keep-alive\r\n"));
  assert_true(has(f->rec[4], "\r\n\r\nx"));
  assert_true(has(f->rec[5], "Connection: close\r\n"));
  assert_true(has(f->rec[5], "\r\n\r\ny"));
  assert_true(f->flag[1]);
}

static void c_pipeline(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  /* The first answer is deferred 50 ms; the others must wait for it. */
  cli_send(&c, "GET /deferred HTTP/1.1\r\n\r\n"
               "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\none"
               "GET /nope HTTP/1.1\r\n\r\n"
               "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\ntwo");
  for (int i = 0; i < 4; i++)
    cli_response(&c, f->rec[i], RECSZ);
  cli_end(&c);
}

static void test_pipelined_in_order(void **state) {
  fixture_t *f = *state;
  run(f, NULL, c_pipeline);
  assert_true(has(f->rec[0], "HTTP/1.1 200 OK\r\n"));
  assert_true(has(f->rec[0], "\r\n\r\nlate"));
  assert_true(has(f->rec[1], "\r\n\r\none"));
  assert_true(has(f->rec[2], "HTTP/1.1 404 Not Found\r\n"));
  assert_true(has(f->rec[3], "\r\n\r\ntwo"));
  assert_int_equal(f->closes, 0);
  /* an answered request runs its cleanups too */
  assert_int_equal(f->n_freed, 2);
}

static void c_cancel(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /hang HTTP/1.1\r\n\r\n");
  sleep_ms(50);
  cli_end(&c); /* gone before the 300 ms answer */
  sleep_ms(450);
  /* The server still serves others. */
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /deferred HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ);
  cli_end(&c);
}

static void test_peer_closes_during_deferred(void **state) {
  fixture_t *f = *state;
  run(f, NULL, c_cancel);
  assert_int_equal(f->closes, 1);
  assert_int_equal(f->answered_canceled, 1);
  /* each of the two requests (the canceled one too) was freed once, its
   * cleanups newest first */
  assert_int_equal(f->n_freed, 4);
  assert_int_equal(f->freed[0], 2);
  assert_int_equal(f->freed[1], 1);
  assert_true(has(f->rec[0], "\r\n\r\nlate"));
}

static void c_errors(fixture_t *f) {
  static const char *const reqs[] = {
      "GET /echo HTTP/1.1\r\n\r\n",                        /* 405 */
      "DELETE /nowhere HTTP/1.1\r\n\r\n",                  /* 404 */
      "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n", /* 400 */
      "POST /echo HTTP/1.1\r\nContent-Length: "
      "99999999999999999999999\r\n\r\n", /* 400 */
      "\x01\x02\x03garbage\r\n\r\n",     /* 400 */
      "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "zz\r\nabc\r\n0\r\n\r\n",                                /* 400 */
      "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n",    /* 413 */
      "GET /problem HTTP/1.1\r\nX-Request-Id: req-42\r\n\r\n", /* 422 */
  };
  for (int i = 0; i < NREC; i++) {
    cli_t c;
    if (cli_connect(&c, f->port) != 0)
      return;
    cli_send(&c, reqs[i]);
    cli_response(&c, f->rec[i], RECSZ);
    f->flag[i] = cli_closed(&c);
    cli_end(&c);
  }
}

static void test_errors(void **state) {
  fixture_t *f = *state;
  sf_http_limits_t lim;
  sf_http_limits_default(&lim);
  lim.max_body = 64;
  lim.idle_timeout_ms = 300; /* keep-alive errors close quickly */
  run(f, &lim, c_errors);
  assert_true(has(f->rec[0], "HTTP/1.1 405 Method Not Allowed\r\n"));
  assert_true(has(f->rec[0], "Allow: POST, PUT\r\n"));
  assert_true(has(f->rec[0], "\"code\":\"method_not_allowed\""));
  assert_true(has(f->rec[1], "HTTP/1.1 404 Not Found\r\n"));
  assert_true(has(f->rec[1], "\"code\":\"not_found\""));
  for (int i = 2; i <= 5; i++) {
    assert_true(has(f->rec[i], "HTTP/1.1 400 Bad Request\r\n"));
    assert_true(has(f->rec[i], "Connection: close\r\n"));
    assert_true(has(f->rec[i], "\"code\":\"bad_request\""));
    assert_true(f->flag[i]);
  }
  assert_true(has(f->rec[6], "HTTP/1.1 413 Payload Too Large\r\n"));
  assert_true(has(f->rec[6], "\"code\":\"payload_too_large\""));
  assert_true(has(f->rec[6], "Connection: close\r\n"));
  assert_true(f->flag[6]);
  const char *p = f->rec[7];
  assert_true(has(p, "HTTP/1.1 422 Unprocessable Entity\r\n"));
  assert_true(has(p, "Content-Type: application/problem+json\r\n"));
  const char *body = strstr(p, "\r\n\r\n") + 4;
  json_error_t jerr;
  json_t *o = json_loads(body, 0, &jerr);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "type")),
                      "https://stockflow.dev/problems/validation_failed");
  assert_string_equal(json_string_value(json_object_get(o, "title")),
                      "Unprocessable Entity");
  assert_int_equal(json_integer_value(json_object_get(o, "status")), 422);
  assert_string_equal(json_string_value(json_object_get(o, "detail")),
                      "quantity must be > 0");
  assert_string_equal(json_string_value(json_object_get(o, "code")),
                      "validation_failed");
  assert_string_equal(json_string_value(json_object_get(o, "request_id")),
                      "req-42");
  assert_string_equal(
      json_string_value(json_array_get(json_object_get(o, "fields"), 0)),
      "quantity");
  json_decref(o);
}

static void c_limits(fixture_t *f) {
  cli_t c;
  char req[32768];
  /* chunked body over max_body (64): 413 while streaming the chunks */
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               "28\r\n0123456789012345678901234567890123456789\r\n"
               "28\r\n0123456789012345678901234567890123456789\r\n0\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ);
  f->flag[0] = cli_closed(&c);
  cli_end(&c);
  /* 70 headers with max_headers 64 */
  size_t n = (size_t)snprintf(req, sizeof(req), "GET /problem HTTP/1.1\r\n");
  for (int i = 0; i < 70; i++)
    n += (size_t)snprintf(req + n, sizeof(req) - n, "X-H%d: v\r\n", i);
  snprintf(req + n, sizeof(req) - n, "\r\n");
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, req);
  cli_response(&c, f->rec[1], RECSZ);
  f->flag[1] = cli_closed(&c);
  cli_end(&c);
  /* one header of 20000 bytes with max_header_bytes 16384 */
  n = (size_t)snprintf(req, sizeof(req), "GET /problem HTTP/1.1\r\nX-Big: ");
  memset(req + n, 'a', 20000);
  snprintf(req + n + 20000, sizeof(req) - n - 20000, "\r\n\r\n");
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, req);
  cli_response(&c, f->rec[2], RECSZ);
  f->flag[2] = cli_closed(&c);
  cli_end(&c);
  /* body within the limit with Expect: 100-continue */
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
               "Content-Length: 4\r\n\r\n");
  ssize_t k = recv(c.fd, f->rec[3], 64, 0); /* the interim answer alone */
  if (k > 0)
    f->rec[3][k] = '\0';
  cli_send(&c, "body");
  cli_response(&c, f->rec[4], RECSZ);
  cli_end(&c);
}

/* A 100-byte body: too big for POST /echo (max_body 64), fine for PUT
 * /echo (its own limit 200); 300 bytes is too big for PUT as well. */
static void c_body_limit(fixture_t *f) {
  char req[1024], body[301];
  memset(body, 'b', 300);
  body[300] = '\0';
  const char *methods[3] = {"POST", "PUT", "PUT"};
  const size_t sizes[3] = {100, 100, 300};
  for (int i = 0; i < 3; i++) {
    cli_t c;
    if (cli_connect(&c, f->port) != 0)
      return;
    snprintf(req, sizeof(req), "%s /echo?x=1 HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%.*s",
             methods[i], sizes[i], (int)sizes[i], body);
    cli_send(&c, req);
    cli_response(&c, f->rec[i], RECSZ);
    cli_end(&c);
  }
}

static void test_body_limit_per_path(void **state) {
  fixture_t *f = *state;
  sf_http_limits_t lim;
  sf_http_limits_default(&lim);
  lim.max_body = 64;
  run(f, &lim, c_body_limit);
  assert_true(has(f->rec[0], "HTTP/1.1 413 Payload Too Large\r\n"));
  assert_false(has(f->rec[1], " 413 "));
  assert_true(has(f->rec[1], "HTTP/1.1 2"));
  assert_true(has(f->rec[2], "HTTP/1.1 413 Payload Too Large\r\n"));
}

static void test_limits(void **state) {
  fixture_t *f = *state;
  sf_http_limits_t lim;
  sf_http_limits_default(&lim);
  lim.max_body = 64;
  run(f, &lim, c_limits);
  assert_true(has(f->rec[0], "HTTP/1.1 413 Payload Too Large\r\n"));
  assert_true(has(f->rec[0], "\"code\":\"payload_too_large\""));
  assert_true(f->flag[0]);
  assert_true(has(f->rec[1], "HTTP/1.1 431 Request Header Fields Too Large"));
  assert_true(f->flag[1]);
  assert_true(has(f->rec[2], "HTTP/1.1 431 Request Header Fields Too Large"));
  assert_true(f->flag[2]);
  assert_string_equal(f->rec[3], "HTTP/1.1 100 Continue\r\n\r\n");
  assert_true(has(f->rec[4], "HTTP/1.1 201 Created\r\n"));
  assert_true(has(f->rec[4], "\r\n\r\nbody"));
}

static void c_timeouts(fixture_t *f) {
  cli_t c;
  /* slowloris: headers trickle in past the 100 ms header timeout */
  if (cli_connect(&c, f->port) != 0)
    return;
  long t0 = now_ms();
  cli_send(&c, "GET /problem HTTP/1.1\r\n");
  for (int i = 0; i < 40; i++) {
    sleep_ms(25);
    cli_send(&c, "X-Slow: 1\r\n");
    char b[256];
    ssize_t k = recv(c.fd, b, sizeof(b), MSG_DONTWAIT);
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      f->flag[0] = 1;
      break;
    }
  }
  f->ms[0] = now_ms() - t0;
  cli_end(&c);
  /* idle: one answer, then nothing for the 200 ms idle timeout */
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /problem HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[1], RECSZ);
  t0 = now_ms();
  f->flag[1] = cli_closed(&c);
  f->ms[1] = now_ms() - t0;
  cli_end(&c);
  /* a silent new connection is dropped after the header timeout */
  if (cli_connect(&c, f->port) != 0)
    return;
  t0 = now_ms();
  f->flag[2] = cli_closed(&c);
  f->ms[2] = now_ms() - t0;
  cli_end(&c);
}

static void test_timeouts(void **state) {
  fixture_t *f = *state;
  sf_http_limits_t lim;
  sf_http_limits_default(&lim);
  lim.header_timeout_ms = 100;
  lim.idle_timeout_ms = 200;
  run(f, &lim, c_timeouts);
  assert_true(f->flag[0]);
  assert_true(f->ms[0] >= 90 && f->ms[0] < 600);
  assert_true(has(f->rec[1], "HTTP/1.1 422"));
  assert_true(f->flag[1]);
  assert_true(f->ms[1] >= 150 && f->ms[1] < 1000);
  assert_true(f->flag[2]);
  assert_true(f->ms[2] >= 80 && f->ms[2] < 600);
}

static void c_stream(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /stream?end=1 HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ); /* whole stream up to EOF */
  cli_end(&c);
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /stream HTTP/1.1\r\n\r\n");
  char b[1024];
  ssize_t k = recv(c.fd, b, sizeof(b) - 1, 0);
  if (k > 0) {
    b[k] = '\0';
    memcpy(f->rec[1], b, (size_t)k + 1);
  }
  cli_end(&c);
  sleep_ms(100);
}

static void test_stream(void **state) {
  fixture_t *f = *state;
  run(f, NULL, c_stream);
  const char *r = f->rec[0];
  assert_true(has(r, "HTTP/1.1 200 OK\r\n"));
  assert_true(has(r, "Content-Type: text/event-stream\r\n"));
  assert_true(has(r, "Connection: close\r\n"));
  assert_false(has(r, "Content-Length"));
  assert_true(has(r, "\r\n\r\ndata: 1\n\ndata: 2\n\n"));
  assert_true(has(f->rec[1], "HTTP/1.1 200 OK\r\n"));
  assert_int_equal(f->closes, 1);
  assert_int_equal(f->stream_write_rc, SF_ECANCELED);
}

/* Reads until needle is in c->buf (NUL-terminated) or 3 s pass. */
static bool cli_wait_for(cli_t *c, const char *needle) {
  for (;;) {
    c->buf[c->len] = '\0';
    if (find_bytes(c->buf, c->len, needle))
      return true;
    ssize_t k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (k <= 0)
      return false;
    c->len += (size_t)k;
  }
}

static void c_upgrade(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  /* Bytes right behind the request must reach the protocol, in order. */
  cli_send(&c, "GET /upgrade HTTP/1.1\r\nUpgrade: echo\r\n"
               "Connection: Upgrade\r\n\r\nearly;");
  f->flag[0] = cli_wait_for(&c, "\r\n\r\nearly;");
  memcpy(f->rec[0], c.buf, c.len < RECSZ - 1 ? c.len : RECSZ - 1);
  cli_send(&c, "second;");
  f->flag[1] = cli_wait_for(&c, "early;second;");
  cli_send(&c, "bye");
  f->flag[2] = cli_wait_for(&c, "early;second;bye");
  f->flag[3] = cli_closed(&c);
  cli_end(&c);
  /* A peer that goes away: on_close fires once. */
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /upgrade HTTP/1.1\r\nUpgrade: echo\r\n"
               "Connection: Upgrade\r\n\r\n");
  f->flag[4] = cli_wait_for(&c, "\r\n\r\n");
  cli_end(&c);
  sleep_ms(100);
}

static void test_upgrade(void **state) {
  fixture_t *f = *state;
  run(f, NULL, c_upgrade);
  const char *r = f->rec[0];
  assert_true(f->flag[0]);
  assert_true(has(r, "HTTP/1.1 101 Switching Protocols\r\n"));
  assert_true(has(r, "Upgrade: echo\r\nConnection: Upgrade\r\n"));
  assert_true(has(r, "X-Proto: echo/1\r\n"));
  assert_false(has(r, "Connection: close"));
  assert_false(has(r, "Content-Length"));
  assert_true(f->flag[1]);
  assert_true(f->flag[2]);
  assert_true(f->flag[3]); /* "bye" ended the stream: EOF */
  assert_true(f->flag[4]);
  assert_int_equal(f->ws_closes, 1);
}

static void c_shared(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "GET /shared HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ); /* up to EOF */
  cli_end(&c);
  /* 8 MiB to a peer that reads nothing, then leaves: the write is
   * dropped and its done callback still fires once. */
  if (cli_connect(&c, f->port) != 0)
    return;
  int small = 4096;
  setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  cli_send(&c, "GET /shared?big=1 HTTP/1.1\r\n\r\n");
  sleep_ms(200);
  cli_end(&c);
  sleep_ms(200);
}

static void test_shared_writes(void **state) {
  fixture_t *f = *state;
  f->big = malloc(8u << 20);
  assert_non_null(f->big);
  memset(f->big, 'x', 8u << 20);
  run(f, NULL, c_shared);
  free(f->big);
  assert_true(has(f->rec[0], "HTTP/1.1 200 OK\r\n"));
  assert_true(has(f->rec[0], "\r\n\r\nid: 1\nevent: change\ndata: {}\n\n"
                             "id: 1\nevent: change\ndata: {}\n\n"));
  assert_int_equal(f->shared_done, 3);
  assert_int_equal(f->closes, 1);
}

static void c_server_close(fixture_t *f) {
  cli_t a, b;
  if (cli_connect(&a, f->port) != 0)
    return;
  if (cli_connect(&b, f->port) != 0)
    return;
  cli_send(&a, "GET /problem HTTP/1.1\r\n\r\n");
  cli_response(&a, f->rec[0], RECSZ); /* a is idle, kept alive */
  cli_send(&b, "GET /hang HTTP/1.1\r\n\r\n");
  sleep_ms(50);
  uv_async_send(&f->stop); /* close the server with both open */
  f->flag[0] = cli_closed(&a);
  f->flag[1] = cli_closed(&b);
  cli_end(&a);
  cli_end(&b);
}

static void test_server_close_with_connections(void **state) {
  fixture_t *f = *state;
  f->answer_in_on_close = true;
  run(f, NULL, c_server_close);
  assert_true(has(f->rec[0], "HTTP/1.1 422"));
  assert_true(f->flag[0]);
  assert_true(f->flag[1]);
  assert_int_equal(f->closes, 1);
  assert_null(f->pending);
}

static void c_metrics(fixture_t *f) {
  cli_t c;
  if (cli_connect(&c, f->port) != 0)
    return;
  cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\na");
  cli_response(&c, f->rec[0], RECSZ);
  cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nb");
  cli_response(&c, f->rec[0], RECSZ);
  cli_send(&c, "GET /v1/stores/s/items/i HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ);
  cli_send(&c, "GET /missing HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ);
  cli_send(&c, "GET /metrics HTTP/1.1\r\n\r\n");
  cli_response(&c, f->rec[0], RECSZ);
  cli_end(&c);
}

static void test_metrics(void **state) {
  fixture_t *f = *state;
  run(f, NULL, c_metrics);
  const char *m = f->rec[0];
  assert_true(has(m, "# TYPE test_http_requests_total counter\n"));
  assert_true(has(m, "test_http_requests_total{route=\"/echo\",method=\"POST\","
                     "status=\"201\"} 2\n"));
  assert_true(has(m, "test_http_requests_total{route=\"/v1/stores/{store_id}/"
                     "items/{item}\",method=\"GET\",status=\"200\"} 1\n"));
  assert_true(has(m, "test_http_requests_total{route=\"unmatched\","
                     "method=\"GET\",status=\"404\"} 1\n"));
  assert_true(has(m, "# TYPE test_http_request_duration_seconds histogram\n"));
  assert_true(has(m, "test_http_request_duration_seconds_bucket{route=\"/echo\""
                     ",le=\"2.5\"} 2\n"));
  assert_true(has(m, "test_http_request_duration_seconds_bucket{route=\"/echo\""
                     ",le=\"+Inf\"} 2\n"));
  assert_true(has(m, "test_http_request_duration_seconds_count{route=\"/echo\"}"
                     " 2\n"));
  assert_true(has(m, "test_http_request_duration_seconds_sum{route=\"/echo\"} "));
}

static void c_max_conns(fixture_t *f) {
  cli_t a, b;
  if (cli_connect(&a, f->port) != 0)
    return;
  cli_send(&a, "GET /problem HTTP/1.1\r\n\r\n");
  cli_response(&a, f->rec[0], RECSZ);
  if (cli_connect(&b, f->port) != 0)
    return;
  long t0 = now_ms();
  f->flag[1] = cli_closed(&b); /* over the limit: accepted and closed */
  f->ms[1] = now_ms() - t0;
  cli_end(&b);
  cli_send(&a, "GET /problem HTTP/1.1\r\n\r\n"); /* a still works */
  cli_response(&a, f->rec[2], RECSZ);
  cli_end(&a);
}

static void test_max_connections(void **state) {
  fixture_t *f = *state;
  sf_http_limits_t lim;
  sf_http_limits_default(&lim);
  lim.max_connections = 1;
  run(f, &lim, c_max_conns);
  assert_true(has(f->rec[0], "HTTP/1.1 422"));
  assert_true(f->flag[1]);
  assert_true(f->ms[1] < 500);
  assert_true(has(f->rec[2], "HTTP/1.1 422"));
}

static void noop_handler(sf_http_req_t *r, void *ud) {
  (void)ud;
  sf_http_respond(r, 204, NULL, NULL, 0);
}

static void test_route_validation(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  sf_http_server_t *s;
  assert_int_equal(sf_http_server_new(&s, &loop, NULL, NULL), 0);
  assert_int_equal(sf_http_route(s, "GET", "/a/{id}", noop_handler, NULL), 0);
  assert_int_equal(sf_http_route(s, "GET", "/a/{id}", noop_handler, NULL),
                   SF_EINVAL);
  assert_int_equal(sf_http_route(s, "get", "/b", noop_handler, NULL),
                   SF_EINVAL);
  assert_int_equal(sf_http_route(s, "GET", "b", noop_handler, NULL),
                   SF_EINVAL);
  assert_int_equal(sf_http_route(s, "GET", "/a/{}", noop_handler, NULL),
                   SF_EINVAL);
  assert_int_equal(sf_http_route(s, "GET", "/a/x{id}", noop_handler, NULL),
                   SF_EINVAL);
  assert_int_equal(sf_http_route(s, "GET", "/a//b", noop_handler, NULL),
                   SF_EINVAL);
  assert_int_equal(sf_http_route(s, "GET", "/{x}/{x}", noop_handler, NULL),
                   SF_EINVAL);
  assert_int_equal(sf_http_route(s, "GET", "/", noop_handler, NULL), 0);
  assert_int_equal(sf_http_bound_port(s), -1);
  assert_int_equal(sf_http_listen(s, "not-an-ip", 0), SF_EIO);
  sf_http_server_close(s, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  sf_http_server_destroy(s);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_string_equal(sf_http_status_text(431),
                      "Request Header Fields Too Large");
  assert_string_equal(sf_http_status_text(412), "Precondition Failed");
  assert_string_equal(sf_http_status_text(799), "Unknown");
}

int main(void) {
  /* As in every server's main(): a peer that resets must not kill us. */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_route_validation),
      cmocka_unit_test_setup_teardown(test_get_params_and_query, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_post_keepalive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_peer_closes_during_deferred, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_body_limit_per_path, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
      cmocka_unit_test_setup_teardown(test_upgrade, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_close_with_connections,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
