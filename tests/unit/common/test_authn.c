/* Unit tests of common/src/authn.c's two token checks that answer nothing
 * themselves: sf_authn_check_token (a token that came with a request, e.g.
 * a Parse session token) and sf_authn_lookup_token (one without a request:
 * LiveQuery's connect). Both must give the same sf_authn_outcome_t for the
 * same token, so every case runs through both.
 *
 * A real sf_http server on 127.0.0.1 (port 0) and an sf_upstream client
 * share the test thread's loop: a request carries the token to a handler
 * that calls sf_authn_check_token (the only way to get an sf_http_req_t).
 *
 * Without a database (always run): NULL, empty and malformed tokens are
 * refused at once without a look-up, and a database that does not answer
 * is SF_AUTHN_UNAVAILABLE. With STOCKFLOW_TEST_PG_DSN (tests/run.sh sets
 * it): the pool's search_path is a private schema holding tables shaped
 * like sessions and users but without their CHECKs, so that a valid,
 * unknown, expired, revoked or disabled session and a malformed account
 * row (SF_AUTHN_INTERNAL) can all be written; a cached session is answered
 * before the call returns and dropped by a stockflow_auth notification.
 * Every teardown checks that the loop closes with no handle left and that
 * no token reached the log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "sf/auth.h"
#include "sf/authn.h"
#include "sf/err.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"
#include "sf/upstream.h"
#include "sf/uuid.h"

#include "../curl_fixture.h"
#include "../log_fixture.h"

#define S1 "0190a0b0-0000-7000-8000-00000000b001"
#define S2 "0190a0b0-0000-7000-8000-00000000b002"
/* Nothing listens on port 1: a pool that never connects. */
#define DEAD_DSN "host=127.0.0.1 port=1 dbname=none connect_timeout=1"
#define DEAD_AFTER_MS 300 /* the dead pool's unavailable_after_ms */

typedef enum via { VIA_REQUEST,
                   VIA_LOOKUP } via_t;

/* What one check's callback saw. */
typedef struct seen {
  int fired;     /* callback calls */
  bool sync;     /* fired before the check returned */
  int rc;        /* sf_authn_lookup_token's return (VIA_LOOKUP) */
  bool answered; /* VIA_REQUEST: the HTTP answer came back */
  sf_authn_outcome_t outcome;
  bool has_p;
  bool p_is_req_data; /* VIA_REQUEST: p is sf_authn_principal(req) */
  char user_id[SF_UUID_STR_LEN + 1];
  char username[SF_AUTH_USERNAME_MAX + 1];
  sf_role_t role;
  size_t n_stores;
  char store0[SF_UUID_STR_LEN + 1];
} seen_t;

typedef struct fixture {
  const char *dsn; /* STOCKFLOW_TEST_PG_DSN, or NULL */
  char schema[40]; /* the private schema (with a database) */
  PGconn *db;      /* the test's own connection: rows, NOTIFY */
  sf_uuidgen_t ids;
  FILE *logf;
  sf_log_t *log;
  uv_loop_t loop;
  uv_timer_t tick;
  sf_pg_t *pg;
  sf_authn_t *authn;
  sf_http_server_t *http;
  sf_upstream_t *up;
  char url[64];
  bool in_call;      /* inside sf_authn_check_token / _lookup_token */
  const char *token; /* the request's token (VIA_REQUEST) */
  seen_t seen;
  int closed;
  char secrets[8][SF_AUTH_TOKEN_LEN + 1]; /* tokens the log must not hold */
  int n_secrets;
} fixture_t;

/* ---- callbacks ---- */

static void record(fixture_t *f, sf_authn_outcome_t outcome,
                   const sf_principal_t *p) {
  seen_t *s = &f->seen;
  s->fired++;
  s->sync = f->in_call;
  s->outcome = outcome;
  s->has_p = p != NULL;
  if (!p)
    return;
  snprintf(s->user_id, sizeof(s->user_id), "%s", p->user_id);
  snprintf(s->username, sizeof(s->username), "%s", p->username);
  s->role = p->role;
  s->n_stores = p->n_stores;
  if (p->n_stores)
    snprintf(s->store0, sizeof(s->store0), "%s", p->store_ids[0]);
}

