/* test_pg: the libpq pool against a real PostgreSQL named by
 * STOCKFLOW_TEST_PG_DSN (tests/run.sh exports it for the integration tier).
 * Without it every test is skipped with a note. Covers prepared queries,
 * SQL errors with SQLSTATE, NULL parameters, ordering under concurrency,
 * statement_timeout, a backend killed mid-query, an unreachable server,
 * close with queued work and LISTEN/NOTIFY. Each test checks that all
 * handles are closed. */
#include "sf/err.h"
#include "sf/log.h"
#include "sf/pg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct fixture {
  const char *dsn;
  sf_log_t *log;
  uv_loop_t loop;
  sf_pg_t *pg;
} fixture_t;

/* One record per callback. */
typedef struct result {
  int fired;
  int err;
  char sqlstate[8];
  char errmsg[256];
  char v0[64], v1[64];
  int ntuples;
} result_t;

static void on_result(void *ud, int err, const PGresult *res,
                      const char *sqlstate, const char *errmsg) {
  result_t *r = ud;
  r->fired++;
  r->err = err;
  if (err) {
    assert_null(res);
    assert_non_null(sqlstate);
    assert_non_null(errmsg);
    snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", sqlstate);
    snprintf(r->errmsg, sizeof(r->errmsg), "%s", errmsg);
    return;
  }
  assert_non_null(res);
  r->ntuples = PQntuples(res);
  if (r->ntuples > 0 && PQnfields(res) > 0)
    snprintf(r->v0, sizeof(r->v0), "%s", PQgetvalue(res, 0, 0));
  if (r->ntuples > 0 && PQnfields(res) > 1)
    snprintf(r->v1, sizeof(r->v1), "%s", PQgetvalue(res, 0, 1));
}

