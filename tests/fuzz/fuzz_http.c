/* fuzz_http: libFuzzer target for the HTTP request path (common/src/http.c
 * and http_router.c). Each input is sent by a real loopback client to a
 * fresh server, then the client half-closes and drains; the server must
 * answer or close without crashing, leaking or stalling. Not built by CMake
 * yet; build by hand, for example:
 *   clang -g -fsanitize=fuzzer,address,undefined -Icommon/include \
 *     -I/usr/share/include/llhttp tests/fuzz/fuzz_http.c common/src/http.c \
 *     common/src/http_router.c common/src/err.c common/src/log.c \
 *     /usr/share/llhttp/{api,http,llhttp}.c -luv -ljansson -lsodium
 * The process ignores SIGPIPE, as every server does. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sf/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz {
  uv_loop_t loop;
  sf_http_server_t *srv;
  uv_poll_t poll;
  uv_timer_t guard;
  int fd;
  bool stopping;
} fz_t;

static void echo_cb(sf_http_req_t *r, void *ud) {
  (void)ud;
  size_t len;
  const char *body = sf_http_req_body(r, &len);
  sf_http_add_header(r, "X-Param", sf_http_req_param(r, "x"));
  const char *q = sf_http_req_query(r, "q");
  if (q && q[0] == 'p') {
    sf_http_respond_problem(r, 422, "fuzz", q, NULL);
    return;
  }
  sf_http_respond(r, 200, "text/plain", body, len);
}

static void stop(fz_t *f) {
  if (f->stopping)
    return;
  f->stopping = true;
  uv_poll_stop(&f->poll);
  uv_close((uv_handle_t *)&f->poll, NULL);
  uv_close((uv_handle_t *)&f->guard, NULL);
  sf_http_server_close(f->srv, NULL, NULL);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  fz_t *f = p->data;
  char buf[65536];
  (void)events;
  if (status < 0) {
    stop(f);
    return;
  }
  ssize_t n = recv(f->fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
    stop(f);
}

static void guard_cb(uv_timer_t *t) { stop(t->data); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t f = {.fd = -1};
  sf_http_limits_t lim;
  signal(SIGPIPE, SIG_IGN);
  sf_http_limits_default(&lim);
  lim.max_body = 1024;
  lim.max_header_bytes = 2048;
  lim.max_headers = 16;
  lim.header_timeout_ms = 200;
  lim.idle_timeout_ms = 200;
  if (uv_loop_init(&f.loop) != 0)
    return 0;
  if (sf_http_server_new(&f.srv, &f.loop, &lim, NULL) != 0)
    goto out_loop;
  sf_http_route(f.srv, "GET", "/a/{x}", echo_cb, NULL);
  sf_http_route(f.srv, "POST", "/a/{x}", echo_cb, NULL);
  if (sf_http_listen(f.srv, "127.0.0.1", 0) != 0)
    goto out_server;
  f.fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons(sf_http_bound_port(f.srv))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (f.fd < 0 || connect(f.fd, (struct sockaddr *)&a, sizeof(a)) != 0)
    goto out_server;
  fcntl(f.fd, F_SETFL, fcntl(f.fd, F_GETFL) | O_NONBLOCK);
  /* Inputs are small; the socket buffer takes them whole. */
  if (size)
    (void)send(f.fd, data, size, MSG_NOSIGNAL);
  shutdown(f.fd, SHUT_WR);
  uv_poll_init(&f.loop, &f.poll, f.fd);
  f.poll.data = &f;
  uv_poll_start(&f.poll, UV_READABLE | UV_DISCONNECT, poll_cb);
  uv_timer_init(&f.loop, &f.guard);
  f.guard.data = &f;
  uv_timer_start(&f.guard, guard_cb, 2000, 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  close(f.fd);
  sf_http_server_destroy(f.srv);
  uv_loop_close(&f.loop);
  return 0;
out_server:
  if (f.fd >= 0)
    close(f.fd);
  sf_http_server_close(f.srv, NULL, NULL);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  sf_http_server_destroy(f.srv);
out_loop:
  uv_loop_close(&f.loop);
  return 0;
}