static void on_checked(sf_http_req_t *req, sf_authn_outcome_t outcome,
                       const sf_principal_t *p, void *ud) {
  fixture_t *f = ud;
  record(f, outcome, p);
  f->seen.p_is_req_data = p && sf_authn_principal(req) == p;
  sf_http_respond(req, 200, "text/plain", "checked", 7);
}

/* GET /check: the token is f->token (the test's, not the request's, so
 * that NULL and "" can be sent as such). */
static void h_check(sf_http_req_t *req, void *ud) {
  fixture_t *f = ud;
  f->in_call = true;
  sf_authn_check_token(f->authn, req, f->token, on_checked, f);
  f->in_call = false;
}

static void on_looked_up(void *ud, sf_authn_outcome_t outcome,
                         const sf_principal_t *p) {
  record(ud, outcome, p);
}

static void on_answer(const sf_upstream_res_t *res, void *ud) {
  fixture_t *f = ud;
  assert_int_equal(res->err, 0);
  assert_int_equal(res->status, 200);
  f->seen.answered = true;
}

static void tick_cb(uv_timer_t *t) { (void)t; }

/* ---- the check ---- */

/* Checks token one way; returns what the callback saw once it fired (or,
 * for a look-up that returned an error, at once). */
static const seen_t *check(fixture_t *f, via_t via, const char *token) {
  memset(&f->seen, 0, sizeof(f->seen));
  if (via == VIA_LOOKUP) {
    f->in_call = true;
    f->seen.rc = sf_authn_lookup_token(f->authn, token, on_looked_up, f);
    f->in_call = false;
    if (f->seen.rc != 0)
      return &f->seen;
    while (!f->seen.fired)
      uv_run(&f->loop, UV_RUN_ONCE);
  } else {
    f->token = token;
    sf_upstream_call_t call = {.method = "GET", .url = f->url, .timeout_ms = 10000};
    assert_int_equal(sf_upstream_send(f->up, &call, on_answer, f, NULL), 0);
    while (!f->seen.answered)
      uv_run(&f->loop, UV_RUN_ONCE);
  }
  assert_int_equal(f->seen.fired, 1);
  return &f->seen;
}

/* The outcome of token, the same both ways. */
static sf_authn_outcome_t outcome_both(fixture_t *f, const char *token) {
  sf_authn_outcome_t o = check(f, VIA_REQUEST, token)->outcome;
  const seen_t *s = check(f, VIA_LOOKUP, token);
  assert_int_equal(s->rc, 0);
  assert_int_equal(s->outcome, o);
  return o;
}

static sf_authn_stats_t stats(const fixture_t *f) {
  sf_authn_stats_t st;
  sf_authn_stats(f->authn, &st);
  return st;
}

/* The gate's counters so far (a negative expectation: not checked). */
static void expect_stats(const fixture_t *f, int64_t lookups, int64_t hits,
                         int64_t refused) {
  sf_authn_stats_t st = stats(f);
  if (lookups >= 0)
    assert_int_equal(st.lookups, lookups);
  if (hits >= 0)
    assert_int_equal(st.hits, hits);
  if (refused >= 0)
    assert_int_equal(st.refused, refused);
}

/* ---- database rows (the test's own connection, blocking) ---- */