static void on_stop_timer(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop while pending(arg) holds (or timeout_ms). */
static void run_while(uv_loop_t *loop, bool (*pending)(void *), void *arg,
                      int timeout_ms) {
  uint64_t deadline = uv_now(loop) + (uint64_t)timeout_ms;
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_stop_timer, 10, 10);
  while ((!pending || pending(arg)) && uv_now(loop) < deadline)
    uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

static bool not_fired(void *arg) { return ((result_t *)arg)->fired == 0; }
static bool not_ready(void *arg) { return !sf_pg_ready(arg); }

static void run_ms(uv_loop_t *loop, int ms) { run_while(loop, NULL, NULL, ms); }

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->dsn = getenv("STOCKFLOW_TEST_PG_DSN");
  if (f->dsn && !*f->dsn)
    f->dsn = NULL;
  sf_log_level_t level = SF_LOG_ERROR;
  const char *lv = getenv("STOCKFLOW_TEST_LOG_LEVEL");
  if (lv)
    assert_int_equal(sf_log_level_parse(lv, &level), 0);
  assert_int_equal(sf_log_new(&f->log, "test", level, stderr), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  *state = f;
  return 0;
}

static void on_closed(void *ud) { (*(int *)ud)++; }

static void close_pool(fixture_t *f) {
  if (!f->pg)
    return;
  int closed = 0;
  sf_pg_close(f->pg, on_closed, &closed);
  f->pg = NULL;
  for (int i = 0; i < 100 && !closed; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(closed, 1);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  close_pool(f);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle closed */
  sf_log_destroy(f->log);
  free(f);
  return 0;
}

static void need_pg(fixture_t *f) {
  if (!f->dsn) {
    print_message("STOCKFLOW_TEST_PG_DSN not set: skipping (the integration "
                  "tier runs this against a real PostgreSQL)\n");
    skip();
  }
}

static void open_pool(fixture_t *f, int size, int stmt_timeout_ms) {
  sf_pg_opts_t o = {.dsn = f->dsn,
                    .pool_size = size,
                    .statement_timeout_ms = stmt_timeout_ms};
  assert_int_equal(sf_pg_new(&f->pg, &f->loop, &o, f->log), 0);
  run_while(&f->loop, not_ready, f->pg, 10000);
  assert_true(sf_pg_ready(f->pg));
}

static void query_wait(fixture_t *f, const char *stmt, int n,
                       const char *const *values, result_t *r) {
  memset(r, 0, sizeof(*r));
  assert_int_equal(sf_pg_query(f->pg, stmt, n, values, on_result, r), 0);
  run_while(&f->loop, not_fired, r, 10000);
  assert_int_equal(r->fired, 1);
}

static void exec_wait(fixture_t *f, const char *sql, result_t *r) {
  memset(r, 0, sizeof(*r));
  assert_int_equal(sf_pg_exec(f->pg, sql, on_result, r), 0);
  run_while(&f->loop, not_fired, r, 10000);
  assert_int_equal(r->fired, 1);
}

static void test_prepare_and_query(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 2, 0);
  assert_int_equal(sf_pg_prepare(f->pg, "add", "SELECT $1::int + $2::int, "
                                               "$3::text"),
                   0);
  assert_int_equal(sf_pg_prepare(f->pg, "add", "SELECT 1"), SF_EEXISTS);
  result_t r;
  const char *v[] = {"2", "40", "héllo 'quoted'"};
  query_wait(f, "add", 3, v, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.ntuples, 1);
  assert_string_equal(r.v0, "42");
  assert_string_equal(r.v1, "héllo 'quoted'");
  /* Unregistered statements are refused synchronously; cb never fires. */
  result_t never = {0};
  assert_int_equal(sf_pg_query(f->pg, "nope", 0, NULL, on_result, &never),
                   SF_ENOTFOUND);
  assert_int_equal(sf_pg_query(f->pg, "add", 1, NULL, on_result, &never),
                   SF_EINVAL);
  /* Plain SQL, with a command result. */
  exec_wait(f, "CREATE TEMP TABLE t (x int)", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.ntuples, 0);
  run_ms(&f->loop, 20);
  assert_int_equal(never.fired, 0);
}

static void test_sql_error_sqlstate(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 1, 0);
  assert_int_equal(sf_pg_prepare(f->pg, "uuid", "SELECT $1::uuid"), 0);
  assert_int_equal(sf_pg_prepare(f->pg, "broken", "SELECT FROM nowhere_x"),
                   0);
  result_t r;
  const char *bad[] = {"not-a-uuid"};
  query_wait(f, "uuid", 1, bad, &r);
  assert_int_equal(r.err, SF_EPG);
  assert_string_equal(r.sqlstate, "22P02");
  assert_non_null(strstr(r.errmsg, "uuid"));
  /* The connection stays usable. */
  const char *good[] = {"0190a5e2-7b1c-7000-8000-000000000001"};
  query_wait(f, "uuid", 1, good, &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.v0, "0190a5e2-7b1c-7000-8000-000000000001");
  /* A statement the server could not prepare reports the server's error. */
  query_wait(f, "broken", 0, NULL, &r);
  assert_int_equal(r.err, SF_EPG);
  assert_string_equal(r.sqlstate, "26000"); /* invalid_sql_statement_name */
  exec_wait(f, "SELECT 1/0", &r);
  assert_int_equal(r.err, SF_EPG);
  assert_string_equal(r.sqlstate, "22012");
}

static void test_null_params(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 1, 0);
  assert_int_equal(sf_pg_prepare(f->pg, "nulls", "SELECT $1::text IS NULL, "
                                                 "coalesce($2::text, 'dflt')"),
                   0);
  result_t r;
  const char *v[] = {NULL, NULL};
  query_wait(f, "nulls", 2, v, &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.v0, "t");
  assert_string_equal(r.v1, "dflt");
  const char *w[] = {"", "x"};
  query_wait(f, "nulls", 2, w, &r);
  assert_string_equal(r.v0, "f"); /* an empty string is not NULL */
  assert_string_equal(r.v1, "x");
}

static void sql_wait(fixture_t *f, const char *sql, int n, const char **v,
                     result_t *r) {
  memset(r, 0, sizeof(*r));
  assert_int_equal(sf_pg_query_sql(f->pg, sql, n, v, on_result, r), 0);
  run_while(&f->loop, not_fired, r, 10000);
  assert_int_equal(r->fired, 1);
}

/* One-off SQL with parameters: values stay values (a quote or a SQL
 * fragment in a value is never executed), NULLs, errors with SQLSTATE, and
 * the synchronous refusals. */
