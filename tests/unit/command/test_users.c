/* test_users: the account endpoints and the authentication gate against a
 * real PostgreSQL named by STOCKFLOW_TEST_PG_DSN (migrated with
 * schemas/migrations, as tests/run.sh does); skipped without it.
 *
 * Two HTTP servers share one loop, each with its own pool and gate: A plays
 * the command service (cmd_users plus gated probe routes), B the query
 * service (a gated read route, its own session cache). A client thread
 * speaks HTTP to both with blocking sockets and sets rows up with libpq.
 * Covered: sign-up rules, login, the same 401 for a wrong password and an
 * unknown user in about the same time, me, 401 without or with a bad
 * token, role x route answers (200/403), PATCH by a non-admin (403),
 * logout killing the token on both servers within one second although B
 * caches sessions, role changes seen by B at once, an expired token, 429
 * with Retry-After under guessing (per username and per address) while
 * other users still log in, trusted proxy addresses checked at start (the
 * X-Real-IP they pass is tested in tests/integration/test_gateway.py), no
 * password or token in the logs, and the
 * last-admin trigger of migration 005 (also under two transactions at
 * once). */
#include "cmd_users.h"
#include "sf/auth.h"
#include "sf/authn.h"
#include "sf/err.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "../log_fixture.h"

#define S1 "0190a0b0-0000-7000-8000-00000000a001"
#define S2 "0190a0b0-0000-7000-8000-00000000a002"

typedef struct fixture fixture_t;
typedef void (*client_fn)(fixture_t *f);

struct fixture {
  const char *dsn;
  FILE *logf; /* everything the services log */
  sf_log_t *log;
  uv_loop_t loop;
  sf_pg_t *pg_a, *pg_b;
  sf_authn_t *authn_a, *authn_b;
  sf_http_server_t *http_a, *http_b;
  cmd_users_t *users;
  int port_a, port_b;
  uv_async_t stop;
  uv_thread_t thread;
  client_fn client;
  int closed;
  int revokes;          /* notifications seen by B's callback */
  char suffix[17];      /* makes usernames unique per run */
  PGconn *db;           /* the client thread's own connection */
  char secrets[8][128]; /* passwords and tokens that must not be logged */
  int n_secrets;
};

/* ---- handlers of the probe routes ---- */

static void h_probe(sf_http_req_t *req, void *ud) {
  (void)ud;
  const sf_principal_t *p = sf_authn_principal(req);
  const char *filter = NULL;
  assert_int_equal(sf_authn_store_filter(req, &filter), 0);
  sf_http_respond_json(req, 200,
                       json_pack("{s:s, s:s, s:s?}", "user_id", p->user_id,
                                 "role", sf_role_name(p->role), "filter",
                                 filter));
}

/* B's revocation callback: counts notifications for any user. */
static void on_revoke(void *ud, const char *user_id) {
  (void)user_id;
  (*(int *)ud)++;
}

static void h_count(sf_http_req_t *req, void *ud) {
  (void)ud;
  /* a check that needs the body: here the query says which kind */
  const char *kind = sf_http_req_query(req, "kind");
  sf_auth_action_t act = kind && strcmp(kind, "count") == 0
                             ? SF_ACT_STOCK_COUNT_ADJUST
                             : SF_ACT_STOCK_WRITE;
  if (!sf_authn_require(req, act, sf_http_req_param(req, "store_id")))
    return;
  sf_http_respond_json(req, 201, json_pack("{s:b}", "ok", 1));
}

/* ---- the client side ---- */

typedef struct resp {
  int status;
  char head[4096];
  char body[8192];
  json_t *json;
} resp_t;

static long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* One request on a fresh connection (Connection: close), read to EOF. */
static void http(int port, const char *method, const char *path,
                 const char *token, const char *body, resp_t *r) {
  json_decref(r->json);
  memset(r, 0, sizeof(*r));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  char req[4096];
  int n = snprintf(req, sizeof(req),
                   "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   "%s%s%s"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                   "\r\n%s",
                   method, path, token ? "Authorization: Bearer " : "",
                   token ? token : "", token ? "\r\n" : "",
                   body ? strlen(body) : 0, body ? body : "");
  assert_true(n > 0 && (size_t)n < sizeof(req));
  assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
  char buf[16384];
  size_t len = 0;
  for (;;) {
    ssize_t k = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (k <= 0)
      break;
    len += (size_t)k;
  }
  close(fd);
  buf[len] = '\0';
  assert_true(sscanf(buf, "HTTP/1.1 %d", &r->status) == 1);
  char *sep = strstr(buf, "\r\n\r\n");
  assert_non_null(sep);
  snprintf(r->head, sizeof(r->head), "%.*s", (int)(sep - buf), buf);
  snprintf(r->body, sizeof(r->body), "%s", sep + 4);
  r->json = json_loads(r->body, 0, NULL);
}

static void done(resp_t *r) {
  json_decref(r->json);
  r->json = NULL;
}

static const char *jstr(const resp_t *r, const char *key) {
  return json_string_value(json_object_get(r->json, key));
}

static void expect(resp_t *r, int status, const char *code) {
  if (r->status != status)
    fail_msg("want %d, got %d: %s", status, r->status, r->body);
  if (code)
    assert_string_equal(jstr(r, "code"), code);
}

static void secret(fixture_t *f, const char *s) {
  assert_true(f->n_secrets < 8);
  snprintf(f->secrets[f->n_secrets++], 128, "%s", s);
}