static void sql(fixture_t *f, const char *q, int n, const char *const *p) {
  PGresult *r = PQexecParams(f->db, q, n, NULL, p, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("%s: %s", q, PQerrorMessage(f->db));
  PQclear(r);
}

/* A user (id out) with role text and stores S1, S2. */
static void user(fixture_t *f, const char *role, bool disabled,
                 char id[SF_UUID_STR_LEN + 1]) {
  sf_uuid_v7_str(&f->ids, id);
  char name[48];
  snprintf(name, sizeof(name), "u-%s", id);
  const char *p[] = {id, name, role, disabled ? "t" : "f"};
  sql(f,
      "INSERT INTO users (id, username, role, store_ids, disabled_at) "
      "VALUES ($1, $2, $3, '{" S1 "," S2 "}', "
      "CASE WHEN $4::bool THEN now() END)",
      4, p);
}

/* A well-formed token no session has. */
static void unknown_token(fixture_t *f, char token[SF_AUTH_TOKEN_LEN + 1]) {
  sf_auth_token_new(token);
  assert_true(f->n_secrets < 8);
  snprintf(f->secrets[f->n_secrets++], SF_AUTH_TOKEN_LEN + 1, "%s", token);
}

/* A new token (out) with a session of user_id; expires_in and revoked are
 * SQL text ("1 hour", "-1 second"; revoked "t"/"f"). */
static void session(fixture_t *f, const char *user_id, const char *expires_in,
                    bool revoked, char token[SF_AUTH_TOKEN_LEN + 1]) {
  unknown_token(f, token);
  uint8_t h[SF_AUTH_HASH_BYTES];
  assert_int_equal(sf_auth_token_hash(token, h), 0);
  char hex[67];
  sf_auth_hash_bytea(h, hex);
  const char *p[] = {hex, user_id, expires_in, revoked ? "t" : "f"};
  sql(f,
      "INSERT INTO sessions (token_hash, user_id, expires_at, revoked_at) "
      "VALUES ($1::bytea, $2, now() + $3::interval, "
      "CASE WHEN $4::bool THEN now() END)",
      4, p);
}

/* A user of role with a session of an hour: its id and token. */
static void live_session(fixture_t *f, const char *role,
                         char id[SF_UUID_STR_LEN + 1],
                         char token[SF_AUTH_TOKEN_LEN + 1]) {
  user(f, role, false, id);
  session(f, id, "1 hour", false, token);
}

/* ---- fixture ---- */

static void on_closed(void *ud) { ((fixture_t *)ud)->closed++; }

static int setup_with(void **state, bool database, int cache_ms) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  *state = f;
  f->dsn = getenv("STOCKFLOW_TEST_PG_DSN");
  if (f->dsn && !*f->dsn)
    f->dsn = NULL;
  if (database && !f->dsn) {
    print_message("STOCKFLOW_TEST_PG_DSN not set: skipping (tests/run.sh "
                  "runs this against a real PostgreSQL)\n");
    return 0;
  }
  char dsn[1024];
  if (database) {
    uint8_t rnd[6];
    char hex[13];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(f->schema, sizeof(f->schema), "sf_authn_%s", hex);
    sf_uuidgen_init(&f->ids);
    f->db = PQconnectdb(f->dsn);
    assert_int_equal(PQstatus(f->db), CONNECTION_OK);
    char q[512];
    snprintf(q, sizeof(q),
             "SET client_min_messages = warning; "
             "CREATE SCHEMA %s; SET search_path = %s; "
             "CREATE TABLE users (id uuid PRIMARY KEY, username text, "
             "role text, store_ids uuid[], disabled_at timestamptz); "
             "CREATE TABLE sessions (token_hash bytea PRIMARY KEY, "
             "user_id uuid, expires_at timestamptz, revoked_at timestamptz)",
             f->schema, f->schema);
    PGresult *r = PQexec(f->db, q);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    snprintf(dsn, sizeof(dsn), "%s options='-c search_path=%s'", f->dsn,
             f->schema);
  } else {
    snprintf(dsn, sizeof(dsn), "%s", DEAD_DSN);
  }
  f->logf = tmpfile();
  assert_non_null(f->logf);
  assert_int_equal(sf_log_new(&f->log, "test", SF_LOG_DEBUG, f->logf), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  sf_pg_opts_t po = {.dsn = dsn,
                     .pool_size = 1,
                     .unavailable_after_ms = database ? 0 : DEAD_AFTER_MS};
  assert_int_equal(sf_pg_new(&f->pg, &f->loop, &po, f->log), 0);
  sf_authn_opts_t ao = {.cache_ms = cache_ms};
  assert_int_equal(sf_authn_new(&f->authn, &f->loop, f->pg, &ao, f->log), 0);
  assert_int_equal(sf_http_server_new(&f->http, &f->loop, NULL, f->log), 0);
  assert_int_equal(sf_http_route(f->http, "GET", "/check", h_check, f), 0);
  assert_int_equal(sf_http_listen(f->http, "127.0.0.1", 0), 0);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/check",
           sf_http_bound_port(f->http));
  assert_int_equal(sf_upstream_new(&f->up, &f->loop, 4096, f->log), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
  assert_int_equal(uv_timer_start(&f->tick, tick_cb, 5, 5), 0);
  return 0;
}

static bool skipped(fixture_t *f) {
  if (f->authn)
    return false;
  skip();
  return true;
}

static int setup_no_database(void **state) {
  return setup_with(state, false, 0);
}
static int setup_database(void **state) { return setup_with(state, true, 0); }
static int setup_database_no_cache(void **state) {
  return setup_with(state, true, -1);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->authn) {
    uv_close((uv_handle_t *)&f->tick, NULL);
    sf_upstream_close(f->up, on_closed, f);
    sf_http_server_close(f->http, on_closed, f);
    sf_pg_close(f->pg, on_closed, f); /* before the gate goes */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->closed, 3);
    sf_upstream_destroy(f->up);
    sf_http_server_destroy(f->http);
    sf_authn_destroy(f->authn);
    assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle closed */
    /* No token ever reaches the log. */
    char *text = log_fixture_text(f->logf);
    for (int i = 0; i < f->n_secrets; i++)
      if (strstr(text, f->secrets[i]))
        fail_msg("the log holds a token: %s", f->secrets[i]);
    free(text);
    sf_log_destroy(f->log);
    fclose(f->logf);
  }
  if (f->db) {
    char q[128];
    snprintf(q, sizeof(q), "DROP SCHEMA %s CASCADE", f->schema);
    PQclear(PQexec(f->db, q));
    PQfinish(f->db);
  }
  free(f);
  return 0;
}