static void test_query_sql(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 1, 0);
  result_t r;
  const char *v[] = {"2", "x'); DROP TABLE pg_class; --"};
  sql_wait(f, "SELECT $1::int + 40, $2::text", 2, v, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.ntuples, 1);
  assert_string_equal(r.v0, "42");
  assert_string_equal(r.v1, "x'); DROP TABLE pg_class; --");
  const char *n[] = {NULL, "dflt"};
  sql_wait(f, "SELECT $1::text IS NULL, coalesce($1::text, $2::text)", 2, n,
           &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.v0, "t");
  assert_string_equal(r.v1, "dflt");
  const char *bad[] = {"not-a-uuid"};
  sql_wait(f, "SELECT $1::uuid", 1, bad, &r);
  assert_int_equal(r.err, SF_EPG);
  assert_string_equal(r.sqlstate, "22P02");
  /* A syntax error is the server's, and the connection stays usable. */
  sql_wait(f, "SELEC $1::int", 1, v, &r);
  assert_int_equal(r.err, SF_EPG);
  assert_string_equal(r.sqlstate, "42601");
  sql_wait(f, "SELECT $1::int * 2", 1, v, &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.v0, "4");
  /* Refused synchronously: cb never fires. */
  result_t never = {0};
  assert_int_equal(sf_pg_query_sql(f->pg, "SELECT 1", 0, v, on_result, &never),
                   SF_EINVAL);
  assert_int_equal(sf_pg_query_sql(f->pg, "SELECT $1", 1, NULL, on_result,
                                   &never),
                   SF_EINVAL);
  assert_int_equal(sf_pg_query_sql(f->pg, NULL, 1, v, on_result, &never),
                   SF_EINVAL);
  run_ms(&f->loop, 20);
  assert_int_equal(never.fired, 0);
}

typedef struct order {
  int done;
  int errors;
  int pid[50];
  int seq[50];
} order_t;

static void on_ordered(void *ud, int err, const PGresult *res,
                       const char *sqlstate, const char *errmsg) {
  order_t *o = ud;
  (void)sqlstate;
  (void)errmsg;
  if (err) {
    o->errors++;
  } else {
    o->pid[o->done] = atoi(PQgetvalue(res, 0, 0));
    o->seq[o->done] = atoi(PQgetvalue(res, 0, 1));
  }
  o->done++;
}

static bool order_pending(void *arg) { return ((order_t *)arg)->done < 50; }

static void test_concurrent_order(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 2, 0);
  assert_int_equal(sf_pg_prepare(f->pg, "pid", "SELECT pg_backend_pid(), "
                                               "$1::int"),
                   0);
  /* Wait for the second connection: two at once land on two backends. */
  bool both = false;
  for (int i = 0; i < 100 && !both; i++) {
    result_t a = {0}, b = {0};
    const char *v[] = {"0"};
    assert_int_equal(sf_pg_query(f->pg, "pid", 1, v, on_result, &a), 0);
    assert_int_equal(sf_pg_query(f->pg, "pid", 1, v, on_result, &b), 0);
    run_while(&f->loop, not_fired, &b, 5000);
    run_while(&f->loop, not_fired, &a, 5000);
    both = strcmp(a.v0, b.v0) != 0;
    if (!both)
      run_ms(&f->loop, 50);
  }
  assert_true(both);
  order_t o = {0};
  for (int i = 0; i < 50; i++) {
    char seq[8];
    snprintf(seq, sizeof(seq), "%d", i);
    const char *v[] = {seq};
    assert_int_equal(sf_pg_query(f->pg, "pid", 1, v, on_ordered, &o), 0);
  }
  run_while(&f->loop, order_pending, &o, 20000);
  assert_int_equal(o.done, 50);
  assert_int_equal(o.errors, 0);
  /* Per connection, completion follows submission order. */
  int pids[2] = {0, 0}, npids = 0;
  for (int i = 0; i < 50; i++) {
    int k = 0;
    while (k < npids && pids[k] != o.pid[i])
      k++;
    if (k == npids) {
      assert_true(npids < 2); /* never more backends than the pool */
      pids[npids++] = o.pid[i];
    }
    for (int j = 0; j < i; j++)
      if (o.pid[j] == o.pid[i])
        assert_true(o.seq[j] < o.seq[i]);
  }
  assert_int_equal(npids, 2); /* both connections did work */
}

