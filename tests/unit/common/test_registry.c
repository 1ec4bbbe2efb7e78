/* Tests for common/src/registry.c against a scripted HTTP server on a
 * thread (one canned answer per connection): what a registration and a
 * fetch send and how each answer maps to an error, learning a schema id
 * into a codec, and a registry that is not there. The real registry is
 * exercised by tests/integration/test_registry.py. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "sf/err.h"
#include "sf/event.h"
#include "sf/registry.h"

#include "../curl_fixture.h"

/* A server that answers each of its connections with the next of up to 4
 * canned answers and keeps the requests it read. */
typedef struct fake {
  int fd;
  int port;
  pthread_t thread;
  int n_answers;
  char answers[4][65536];
  char requests[4][16384];
} fake_t;

static void *fake_main(void *arg) {
  fake_t *f = arg;
  for (int i = 0; i < f->n_answers; i++) {
    int c = accept(f->fd, NULL, NULL);
    if (c < 0)
      break;
    size_t n = 0;
    char *req = f->requests[i];
    /* read the head, then as many body bytes as Content-Length says */
    for (;;) {
      ssize_t k = read(c, req + n, sizeof(f->requests[i]) - 1 - n);
      if (k <= 0)
        break;
      n += (size_t)k;
      req[n] = '\0';
      char *end = strstr(req, "\r\n\r\n");
      if (!end)
        continue;
      const char *cl = strstr(req, "Content-Length: ");
      size_t want = cl ? (size_t)atol(cl + 16) : 0;
      if (n >= (size_t)(end + 4 - req) + want)
        break;
    }
    const char *a = f->answers[i];
    size_t left = strlen(a);
    while (left > 0) {
      ssize_t k = write(c, a, left);
      if (k <= 0)
        break;
      a += k;
      left -= (size_t)k;
    }
    close(c);
  }
  return NULL;
}

/* Starts a server with the given answers (status line, JSON body). */
static void fake_start(fake_t *f, int n, const int *status, const char **body) {
  memset(f, 0, sizeof(*f));
  f->fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(f->fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(f->fd, 8), 0);
  socklen_t sl = sizeof(sa);
  assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &sl), 0);
  f->port = ntohs(sa.sin_port);
  f->n_answers = n;
  for (int i = 0; i < n; i++) {
    int k = snprintf(f->answers[i], sizeof(f->answers[i]),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status[i], strlen(body[i]), body[i]);
    assert_true(k > 0 && (size_t)k < sizeof(f->answers[i]));
  }
  assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_join(fake_t *f) {
  pthread_join(f->thread, NULL);
  close(f->fd);
}

static sf_registry_t *client_of(const fake_t *f) {
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/apis/ccompat/v7/", f->port);
  sf_registry_t *r = NULL;
  assert_int_equal(sf_registry_new(&r, url, 5000), 0);
  url[strlen(url) - 1] = '\0'; /* the trailing slash is dropped */
  assert_string_equal(sf_registry_url(r), url);
  return r;
}

static void test_new_rejects(void **state) {
  (void)state;
  sf_registry_t *r = (sf_registry_t *)1;
  assert_int_equal(sf_registry_new(&r, NULL, 1000), SF_EINVAL);
  assert_null(r);
  assert_int_equal(sf_registry_new(&r, "", 1000), SF_EINVAL);
  assert_int_equal(sf_registry_new(&r, "http://x", 0), SF_EINVAL);
  assert_int_equal(sf_registry_new(&r, "http://x///", 1000), 0);
  assert_string_equal(sf_registry_url(r), "http://x");
  sf_registry_destroy(r);
  sf_registry_destroy(NULL);
}