/* ---- tests without a database ---- */

static void test_outcomes_are_distinct(void **state) {
  (void)state;
  const sf_authn_outcome_t all[] = {SF_AUTHN_OK, SF_AUTHN_INVALID,
                                    SF_AUTHN_UNAVAILABLE, SF_AUTHN_INTERNAL};
  for (size_t i = 0; i < 4; i++)
    for (size_t j = i + 1; j < 4; j++)
      assert_int_not_equal(all[i], all[j]);
  /* callers zero-fill and switch: OK is the zero value */
  assert_int_equal(SF_AUTHN_OK, 0);
}

/* NULL, empty and malformed tokens: refused at once (before the check
 * returns), both ways, without asking the database, counted as refused. */
static void test_malformed_tokens_refused_at_once(void **state) {
  fixture_t *f = *state;
  char long_token[SF_AUTH_TOKEN_LEN + 2], short_token[SF_AUTH_TOKEN_LEN];
  char bad_char[SF_AUTH_TOKEN_LEN + 1];
  memset(long_token, 'A', SF_AUTH_TOKEN_LEN + 1);
  long_token[SF_AUTH_TOKEN_LEN + 1] = '\0';
  memset(short_token, 'A', SF_AUTH_TOKEN_LEN - 1);
  short_token[SF_AUTH_TOKEN_LEN - 1] = '\0';
  memset(bad_char, 'A', SF_AUTH_TOKEN_LEN);
  bad_char[SF_AUTH_TOKEN_LEN] = '\0';
  bad_char[7] = '.';
  const char *const bad[] = {NULL, "", short_token, long_token, bad_char,
                             "r:AAAA"};
  uint64_t refused = 0;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    for (via_t via = VIA_REQUEST; via <= VIA_LOOKUP; via++) {
      const seen_t *s = check(f, via, bad[i]);
      assert_int_equal(s->rc, 0);
      assert_int_equal(s->outcome, SF_AUTHN_INVALID);
      assert_true(s->sync);
      assert_false(s->has_p);
      refused++;
    }
  }
  expect_stats(f, 0, 0, (int64_t)refused);
}