static void test_statement_timeout(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 1, 200);
  result_t r;
  exec_wait(f, "SELECT pg_sleep(3)", &r);
  assert_int_equal(r.err, SF_EPG);
  assert_string_equal(r.sqlstate, "57014"); /* query_canceled */
  exec_wait(f, "SHOW statement_timeout", &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.v0, "200ms");
}

static void test_backend_killed(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 2, 0);
  run_ms(&f->loop, 300);
  assert_int_equal(sf_pg_prepare(f->pg, "one", "SELECT 1"), 0);
  result_t sleeper = {0}, killer;
  assert_int_equal(sf_pg_exec(f->pg, "SELECT pg_sleep(30) /* victim */",
                              on_result, &sleeper),
                   0);
  run_ms(&f->loop, 200);
  exec_wait(f,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE '%/* victim */' AND pid <> pg_backend_pid()",
            &killer);
  assert_int_equal(killer.err, 0);
  assert_string_equal(killer.v0, "1");
  run_while(&f->loop, not_fired, &sleeper, 10000);
  assert_int_equal(sleeper.fired, 1);
  assert_int_equal(sleeper.err, SF_EPG);
  /* Later queries work, and the killed connection comes back. */
  for (int i = 0; i < 6; i++) {
    result_t r;
    query_wait(f, "one", 0, NULL, &r);
    assert_int_equal(r.err, 0);
    assert_string_equal(r.v0, "1");
  }
  run_ms(&f->loop, 500);
  exec_wait(f,
            "SELECT count(*) FROM pg_stat_activity WHERE "
            "backend_type = 'client backend' AND datname = current_database() "
            "AND application_name = ''",
            &killer);
  assert_int_equal(killer.err, 0);
  assert_true(atoi(killer.v0) >= 2);
  assert_int_equal(sleeper.fired, 1); /* never re-run, never twice */
}

static void test_idle_backend_killed(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 2, 0);
  run_ms(&f->loop, 300);
  result_t r;
  /* Kill every other backend of this database: our idle connection too. */
  exec_wait(f,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND "
            "datname = current_database() AND pid <> pg_backend_pid()",
            &r);
  assert_int_equal(r.err, 0);
  assert_true(atoi(r.v0) >= 1);
  run_ms(&f->loop, 300);
  for (int i = 0; i < 4; i++) {
    exec_wait(f, "SELECT 7", &r);
    assert_int_equal(r.err, 0);
    assert_string_equal(r.v0, "7");
  }
}

static void test_unreachable_server(void **state) {
  fixture_t *f = *state;
  /* Needs no server: nothing listens on port 1. */
  sf_pg_opts_t o = {.dsn = "host=127.0.0.1 port=1 user=postgres "
                           "dbname=postgres password=s3cret",
                    .pool_size = 2,
                    .unavailable_after_ms = 300};
  assert_int_equal(sf_pg_new(&f->pg, &f->loop, &o, f->log), 0);
  assert_int_equal(sf_pg_prepare(f->pg, "one", "SELECT 1"), 0);
  assert_false(sf_pg_ready(f->pg));
  /* Within the grace period a query waits; it fails once the grace is
   * over. */
  result_t r = {0};
  assert_int_equal(sf_pg_query(f->pg, "one", 0, NULL, on_result, &r), 0);
  run_while(&f->loop, not_fired, &r, 3000);
  assert_int_equal(r.fired, 1);
  assert_int_equal(r.err, SF_EPG);
  assert_false(sf_pg_ready(f->pg));
  result_t never = {0};
  assert_int_equal(sf_pg_query(f->pg, "one", 0, NULL, on_result, &never),
                   SF_EUNAVAILABLE);
  assert_int_equal(sf_pg_exec(f->pg, "SELECT 1", on_result, &never),
                   SF_EUNAVAILABLE);
  run_ms(&f->loop, 300); /* a few reconnect attempts with backoff */
  assert_false(sf_pg_ready(f->pg));
  assert_int_equal(never.fired, 0);
}

typedef struct cancel_state {
  int fired;
  int canceled;
  int other;
} cancel_state_t;

static void on_cancel(void *ud, int err, const PGresult *res,
                      const char *sqlstate, const char *errmsg) {
  cancel_state_t *c = ud;
  (void)res;
  (void)sqlstate;
  (void)errmsg;
  c->fired++;
  if (err == SF_ECANCELED)
    c->canceled++;
  else
    c->other++;
}