static void test_register(void **state) {
  (void)state;
  static fake_t f; /* large: not on the stack */
  const int st[] = {200, 409, 503, 200};
  const char *body[] = {"{\"id\":17}", "{\"error_code\":409}", "{}",
                        "{\"nope\":1}"};
  fake_start(&f, 4, st, body);
  sf_registry_t *r = client_of(&f);
  uint32_t id = 0;
  assert_int_equal(sf_registry_register(r, "t.stock-value", "\"string\"", &id),
                   0);
  assert_int_equal(id, 17);
  assert_string_equal(sf_registry_error(r), "");
  assert_int_equal(sf_registry_register(r, "s", "\"string\"", &id),
                   SF_ECONFLICT);
  assert_non_null(strstr(sf_registry_error(r), "409"));
  assert_int_equal(sf_registry_register(r, "s", "\"string\"", &id),
                   SF_EUNAVAILABLE);
  assert_int_equal(sf_registry_register(r, "s", "\"string\"", &id),
                   SF_EPARSE);
  fake_join(&f);
  /* what was sent: the subject's path and the schema as a JSON string */
  const char *req = f.requests[0];
  assert_non_null(
      strstr(req, "POST /apis/ccompat/v7/subjects/t.stock-value/versions "));
  assert_non_null(
      strstr(req, "Content-Type: application/vnd.schemaregistry.v1+json"));
  json_t *sent = json_loads(strstr(req, "\r\n\r\n") + 4, 0, NULL);
  assert_non_null(sent);
  assert_string_equal(json_string_value(json_object_get(sent, "schema")),
                      "\"string\"");
  json_decref(sent);
  sf_registry_destroy(r);
}

static void test_fetch_and_learn(void **state) {
  (void)state;
  sf_event_codec_t *c = NULL;
  assert_int_equal(sf_event_codec_new(&c), 0);
  json_t *ans = json_pack("{s:s}", "schema", sf_event_codec_schema_json(c));
  char *found = json_dumps(ans, JSON_COMPACT);
  json_decref(ans);
  static fake_t f; /* large: not on the stack */
  const int st[] = {404, 200, 200};
  const char *body[] = {"{\"error_code\":40403}", found,
                        "{\"schema\":\"{\\\"type\\\":\\\"string\\\"}\"}"};
  fake_start(&f, 3, st, body);
  sf_registry_t *r = client_of(&f);
  const uint8_t confluent[] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x00};
  const uint8_t other[] = {0x00, 0x00, 0x00, 0x00, 0x2b, 0x00};
  const uint8_t single[] = {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0};
  /* not Confluent, or no registry: nothing to learn, no request */
  assert_int_equal(sf_registry_learn(r, c, single, sizeof(single)), 0);
  assert_int_equal(sf_registry_learn(NULL, c, confluent, sizeof(confluent)),
                   0);
  assert_false(sf_event_codec_knows_id(c, 42));
  /* 404: the registry does not know the id (yet) */
  assert_int_equal(sf_registry_learn(r, c, confluent, sizeof(confluent)),
                   SF_ENOTFOUND);
  assert_false(sf_event_codec_knows_id(c, 42));
  /* then it does: learnt, and not asked again */
  assert_int_equal(sf_registry_learn(r, c, confluent, sizeof(confluent)), 0);
  assert_true(sf_event_codec_knows_id(c, 42));
  assert_int_equal(sf_registry_learn(r, c, confluent, sizeof(confluent)), 0);
  /* an id whose schema is no envelope */
  assert_int_equal(sf_registry_learn(r, c, other, sizeof(other)), SF_ESCHEMA);
  assert_false(sf_event_codec_knows_id(c, 43));
  fake_join(&f);
  assert_non_null(strstr(f.requests[0], "GET /apis/ccompat/v7/schemas/ids/42 "));
  assert_non_null(strstr(f.requests[2], "GET /apis/ccompat/v7/schemas/ids/43 "));
  sf_registry_destroy(r);
  free(found);
  sf_event_codec_destroy(c);
}

static void test_unreachable(void **state) {
  (void)state;
  /* a port nobody listens on: bind one, close it, use its number */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t sl = sizeof(sa);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  close(fd);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
  sf_registry_t *r = NULL;
  assert_int_equal(sf_registry_new(&r, url, 2000), 0);
  char *schema = NULL;
  assert_int_equal(sf_registry_fetch(r, 1, &schema), SF_EUNAVAILABLE);
  assert_null(schema);
  assert_true(sf_err_is_retriable(SF_EUNAVAILABLE));
  assert_non_null(strstr(sf_registry_error(r), "GET"));
  uint32_t id;
  assert_int_equal(sf_registry_register(r, "s", "\"string\"", &id),
                   SF_EUNAVAILABLE);
  sf_registry_destroy(r);
}

/* libcurl is set up once per process before the module is used, as
 * sf_service_run does in the services (sf/registry.h). */
int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_rejects),
      cmocka_unit_test(test_register),
      cmocka_unit_test(test_fetch_and_learn),
      cmocka_unit_test(test_unreachable),
  };
  return cmocka_run_group_tests(tests, curl_group_setup, curl_group_teardown);
}