static void sql(fixture_t *f, const char *text) {
  PGresult *res = PQexec(f->db, text);
  if (PQresultStatus(res) != PGRES_COMMAND_OK &&
      PQresultStatus(res) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", text, PQerrorMessage(f->db));
  PQclear(res);
}

/* Signs up name (suffixed) and returns its id in id (may be NULL). */
static void signup(fixture_t *f, const char *name, const char *password,
                   char *id, char *full) {
  char body[512], uname[128];
  snprintf(uname, sizeof(uname), "%s-%s", name, f->suffix);
  snprintf(body, sizeof(body),
           "{\"username\":\"%s\",\"email\":\"%s@example.com\","
           "\"password\":\"%s\"}",
           uname, name, password);
  resp_t r = {0};
  http(f->port_a, "POST", "/v1/users", NULL, body, &r);
  expect(&r, 201, NULL);
  assert_string_equal(jstr(&r, "role"), "viewer");
  assert_string_equal(jstr(&r, "username"), uname);
  assert_null(json_object_get(r.json, "password"));
  assert_null(json_object_get(r.json, "password_hash"));
  assert_null(strstr(r.body, "argon2"));
  if (id)
    snprintf(id, 37, "%s", jstr(&r, "id"));
  if (full)
    snprintf(full, 128, "%s", uname);
  done(&r);
}

/* Logs in; returns the status, the token in token (when 201). */
static int login(fixture_t *f, const char *uname, const char *password,
                 char *token, resp_t *out) {
  char body[512];
  snprintf(body, sizeof(body), "{\"username\":\"%s\",\"password\":\"%s\"}",
           uname, password);
  resp_t r = {0};
  http(f->port_a, "POST", "/v1/sessions", NULL, body, &r);
  int st = r.status;
  if (st == 201 && token) {
    assert_non_null(jstr(&r, "token"));
    snprintf(token, SF_AUTH_TOKEN_LEN + 1, "%s", jstr(&r, "token"));
    secret(f, token);
  }
  if (out)
    *out = r;
  else
    done(&r);
  return st;
}

/* Creates an admin directly in the database and logs it in. */
static void make_admin(fixture_t *f, char *token) {
  char hash[SF_AUTH_PWHASH_MAX], q[1024], uname[128];
  const char *pw = "admin-secret-pw-1";
  assert_int_equal(sf_auth_password_hash(pw, hash), 0);
  snprintf(uname, sizeof(uname), "tadmin-%s", f->suffix);
  snprintf(q, sizeof(q),
           "INSERT INTO users (id, username, email, password_hash, role) "
           "VALUES (gen_random_uuid(), '%s', '', '%s', 'admin')",
           uname, hash);
  sql(f, q);
  assert_int_equal(login(f, uname, pw, token, NULL), 201);
}

static void patch(fixture_t *f, const char *admin, const char *id,
                  const char *body, int want) {
  char path[128];
  snprintf(path, sizeof(path), "/v1/users/%s", id);
  resp_t r = {0};
  http(f->port_a, "PATCH", path, admin, body, &r);
  expect(&r, want, NULL);
  done(&r);
}

static int status_of(int port, const char *method, const char *path,
                     const char *token) {
  resp_t r = {0};
  http(port, method, path, token, NULL, &r);
  done(&r);
  return r.status;
}

/* ---- the loop side ---- */

static void on_closed(void *ud) { ((fixture_t *)ud)->closed++; }
static void on_closed_count(void *ud) { (*(int *)ud)++; }

static void stop_cb(uv_async_t *h) {
  fixture_t *f = h->data;
  cmd_users_shutdown(f->users);
  sf_http_server_close(f->http_a, on_closed, f);
  sf_http_server_close(f->http_b, on_closed, f);
  uv_close((uv_handle_t *)&f->stop, NULL);
}

static void client_main(void *arg) {
  fixture_t *f = arg;
  f->db = PQconnectdb(f->dsn);
  if (PQstatus(f->db) == CONNECTION_OK)
    f->client(f);
  else
    fprintf(stderr, "client: %s", PQerrorMessage(f->db));
  PQfinish(f->db);
  uv_async_send(&f->stop);
}

static void run(fixture_t *f, const cmd_users_opts_t *uo, client_fn fn) {
  assert_int_equal(uv_loop_init(&f->loop), 0);
  sf_pg_opts_t po = {.dsn = f->dsn, .pool_size = 2};
  assert_int_equal(sf_pg_new(&f->pg_a, &f->loop, &po, f->log), 0);
  assert_int_equal(sf_pg_new(&f->pg_b, &f->loop, &po, f->log), 0);
  assert_int_equal(sf_authn_new(&f->authn_a, &f->loop, f->pg_a, NULL, f->log),
                   0);
  assert_int_equal(sf_authn_new(&f->authn_b, &f->loop, f->pg_b, NULL, f->log),
                   0);
  sf_authn_on_revoke(f->authn_b, on_revoke, &f->revokes);
  /* one gate per pool */
  sf_authn_t *twice = NULL;
  assert_int_equal(sf_authn_new(&twice, &f->loop, f->pg_b, NULL, f->log),
                   SF_EEXISTS);
  assert_int_equal(sf_http_server_new(&f->http_a, &f->loop, NULL, f->log), 0);
  assert_int_equal(sf_http_server_new(&f->http_b, &f->loop, NULL, f->log), 0);
  assert_int_equal(
      cmd_users_new(&f->users, &f->loop, f->pg_a, f->authn_a, uo, f->log), 0);
  assert_int_equal(cmd_users_register(f->http_a, f->users), 0);
  assert_int_equal(sf_authn_route(f->authn_a, f->http_a, "GET",
                                  "/v1/stores/{store_id}/probe",
                                  SF_ACT_READ_STORE, "store_id", h_probe, f),
                   0);
  assert_int_equal(sf_authn_route(f->authn_a, f->http_a, "POST",
                                  "/v1/stores/{store_id}/transactions",
                                  SF_ACT_STOCK_WRITE, "store_id", h_count, f),
                   0);
  assert_int_equal(sf_authn_route(f->authn_a, f->http_a, "POST",
                                  "/v1/products", SF_ACT_CATALOG_WRITE, NULL,
                                  h_probe, f),
                   0);
  assert_int_equal(sf_authn_route(f->authn_b, f->http_b, "GET",
                                  "/v1/stores/{store_id}/probe",
                                  SF_ACT_READ_STORE, "store_id", h_probe, f),
                   0);
  assert_int_equal(sf_authn_route(f->authn_b, f->http_b, "GET", "/v1/products",
                                  SF_ACT_READ_CATALOG, NULL, h_probe, f),
                   0);
  assert_int_equal(sf_http_listen(f->http_a, "127.0.0.1", 0), 0);
  assert_int_equal(sf_http_listen(f->http_b, "127.0.0.1", 0), 0);
  f->port_a = sf_http_bound_port(f->http_a);
  f->port_b = sf_http_bound_port(f->http_b);
  assert_int_equal(uv_async_init(&f->loop, &f->stop, stop_cb), 0);
  f->stop.data = f;
  f->client = fn;
  assert_int_equal(uv_thread_create(&f->thread, client_main, f), 0);
  while (f->closed < 2)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(uv_thread_join(&f->thread), 0);
  f->closed = 0;
  sf_pg_close(f->pg_a, on_closed, f);
  sf_pg_close(f->pg_b, on_closed, f);
  while (f->closed < 2)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  sf_http_server_destroy(f->http_a);
  sf_http_server_destroy(f->http_b);
  sf_authn_destroy(f->authn_a);
  sf_authn_destroy(f->authn_b);
  cmd_users_destroy(f->users);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle closed */
  /* No password or token ever reaches the log. */
  char *text = log_fixture_text(f->logf);
  assert_true(*text);
  for (int i = 0; i < f->n_secrets; i++)
    if (strstr(text, f->secrets[i]))
      fail_msg("the log holds a secret: %s", f->secrets[i]);
  assert_null(strstr(text, "argon2"));
  if (getenv("STOCKFLOW_TEST_LOG_LEVEL"))
    fputs(text, stderr);
  free(text);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->dsn = getenv("STOCKFLOW_TEST_PG_DSN");
  if (f->dsn && !*f->dsn)
    f->dsn = NULL;
  f->logf = tmpfile();
  assert_non_null(f->logf);
  assert_int_equal(sf_log_new(&f->log, "test", SF_LOG_DEBUG, f->logf), 0);
  uint8_t rnd[8];
  randombytes_buf(rnd, sizeof(rnd));
  sodium_bin2hex(f->suffix, sizeof(f->suffix), rnd, sizeof(rnd));
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  sf_log_destroy(f->log);
  fclose(f->logf);
  free(f);
  return 0;
}

static bool need_pg(fixture_t *f) {
  if (f->dsn)
    return true;
  print_message("STOCKFLOW_TEST_PG_DSN not set: skipping (the integration "
                "tier runs this against a real PostgreSQL)\n");
  return false;
}

/* ---- tests ---- */

static void flow_client(fixture_t *f) {
  resp_t r = {0};
  char viewer_id[40], vname[128], vtoken[64], admin[64];
  secret(f, "viewer-secret-1");
  signup(f, "viewer", "viewer-secret-1", viewer_id, vname);
  /* sign-up rules */
  char body[512];
  snprintf(body, sizeof(body),
           "{\"username\":\"%s\",\"email\":\"x@y.z\",\"password\":"
           "\"another-pw-1\"}",
           vname);
  http(f->port_a, "POST", "/v1/users", NULL, body, &r);
  expect(&r, 409, "username_taken");
  /* the same name in capitals is the same user */
  snprintf(body, sizeof(body),
           "{\"username\":\"VIEWER-%s\",\"email\":\"x@y.z\",\"password\":"
           "\"another-pw-1\"}",
           f->suffix);
  http(f->port_a, "POST", "/v1/users", NULL, body, &r);
  expect(&r, 409, "username_taken");
  http(f->port_a, "POST", "/v1/users", NULL,
       "{\"username\":\"shortpw\",\"email\":\"x@y.z\",\"password\":\"1234567\"}",
       &r);
  expect(&r, 422, "validation_failed");
  http(f->port_a, "POST", "/v1/users", NULL,
       "{\"username\":\"bad name\",\"email\":\"x@y.z\",\"password\":\"12345678\"}",
       &r);
  expect(&r, 422, "validation_failed");
  http(f->port_a, "POST", "/v1/users", NULL,
       "{\"username\":\"n\",\"email\":\"nope\",\"password\":\"12345678\"}", &r);
  expect(&r, 422, "validation_failed");
  http(f->port_a, "POST", "/v1/users", NULL,
       "{\"username\":\"n\",\"email\":\"a@b.c\",\"password\":\"12345678\","
       "\"role\":\"admin\"}",
       &r); /* no self-promotion: a role needs an admin's token */
  expect(&r, 401, "unauthorized");
  http(f->port_a, "POST", "/v1/users", NULL, "{\"username\":", &r);
  expect(&r, 400, "malformed_json");
  done(&r);

  /* login: wrong password and unknown user answer alike */
  assert_int_equal(login(f, vname, "viewer-secret-1", vtoken, &r), 201);
  assert_string_equal(jstr(&r, "token"), vtoken);
  json_t *user = json_object_get(r.json, "user");
  assert_string_equal(json_string_value(json_object_get(user, "id")),
                      viewer_id);
  assert_non_null(jstr(&r, "expires_at"));
  done(&r);
  resp_t wrong = {0}, unknown = {0};
  assert_int_equal(login(f, vname, "viewer-secret-2", NULL, &wrong), 401);
  assert_int_equal(login(f, "nobody-at-all", "viewer-secret-1", NULL, &unknown),
                   401);
  assert_string_equal(jstr(&wrong, "code"), "unauthorized");
  assert_string_equal(jstr(&wrong, "detail"), jstr(&unknown, "detail"));
  done(&wrong);
  done(&unknown);
  /* same name in another case logs in */
  char upper[128];
  snprintf(upper, sizeof(upper), "VIEWER-%s", f->suffix);
  assert_int_equal(login(f, upper, "viewer-secret-1", NULL, NULL), 201);

  /* me */
  http(f->port_a, "GET", "/v1/users/me", vtoken, NULL, &r);
  expect(&r, 200, NULL);
  assert_string_equal(jstr(&r, "id"), viewer_id);
  assert_string_equal(jstr(&r, "role"), "viewer");
  assert_int_equal(json_array_size(json_object_get(r.json, "store_ids")), 0);
  done(&r);
  http(f->port_a, "GET", "/v1/users/me", NULL, NULL, &r);
  expect(&r, 401, "unauthorized");
  assert_non_null(strstr(r.head, "WWW-Authenticate: Bearer"));
  done(&r);
  http(f->port_a, "GET", "/v1/users/me",
       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE", NULL, &r);
  expect(&r, 401, "unauthorized"); /* well-formed, unknown */
  done(&r);
  http(f->port_a, "GET", "/v1/users/me", "not-a-token", NULL, &r);
  expect(&r, 401, "unauthorized");
  done(&r);

  /* a viewer without stores: 403 on store reads and every write */
  assert_int_equal(status_of(f->port_a, "GET", "/v1/stores/" S1 "/probe",
                             vtoken),
                   403);
  assert_int_equal(status_of(f->port_b, "GET", "/v1/stores/" S1 "/probe",
                             vtoken),
                   403);
  assert_int_equal(status_of(f->port_b, "GET", "/v1/products", vtoken), 200);
  assert_int_equal(status_of(f->port_a, "POST", "/v1/products", vtoken), 403);
  /* a non-admin may not change roles, not even its own */
  patch(f, vtoken, viewer_id, "{\"role\":\"admin\"}", 403);

  /* the admin gives the viewer store S1 and then makes it a clerk */
  make_admin(f, admin);
  assert_int_equal(status_of(f->port_a, "POST", "/v1/products", admin), 200);
  assert_int_equal(status_of(f->port_b, "GET", "/v1/stores/" S2 "/probe",
                             admin),
                   200);
  /* B caches the viewer's session now */
  assert_int_equal(status_of(f->port_b, "GET", "/v1/stores/" S1 "/probe",
                             vtoken),
                   403);
  patch(f, admin, viewer_id, "{\"store_ids\":[\"" S1 "\"]}", 200);
  patch(f, admin, viewer_id, "{\"role\":\"root\"}", 422);
  patch(f, admin, viewer_id, "{\"store_ids\":[\"nope\"]}", 422);
  patch(f, admin, viewer_id, "{\"store_ids\":\"" S1 "\"}", 422);
  patch(f, admin, viewer_id, "{}", 422);
  patch(f, admin, "0190a0b0-0000-7000-8000-0000000000ff", "{\"role\":\"clerk\"}",
        404);
  patch(f, admin, "nope", "{\"role\":\"clerk\"}", 404);
  /* the change is seen by B within a second despite its cache */
  long t0 = mono_ms();
  while (status_of(f->port_b, "GET", "/v1/stores/" S1 "/probe", vtoken) != 200) {
    assert_true(mono_ms() - t0 < 1000);
    sleep_ms(5);
  }
  assert_int_equal(status_of(f->port_a, "GET", "/v1/stores/" S1 "/probe",
                             vtoken),
                   200);
  assert_int_equal(status_of(f->port_a, "GET", "/v1/stores/" S2 "/probe",
                             vtoken),
                   403);
  assert_true(f->revokes >= 1); /* B heard of the change */
  /* the list filter: the viewer's stores; none for the admin */
  http(f->port_b, "GET", "/v1/stores/" S1 "/probe", vtoken, NULL, &r);
  expect(&r, 200, NULL);
  assert_string_equal(jstr(&r, "filter"), "{" S1 "}");
  http(f->port_b, "GET", "/v1/products", admin, NULL, &r);
  expect(&r, 200, NULL);
  assert_true(json_is_null(json_object_get(r.json, "filter")));
  http(f->port_b, "GET", "/v1/products", vtoken, NULL, &r);
  expect(&r, 200, NULL);
  assert_string_equal(jstr(&r, "filter"), "{" S1 "}");
  done(&r);
  /* viewer: no writes even in its store */
  assert_int_equal(status_of(f->port_a, "POST", "/v1/stores/" S1 "/transactions",
                             vtoken),
                   403);
  patch(f, admin, viewer_id, "{\"role\":\"clerk\"}", 200);
  t0 = mono_ms();
  while (status_of(f->port_a, "POST", "/v1/stores/" S1 "/transactions", vtoken) != 201) {
    assert_true(mono_ms() - t0 < 1000);
    sleep_ms(5);
  }
  /* a clerk does no counts, and nothing in other stores */
  assert_int_equal(status_of(f->port_a, "POST",
                             "/v1/stores/" S1 "/transactions?kind=count",
                             vtoken),
                   403);
  assert_int_equal(status_of(f->port_a, "POST", "/v1/stores/" S2 "/transactions",
                             vtoken),
                   403);
  patch(f, admin, viewer_id, "{\"role\":\"manager\"}", 200);
  t0 = mono_ms();
  while (status_of(f->port_a, "POST",
                   "/v1/stores/" S1 "/transactions?kind=count", vtoken) != 201) {
    assert_true(mono_ms() - t0 < 1000);
    sleep_ms(5);
  }
  http(f->port_a, "GET", "/v1/users/me", vtoken, NULL, &r);
  expect(&r, 200, NULL);
  assert_string_equal(jstr(&r, "role"), "manager");
  assert_string_equal(
      json_string_value(json_array_get(json_object_get(r.json, "store_ids"), 0)),
      S1);
  done(&r);

  /* logout: dead at once on A, and on B (which cached it) within 1 s */
  assert_int_equal(status_of(f->port_b, "GET", "/v1/stores/" S1 "/probe",
                             vtoken),
                   200);
  http(f->port_a, "DELETE", "/v1/sessions/current", vtoken, NULL, &r);
  expect(&r, 204, NULL);
  done(&r);
  t0 = mono_ms();
  assert_int_equal(status_of(f->port_a, "GET", "/v1/users/me", vtoken), 401);
  while (status_of(f->port_b, "GET", "/v1/stores/" S1 "/probe", vtoken) != 401) {
    assert_true(mono_ms() - t0 < 1000);
    sleep_ms(2);
  }
  print_message("token refused by B %ld ms after logout\n", mono_ms() - t0);
  assert_int_equal(status_of(f->port_a, "DELETE", "/v1/sessions/current",
                             vtoken),
                   401);
  /* the other session of the same user lives on */
  char t2[64];
  assert_int_equal(login(f, vname, "viewer-secret-1", t2, NULL), 201);
  assert_int_equal(status_of(f->port_b, "GET", "/v1/stores/" S1 "/probe", t2),
                   200);
  secret(f, "admin-secret-pw-1");
}

static void test_flow(void **state) {
  fixture_t *f = *state;
  if (!need_pg(f))
    skip();
  cmd_users_opts_t o = {0};
  run(f, &o, flow_client);
}

static void expired_client(fixture_t *f) {
  char id[40], name[128], token[64];
  secret(f, "expiring-pw-1");
  signup(f, "exp", "expiring-pw-1", id, name);
  assert_int_equal(login(f, name, "expiring-pw-1", token, NULL), 201);
  assert_int_equal(status_of(f->port_b, "GET", "/v1/products", token), 200);
  char q[256];
  snprintf(q, sizeof(q),
           "UPDATE sessions SET expires_at = now() - interval '1 second' "
           "WHERE user_id = '%s'",
           id);
  sql(f, q); /* no notification: only the cache's 1 s bound helps */
  long t0 = mono_ms();
  while (status_of(f->port_b, "GET", "/v1/products", token) != 401) {
    assert_true(mono_ms() - t0 < 1100);
    sleep_ms(20);
  }
  assert_int_equal(status_of(f->port_a, "GET", "/v1/users/me", token), 401);
}

static void test_expired(void **state) {
  fixture_t *f = *state;
  if (!need_pg(f))
    skip();
  cmd_users_opts_t o = {0};
  run(f, &o, expired_client);
}

static void ttl_client(fixture_t *f) {
  char name[128], token[64];
  secret(f, "short-lived-1");
  signup(f, "ttl", "short-lived-1", NULL, name);
  assert_int_equal(login(f, name, "short-lived-1", token, NULL), 201);
  assert_int_equal(status_of(f->port_a, "GET", "/v1/users/me", token), 200);
  sleep_ms(2100);
  assert_int_equal(status_of(f->port_a, "GET", "/v1/users/me", token), 401);
  assert_int_equal(status_of(f->port_b, "GET", "/v1/products", token), 401);
}

static void test_session_ttl(void **state) {
  fixture_t *f = *state;
  if (!need_pg(f))
    skip();
  cmd_users_opts_t o = {.session_ttl_s = 2};
  run(f, &o, ttl_client);
}

static void limit_client(fixture_t *f) {
  char name[128], other[128];
  secret(f, "right-password-1");
  signup(f, "victim", "right-password-1", NULL, name);
  signup(f, "bystander", "right-password-1", NULL, other);
  for (int i = 0; i < 3; i++)
    assert_int_equal(login(f, name, "wrong-password", NULL, NULL), 401);
  resp_t r = {0};
  assert_int_equal(login(f, name, "wrong-password", NULL, &r), 429);
  assert_string_equal(jstr(&r, "code"), "too_many_requests");
  char *ra = strstr(r.head, "Retry-After: ");
  assert_non_null(ra);
  long secs = strtol(ra + 13, NULL, 10);
  assert_true(secs >= 1 && secs <= 60);
  done(&r);
  /* the right password does not get through a locked username either */
  assert_int_equal(login(f, name, "right-password-1", NULL, NULL), 429);
  /* other users are not slowed, and their success does not count */
  for (int i = 0; i < 3; i++) {
    long t0 = mono_ms();
    assert_int_equal(login(f, other, "right-password-1", NULL, NULL), 201);
    assert_true(mono_ms() - t0 < 2000);
  }
  /* the address: 8 attempts a minute here, whatever the usernames (3 + 1
   * refused above did not count the refused one; 3 successes were taken
   * back) */
  int refused = 0;
  for (int i = 0; i < 8; i++) {
    char n[64];
    snprintf(n, sizeof(n), "spray-%d-%s", i, f->suffix);
    int st = login(f, n, "whatever-pw", NULL, NULL);
    assert_true(st == 401 || st == 429);
    refused += st == 429;
  }
  assert_int_equal(refused, 3); /* 3 + 5 = 8 counted, then refused */
  assert_int_equal(login(f, other, "right-password-1", NULL, NULL), 429);
}

static void test_rate_limit(void **state) {
  fixture_t *f = *state;
  if (!need_pg(f))
    skip();
  cmd_users_opts_t o = {
      .per_user = {.max_attempts = 3, .window_ms = 60000},
      .per_addr = {.max_attempts = 8, .window_ms = 60000},
  };
  run(f, &o, limit_client);
}

static void timing_client(fixture_t *f) {
  char name[128];
  secret(f, "timing-pw-1");
  signup(f, "timing", "timing-pw-1", NULL, name);
  long wrong = 0, unknown = 0;
  for (int i = 0; i < 4; i++) {
    long t0 = mono_ms();
    assert_int_equal(login(f, name, "not-the-password", NULL, NULL), 401);
    long t1 = mono_ms();
    assert_int_equal(login(f, "no-such-user-xyz", "not-the-password", NULL,
                           NULL),
                     401);
    long t2 = mono_ms();
    wrong += t1 - t0;
    unknown += t2 - t1;
  }
  print_message("wrong password %ld ms, unknown user %ld ms (4 each)\n", wrong,
                unknown);
  /* both run argon2id (tens of ms each), and cost about the same */
  assert_true(wrong >= 4 * 10 && unknown >= 4 * 10);
  assert_true(wrong * 2 >= unknown && unknown * 2 >= wrong);
}

static void test_timing(void **state) {
  fixture_t *f = *state;
  if (!need_pg(f))
    skip();
  cmd_users_opts_t o = {.per_user = {.max_attempts = 100},
                        .per_addr = {.max_attempts = 100}};
  run(f, &o, timing_client);
}

/* ---- the first-admin bootstrap, in a private schema ---- */

/* Runs the account migrations (004, 005) into schema: their tables,
 * functions and triggers. */
static void private_schema(PGconn *db, const char *schema) {
  static const char *const files[] = {"004_auth.sql", "005_accounts.sql"};
  char q[256];
  snprintf(q, sizeof(q), "CREATE SCHEMA %s; SET search_path = %s", schema,
           schema);
  PGresult *r = PQexec(db, q);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    char path[1024];
    snprintf(path, sizeof(path), "%s", __FILE__);
    char *cut = strstr(path, "tests/unit/command/test_users.c");
    assert_non_null(cut);
    snprintf(cut, sizeof(path) - (size_t)(cut - path), "schemas/migrations/%s",
             files[i]);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *text = calloc(1, 65536);
    assert_non_null(text);
    size_t n = fread(text, 1, 65535, fp);
    fclose(fp);
    assert_true(n > 0);
    r = PQexec(db, text);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      fail_msg("%s: %s", files[i], PQerrorMessage(db));
    PQclear(r);
    free(text);
  }
}

/* Runs the loop until u is ready, or has given up for want of a password
 * (and then ms more, to see it stays so), or 10 s passed. */
static bool boot_pending(cmd_users_t *u, uv_loop_t *loop, int ms) {
  uint64_t end = uv_now(loop) + 10000;
  bool refused = false;
  while (!cmd_users_ready(u) && uv_now(loop) < end) {
    if (!refused && strstr(cmd_users_not_ready_reason(u), "not set")) {
      refused = true;
      end = uv_now(loop) + (uint64_t)ms;
    }
    uv_run(loop, UV_RUN_NOWAIT);
    sleep_ms(5);
    uv_update_time(loop);
  }
  return !cmd_users_ready(u);
}

/* One service instance's life in the private schema: new, bootstrap,
 * wait up to ms, then shut down. Returns whether it became ready. */
static bool boot_once(fixture_t *f, const char *dsn, const char *password,
                      int ms, char *reason, size_t cap) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  sf_pg_t *pg;
  sf_authn_t *authn;
  cmd_users_t *u;
  sf_pg_opts_t po = {.dsn = dsn, .pool_size = 1};
  assert_int_equal(sf_pg_new(&pg, &loop, &po, f->log), 0);
  assert_int_equal(sf_authn_new(&authn, &loop, pg, NULL, f->log), 0);
  cmd_users_opts_t uo = {.admin_username = "Boss", .admin_password = password};
  assert_int_equal(cmd_users_new(&u, &loop, pg, authn, &uo, f->log), 0);
  assert_int_equal(cmd_users_bootstrap(u), 0);
  assert_int_equal(cmd_users_bootstrap(u), SF_EINVAL);
  bool ready = !boot_pending(u, &loop, ms);
  snprintf(reason, cap, "%s", cmd_users_not_ready_reason(u));
  cmd_users_shutdown(u);
  int closed = 0;
  sf_pg_close(pg, on_closed_count, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_DEFAULT);
  sf_authn_destroy(authn);
  cmd_users_destroy(u);
  assert_int_equal(uv_loop_close(&loop), 0);
  return ready;
}