static void test_close_cancels(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 1, 0);
  cancel_state_t cs = {0};
  assert_int_equal(sf_pg_exec(f->pg, "SELECT pg_sleep(5)", on_cancel, &cs), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(sf_pg_exec(f->pg, "SELECT 1", on_cancel, &cs), 0);
  run_ms(&f->loop, 50);
  int closed = 0;
  sf_pg_close(f->pg, on_closed, &closed);
  f->pg = NULL;
  assert_int_equal(cs.fired, 6); /* synchronously, exactly once each */
  assert_int_equal(cs.canceled, 6);
  for (int i = 0; i < 100 && !closed; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(closed, 1);
  assert_int_equal(cs.fired, 6);
}

typedef struct reentrant {
  sf_pg_t *pg;
  int closed;
  int fired;
  int canceled;
} reentrant_t;

static void on_closed_re(void *ud) { ((reentrant_t *)ud)->closed++; }

/* Closes the pool from inside a result callback. */
static void on_result_close(void *ud, int err, const PGresult *res,
                            const char *sqlstate, const char *errmsg) {
  reentrant_t *re = ud;
  (void)res;
  (void)sqlstate;
  (void)errmsg;
  re->fired++;
  if (err == SF_ECANCELED)
    re->canceled++;
  if (re->fired == 1) {
    assert_int_equal(err, 0);
    sf_pg_close(re->pg, on_closed_re, re);
  }
}

static void test_close_from_callback(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 2, 0);
  reentrant_t re = {.pg = f->pg};
  for (int i = 0; i < 4; i++)
    assert_int_equal(sf_pg_exec(f->pg, "SELECT 1", on_result_close, &re), 0);
  f->pg = NULL;
  for (int i = 0; i < 1000 && !re.closed; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(re.closed, 1);
  assert_int_equal(re.fired, 4);
  assert_int_equal(re.canceled, 3);
}

static void test_queue_full(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  sf_pg_opts_t o = {.dsn = f->dsn, .pool_size = 1, .max_queue = 2};
  assert_int_equal(sf_pg_new(&f->pg, &f->loop, &o, f->log), 0);
  cancel_state_t cs = {0};
  /* Not connected yet: everything queues, up to the bound. */
  assert_int_equal(sf_pg_exec(f->pg, "SELECT 1", on_cancel, &cs), 0);
  assert_int_equal(sf_pg_exec(f->pg, "SELECT 1", on_cancel, &cs), 0);
  assert_int_equal(sf_pg_exec(f->pg, "SELECT 1", on_cancel, &cs),
                   SF_EUNAVAILABLE);
  for (int i = 0; i < 1000 && cs.fired < 2; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(cs.fired, 2);
  assert_int_equal(cs.other, 2);
}

typedef struct notified {
  int n;
  char channel[32];
  char payload[64];
} notified_t;

static void on_notify(void *ud, const char *channel, const char *payload) {
  notified_t *n = ud;
  n->n++;
  snprintf(n->channel, sizeof(n->channel), "%s", channel);
  snprintf(n->payload, sizeof(n->payload), "%s", payload);
}

static void test_listen_notify(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_pool(f, 1, 0);
  notified_t got = {0}, other = {0};
  assert_int_equal(sf_pg_listen(f->pg, "Stock Changes", on_notify, &got), 0);
  assert_int_equal(sf_pg_listen(f->pg, "Stock Changes", on_notify, &got),
                   SF_EEXISTS);
  assert_int_equal(sf_pg_listen(f->pg, "other", on_notify, &other), 0);
  /* The listener connects on its own; notify until it hears. */
  for (int i = 0; i < 50 && got.n == 0; i++) {
    result_t r;
    exec_wait(f, "NOTIFY \"Stock Changes\", 'store-1:42'", &r);
    assert_int_equal(r.err, 0);
    run_ms(&f->loop, 100);
  }
  assert_true(got.n >= 1);
  assert_string_equal(got.channel, "Stock Changes");
  assert_string_equal(got.payload, "store-1:42");
  assert_int_equal(other.n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_prepare_and_query, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sql_error_sqlstate, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_null_params, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_sql, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_statement_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backend_killed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idle_backend_killed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_unreachable_server, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_close_cancels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_from_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_listen_notify, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