/* A well-formed token while the database does not answer: unavailable.
 * At first both checks wait in the pool's queue and fail together when the
 * pool gives up (DEAD_AFTER_MS); after that the pool refuses at once: the
 * request's check says so before returning, the look-up returns the error
 * and its callback never fires. */
static void test_database_down(void **state) {
  fixture_t *f = *state;
  char token[SF_AUTH_TOKEN_LEN + 1];
  unknown_token(f, token);
  /* queued: a look-up, then a request's check while it waits */
  seen_t looked = {0};
  f->in_call = true;
  assert_int_equal(sf_authn_lookup_token(f->authn, token, on_looked_up, f),
                   0);
  f->in_call = false;
  assert_int_equal(f->seen.fired, 0);
  memset(&f->seen, 0, sizeof(f->seen));
  f->token = token;
  sf_upstream_call_t call = {
      .method = "GET", .url = f->url, .timeout_ms = 10000};
  assert_int_equal(sf_upstream_send(f->up, &call, on_answer, f, NULL), 0);
  while (!f->seen.answered)
    uv_run(&f->loop, UV_RUN_ONCE);
  /* both callbacks wrote f->seen: the look-up's first (queued first) */
  looked = f->seen;
  assert_int_equal(looked.fired, 2);
  assert_int_equal(looked.outcome, SF_AUTHN_UNAVAILABLE);
  assert_false(looked.sync);
  assert_false(looked.has_p);
  /* refused at once now */
  const seen_t *s = check(f, VIA_REQUEST, token);
  assert_int_equal(s->outcome, SF_AUTHN_UNAVAILABLE);
  assert_true(s->sync);
  assert_false(s->has_p);
  s = check(f, VIA_LOOKUP, token);
  assert_int_equal(s->rc, SF_EUNAVAILABLE);
  assert_int_equal(s->fired, 0);
  expect_stats(f, -1, 0, 0); /* unavailable is not a refusal */
}

static void test_lookup_arguments(void **state) {
  fixture_t *f = *state;
  int fired = 0;
  assert_int_equal(sf_authn_lookup_token(NULL, "x", on_looked_up, &fired),
                   SF_EINVAL);
  assert_int_equal(sf_authn_lookup_token(f->authn, "x", NULL, &fired),
                   SF_EINVAL);
  assert_int_equal(fired, 0);
}

/* ---- tests with a database ---- */

/* A live session: its principal, both ways; behind a request it is also
 * the request's data. Then the cache answers before the call returns. */
static void test_valid_token(void **state) {
  fixture_t *f = *state;
  if (skipped(f))
    return;
  char id[SF_UUID_STR_LEN + 1], token[SF_AUTH_TOKEN_LEN + 1];
  live_session(f, "manager", id, token);
  for (via_t via = VIA_REQUEST; via <= VIA_LOOKUP; via++) {
    const seen_t *s = check(f, via, token);
    assert_int_equal(s->rc, 0);
    assert_int_equal(s->outcome, SF_AUTHN_OK);
    assert_true(s->has_p);
    assert_string_equal(s->user_id, id);
    assert_memory_equal(s->username, "u-", 2);
    assert_string_equal(s->username + 2, id);
    assert_int_equal(s->role, SF_ROLE_MANAGER);
    assert_int_equal(s->n_stores, 2);
    assert_string_equal(s->store0, S1);
    if (via == VIA_REQUEST)
      assert_true(s->p_is_req_data);
    /* the first check looked it up; the second is a cache hit */
    assert_int_equal(s->sync, via == VIA_LOOKUP);
  }
  /* cached: both ways answer before the call returns */
  for (via_t via = VIA_REQUEST; via <= VIA_LOOKUP; via++) {
    const seen_t *s = check(f, via, token);
    assert_int_equal(s->outcome, SF_AUTHN_OK);
    assert_true(s->sync);
    assert_string_equal(s->user_id, id);
  }
  expect_stats(f, 1, 3, 0);
}

/* Unknown, expired, revoked, a disabled user's: invalid, both ways (no
 * cache, so each way asks the database). */