static void test_bootstrap(void **state) {
  fixture_t *f = *state;
  if (!need_pg(f))
    skip();
  char schema[40], dsn[512], reason[200];
  snprintf(schema, sizeof(schema), "boot_%s", f->suffix);
  PGconn *db = PQconnectdb(f->dsn);
  assert_int_equal(PQstatus(db), CONNECTION_OK);
  private_schema(db, schema);
  snprintf(dsn, sizeof(dsn), "%s options='-c search_path=%s'", f->dsn, schema);
  /* no admin, no password: never ready, and it says why */
  assert_false(boot_once(f, dsn, NULL, 400, reason, sizeof(reason)));
  assert_non_null(strstr(reason, "STOCKFLOW_ADMIN_PASSWORD"));
  assert_false(boot_once(f, dsn, "", 200, reason, sizeof(reason)));
  /* a password too short is a configuration error */
  cmd_users_t *u = NULL;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  sf_pg_t *pg;
  sf_authn_t *authn;
  sf_pg_opts_t po = {.dsn = dsn, .pool_size = 1};
  assert_int_equal(sf_pg_new(&pg, &loop, &po, f->log), 0);
  assert_int_equal(sf_authn_new(&authn, &loop, pg, NULL, f->log), 0);
  cmd_users_opts_t bad = {.admin_password = "short"};
  assert_int_equal(cmd_users_new(&u, &loop, pg, authn, &bad, f->log),
                   SF_ECONFIG);
  cmd_users_opts_t badname = {.admin_username = "a b",
                              .admin_password = "long-enough-1"};
  assert_int_equal(cmd_users_new(&u, &loop, pg, authn, &badname, f->log),
                   SF_EINVAL);
  /* trusted proxies (STOCKFLOW_TRUSTED_PROXIES) are IP addresses, nothing
   * else: no names, no networks */
  static const char *const bad_proxies[] = {"localhost", "127.0.0.1,10/8",
                                            "1.2.3.4.5", "127.0.0.1;::1"};
  for (size_t i = 0; i < sizeof(bad_proxies) / sizeof(bad_proxies[0]); i++) {
    cmd_users_opts_t o = {.trusted_proxies = bad_proxies[i]};
    assert_int_equal(cmd_users_new(&u, &loop, pg, authn, &o, f->log),
                     SF_ECONFIG);
  }
  cmd_users_opts_t proxies = {.trusted_proxies = " 127.0.0.1 , ::1,"};
  assert_int_equal(cmd_users_new(&u, &loop, pg, authn, &proxies, f->log), 0);
  cmd_users_destroy(u);
  u = NULL;
  int closed = 0;
  sf_pg_close(pg, on_closed_count, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  sf_authn_destroy(authn);
  assert_int_equal(uv_loop_close(&loop), 0);
  /* with a password: the admin is created, ready */
  secret(f, "first-admin-pw-1");
  assert_true(boot_once(f, dsn, "first-admin-pw-1", 5000, reason,
                        sizeof(reason)));
  assert_string_equal(reason, "");
  char q[256];
  snprintf(q, sizeof(q),
           "SELECT username, role, password_hash FROM %s.users", schema);
  PGresult *r = PQexec(db, q);
  assert_int_equal(PQntuples(r), 1);
  assert_string_equal(PQgetvalue(r, 0, 0), "boss");
  assert_string_equal(PQgetvalue(r, 0, 1), "admin");
  assert_true(sf_auth_password_verify(PQgetvalue(r, 0, 2), "first-admin-pw-1"));
  PQclear(r);
  /* a later start with another password changes nothing */
  secret(f, "other-admin-pw-2");
  assert_true(boot_once(f, dsn, "other-admin-pw-2", 5000, reason,
                        sizeof(reason)));
  r = PQexec(db, q);
  assert_int_equal(PQntuples(r), 1);
  assert_true(sf_auth_password_verify(PQgetvalue(r, 0, 2), "first-admin-pw-1"));
  PQclear(r);
  /* and without a password, once an admin exists: ready */
  assert_true(boot_once(f, dsn, NULL, 5000, reason, sizeof(reason)));
  snprintf(q, sizeof(q), "SET client_min_messages = warning; DROP SCHEMA %s CASCADE", schema);
  r = PQexec(db, q);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  PQfinish(db);
  /* the log said why, and held no password */
  fflush(f->logf);
  long size = ftell(f->logf);
  char *text = calloc(1, (size_t)size + 1);
  assert_non_null(text);
  rewind(f->logf);
  assert_int_equal(fread(text, 1, (size_t)size, f->logf), (size_t)size);
  assert_non_null(strstr(text, "refusing to become ready"));
  assert_non_null(strstr(text, "created the first admin"));
  for (int i = 0; i < f->n_secrets; i++)
    assert_null(strstr(text, f->secrets[i]));
  free(text);
}

/* ---- the last enabled admin (migration 005's trigger), in a private
 * schema so that no other admin counts ---- */

/* Runs q on db; returns the SQLSTATE of its error ("" when it worked). */
static const char *exec_state(PGconn *db, const char *q, char out[6]) {
  PGresult *r = PQexec(db, q);
  ExecStatusType st = PQresultStatus(r);
  const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  snprintf(out, 6, "%s",
           (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? ""
           : code                                            ? code
                                                             : "?????");
  PQclear(r);
  return out;
}

static PGconn *connect_schema(fixture_t *f, const char *schema) {
  char dsn[512];
  snprintf(dsn, sizeof(dsn), "%s options='-c search_path=%s'", f->dsn, schema);
  PGconn *c = PQconnectdb(dsn);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  return c;
}

static void test_last_admin(void **state) {
  fixture_t *f = *state;
  if (!need_pg(f))
    skip();
  char schema[40], st[6], q[512];
  snprintf(schema, sizeof(schema), "lastadm_%s", f->suffix);
  PGconn *db = PQconnectdb(f->dsn);
  assert_int_equal(PQstatus(db), CONNECTION_OK);
  private_schema(db, schema);
  PGconn *c1 = connect_schema(f, schema), *c2 = connect_schema(f, schema);
  static const char *const ids[] = {"0190a0b0-0000-7000-8000-00000000ad01",
                                    "0190a0b0-0000-7000-8000-00000000ad02",
                                    "0190a0b0-0000-7000-8000-00000000ad03"};
  char hash[SF_AUTH_PWHASH_MAX];
  assert_int_equal(sf_auth_password_hash("irrelevant-pw", hash), 0);
  for (int i = 0; i < 3; i++) {
    snprintf(q, sizeof(q),
             "INSERT INTO users (id, username, email, password_hash, role) "
             "VALUES ('%s', 'adm%d', '', '%s', '%s')",
             ids[i], i, hash, i < 2 ? "admin" : "viewer");
    assert_string_equal(exec_state(c1, q, st), "");
  }
#define USER_SET(set, id) \
  (snprintf(q, sizeof(q), "UPDATE users SET %s WHERE id = '%s'", set, id), q)
  /* With two admins one may go; the other is then the last one: it can
   * be neither disabled, nor demoted, nor deleted, and a viewer's changes
   * are not held up by the rule. */
  assert_string_equal(exec_state(c1, USER_SET("disabled_at = now()", ids[0]),
                                 st),
                      "");
  assert_string_equal(exec_state(c1, USER_SET("disabled_at = now()", ids[1]),
                                 st),
                      "SF409");
  assert_string_equal(exec_state(c1, USER_SET("role = 'manager'", ids[1]), st),
                      "SF409");
  snprintf(q, sizeof(q), "DELETE FROM users WHERE id = '%s'", ids[1]);
  assert_string_equal(exec_state(c1, q, st), "SF409");
  assert_string_equal(exec_state(c1, USER_SET("disabled_at = now()", ids[2]),
                                 st),
                      "");
  /* a disabled admin does not count and may be demoted */
  assert_string_equal(exec_state(c1, USER_SET("role = 'clerk'", ids[0]), st),
                      "");
  /* Promoting the viewer makes two admins again. Then two transactions at
   * once each take one away: the second waits for the first on the
   * advisory lock, sees its commit and fails. */
  assert_string_equal(exec_state(c1, USER_SET("role = 'admin', "
                                              "disabled_at = NULL",
                                              ids[2]),
                                 st),
                      "");
  assert_string_equal(exec_state(c1, "BEGIN", st), "");
  assert_string_equal(exec_state(c1, USER_SET("disabled_at = now()", ids[1]),
                                 st),
                      "");
  assert_int_equal(PQsendQuery(c2, USER_SET("role = 'viewer'", ids[2])), 1);
  sleep_ms(200);
  assert_int_equal(PQconsumeInput(c2), 1);
  assert_int_equal(PQisBusy(c2), 1); /* held by c1's lock */
  assert_string_equal(exec_state(c1, "COMMIT", st), "");
  PGresult *r = PQgetResult(c2);
  assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
  assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "SF409");
  PQclear(r);
  while ((r = PQgetResult(c2)))
    PQclear(r);
  r = PQexec(c1, "SELECT count(*) FROM users WHERE role = 'admin' "
                 "AND disabled_at IS NULL");
  assert_string_equal(PQgetvalue(r, 0, 0), "1");
  PQclear(r);
#undef USER_SET
  PQfinish(c1);
  PQfinish(c2);
  snprintf(q, sizeof(q),
           "SET client_min_messages = warning; DROP SCHEMA %s CASCADE",
           schema);
  assert_string_equal(exec_state(db, q, st), "");
  PQfinish(db);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_flow, setup, teardown),
      cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
      cmocka_unit_test_setup_teardown(test_session_ttl, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bootstrap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_last_admin, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