static void test_dead_sessions_invalid(void **state) {
  fixture_t *f = *state;
  if (skipped(f))
    return;
  char live[SF_UUID_STR_LEN + 1], off[SF_UUID_STR_LEN + 1];
  user(f, "clerk", false, live);
  user(f, "clerk", true, off);
  char unknown[SF_AUTH_TOKEN_LEN + 1], expired[SF_AUTH_TOKEN_LEN + 1];
  char revoked[SF_AUTH_TOKEN_LEN + 1], disabled[SF_AUTH_TOKEN_LEN + 1];
  char good[SF_AUTH_TOKEN_LEN + 1];
  unknown_token(f, unknown);
  session(f, live, "-1 second", false, expired);
  session(f, live, "1 hour", true, revoked);
  session(f, off, "1 hour", false, disabled);
  session(f, live, "1 hour", false, good);
  assert_int_equal(outcome_both(f, unknown), SF_AUTHN_INVALID);
  assert_int_equal(outcome_both(f, expired), SF_AUTHN_INVALID);
  assert_int_equal(outcome_both(f, revoked), SF_AUTHN_INVALID);
  assert_int_equal(outcome_both(f, disabled), SF_AUTHN_INVALID);
  /* the same user's live session still works */
  assert_int_equal(outcome_both(f, good), SF_AUTHN_OK);
  expect_stats(f, 10, 0, 8);
}

/* An account row the gate cannot read (a role it does not know): an
 * internal error, not a refusal, and nothing cached. */
static void test_malformed_row_internal(void **state) {
  fixture_t *f = *state;
  if (skipped(f))
    return;
  char id[SF_UUID_STR_LEN + 1], token[SF_AUTH_TOKEN_LEN + 1];
  live_session(f, "wizard", id, token);
  assert_int_equal(outcome_both(f, token), SF_AUTHN_INTERNAL);
  assert_false(f->seen.has_p);
  expect_stats(f, -1, 0, 0);
}

/* A cached session revoked in the database: still answered from the cache
 * (at most cache_ms) until the stockflow_auth notification for its user
 * comes, then invalid at once, both ways. */
static void test_revoked_while_cached(void **state) {
  fixture_t *f = *state;
  if (skipped(f))
    return;
  char id[SF_UUID_STR_LEN + 1], token[SF_AUTH_TOKEN_LEN + 1];
  live_session(f, "viewer", id, token);
  assert_int_equal(outcome_both(f, token), SF_AUTHN_OK); /* now cached */
  const char *p[] = {id};
  sql(f, "UPDATE sessions SET revoked_at = now() WHERE user_id = $1", 1, p);
  /* The gate's LISTEN connection may not be up yet: notify again until
   * one arrives (for at most 5 s). */
  sf_authn_stats_t st = {0};
  for (int i = 0; i < 100 && st.notifications == 0; i++) {
    sql(f, "SELECT pg_notify('stockflow_auth', $1::text)", 1, p);
    uint64_t until = uv_now(&f->loop) + 50;
    do {
      uv_run(&f->loop, UV_RUN_ONCE);
      st = stats(f);
    } while (st.notifications == 0 && uv_now(&f->loop) < until);
  }
  assert_true(st.notifications > 0);
  assert_int_equal(outcome_both(f, token), SF_AUTHN_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_outcomes_are_distinct),
      cmocka_unit_test_setup_teardown(test_malformed_tokens_refused_at_once,
                                      setup_no_database, teardown),
      cmocka_unit_test_setup_teardown(test_database_down, setup_no_database,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_lookup_arguments,
                                      setup_no_database, teardown),
      cmocka_unit_test_setup_teardown(test_valid_token, setup_database,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dead_sessions_invalid,
                                      setup_database_no_cache, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_row_internal,
                                      setup_database_no_cache, teardown),
      cmocka_unit_test_setup_teardown(test_revoked_while_cached,
                                      setup_database, teardown),
  };
  return cmocka_run_group_tests(tests, curl_group_setup, curl_group_teardown);
}
