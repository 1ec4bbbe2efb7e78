/* Tests for services/query/qry_wait.c against a real PostgreSQL: a position
 * already applied, one applied while waiting, a timeout, cancellation while
 * sleeping and while querying, the pool closing under a wait, and the idle
 * hook. Like tests/unit/common/test_pg.c they run only when
 * STOCKFLOW_TEST_PG_DSN names a database migrated with
 * schemas/migrations (they skip otherwise). Each run uses its own consumer
 * group in projector_offsets and deletes its rows at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "qry_sql.h"
#include "qry_wait.h"
#include "sf/err.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct fixture {
  const char *dsn;
  char group[64];
  sf_log_t *log;
  uv_loop_t loop;
  sf_pg_t *pg;
  qry_waits_t *ws;
  int notified; /* NOTIFY stockflow_offsets seen by the fixture */
} fixture_t;

typedef struct outcome {
  int fired;
  qry_wait_outcome_t got;
  uint64_t at; /* loop time when fired */
} outcome_t;

static void on_wait(void *ud, qry_wait_outcome_t o) {
  outcome_t *r = ud;
  r->fired++;
  r->got = o;
}

typedef struct exec_result {
  int fired;
  int err;
  char sqlstate[8];
} exec_result_t;

static void on_exec(void *ud, int err, const PGresult *res,
                    const char *sqlstate, const char *errmsg) {
  (void)res;
  (void)errmsg;
  exec_result_t *r = ud;
  r->fired++;
  r->err = err;
  snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", sqlstate ? sqlstate : "");
}

static void on_stop_timer(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop until *flag is non-zero or timeout_ms passed. */
static void run_until(uv_loop_t *loop, const int *flag, int timeout_ms) {
  uint64_t deadline = uv_now(loop) + (uint64_t)timeout_ms;
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_stop_timer, 5, 5);
  while (!*flag && uv_now(loop) < deadline)
    uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void exec_sql(fixture_t *f, const char *sql) {
  exec_result_t r = {0};
  assert_int_equal(sf_pg_exec(f->pg, sql, on_exec, &r), 0);
  run_until(&f->loop, &r.fired, 10000);
  assert_int_equal(r.fired, 1);
  if (r.err)
    fail_msg("SQL failed (sqlstate %s): %s", r.sqlstate, sql);
}

static void set_offset(fixture_t *f, const char *topic, int partition,
                       long long next) {
  char sql[512];
  snprintf(sql, sizeof(sql),
           "INSERT INTO projector_offsets (consumer_group, topic, partition,"
           " next_offset) VALUES ('%s', '%s', %d, %lld)"
           " ON CONFLICT (consumer_group, topic, partition)"
           " DO UPDATE SET next_offset = EXCLUDED.next_offset",
           f->group, topic, partition, next);
  exec_sql(f, sql);
}

static bool pool_ready(fixture_t *f) { return sf_pg_ready(f->pg); }

static void open_waits_every(fixture_t *f, uint64_t max_wait_ms,
                             uint64_t interval_ms) {
  qry_wait_opts_t o = {.group = f->group,
                       .topic_catalog = "test.catalog",
                       .topic_stock = "test.stock",
                       .max_wait_ms = max_wait_ms,
                       .interval_ms = interval_ms};
  assert_int_equal(qry_waits_new(&f->ws, &f->loop, f->pg, &o, f->log), 0);
}

static void open_waits(fixture_t *f, uint64_t max_wait_ms) {
  open_waits_every(f, max_wait_ms, 10);
}

/* As the service does: NOTIFY stockflow_offsets wakes the waits. */
static void on_notify(void *ud, const char *channel, const char *payload) {
  (void)channel;
  (void)payload;
  fixture_t *f = ud;
  f->notified++;
  if (f->ws)
    qry_waits_notify(f->ws);
}

/* LISTENs and returns once a NOTIFY of ours came back (the listening
 * connection is up, so later notifications are not lost). */
static void listen_ready(fixture_t *f) {
  assert_int_equal(sf_pg_listen(f->pg, "stockflow_offsets", on_notify, f), 0);
  for (int i = 0; i < 100 && !f->notified; i++) {
    exec_sql(f, "NOTIFY stockflow_offsets");
    int never = 0;
    run_until(&f->loop, &never, 20);
  }
  assert_true(f->notified > 0);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  *state = f;
  f->dsn = getenv("STOCKFLOW_TEST_PG_DSN");
  if (f->dsn && !*f->dsn)
    f->dsn = NULL;
  snprintf(f->group, sizeof(f->group), "qry-test-%ld", (long)getpid());
  assert_int_equal(sf_log_new(&f->log, "test", SF_LOG_ERROR, stderr), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  if (!f->dsn)
    return 0;
  sf_pg_opts_t o = {.dsn = f->dsn, .pool_size = 2};
  assert_int_equal(sf_pg_new(&f->pg, &f->loop, &o, f->log), 0);
  assert_int_equal(qry_sql_prepare_all(f->pg), 0);
  for (int i = 0; i < 1000 && !pool_ready(f); i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(sf_pg_ready(f->pg));
  return 0;
}

static void on_pool_closed(void *ud) { (*(int *)ud)++; }

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->pg) {
    char sql[160];
    snprintf(sql, sizeof(sql),
             "DELETE FROM projector_offsets WHERE consumer_group = '%s'",
             f->group);
    exec_sql(f, sql);
    int closed = 0;
    sf_pg_close(f->pg, on_pool_closed, &closed);
    f->pg = NULL;
    run_until(&f->loop, &closed, 5000);
    assert_int_equal(closed, 1);
  }
  if (f->ws) {
    assert_int_equal(qry_waits_pending(f->ws), 0);
    qry_waits_destroy(f->ws);
  }
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle closed */
  sf_log_destroy(f->log);
  free(f);
  return 0;
}

static void need_pg(fixture_t *f) {
  if (!f->dsn) {
    print_message("STOCKFLOW_TEST_PG_DSN not set: skipping\n");
    skip();
  }
}

static void test_already_applied(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  set_offset(f, "test.stock", 2, 10);
  open_waits(f, 1000);
  outcome_t r = {0};
  qry_position_t pos = {QRY_TOPIC_STOCK, 2, 9};
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &r, NULL), 0);
  assert_int_equal(r.fired, 0); /* never from inside start */
  run_until(&f->loop, &r.fired, 2000);
  assert_int_equal(r.fired, 1);
  assert_int_equal(r.got, QRY_WAIT_APPLIED);
  qry_waits_counters_t k;
  qry_waits_stats(f->ws, &k);
  assert_int_equal(k.started, 1);
  assert_int_equal(k.timeouts, 0);
  assert_int_equal(k.checks, 1);
}

static void test_applied_while_waiting(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  set_offset(f, "test.stock", 2, 10); /* offset 10 not applied yet */
  open_waits(f, 3000);
  outcome_t r = {0};
  qry_position_t pos = {QRY_TOPIC_STOCK, 2, 10};
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &r, NULL), 0);
  int never = 0;
  run_until(&f->loop, &never, 60); /* still waiting after 60 ms */
  assert_int_equal(r.fired, 0);
  set_offset(f, "test.stock", 2, 11);
  run_until(&f->loop, &r.fired, 3000);
  assert_int_equal(r.fired, 1);
  assert_int_equal(r.got, QRY_WAIT_APPLIED);
  assert_true(uv_now(&f->loop) - t0 < 1000);
}

static void test_notify_wakes_the_wait(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  listen_ready(f);
  set_offset(f, "test.stock", 2, 10);
  open_waits_every(f, 5000, 60000); /* the safety poll never comes */
  outcome_t r = {0};
  qry_position_t pos = {QRY_TOPIC_STOCK, 2, 10};
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &r, NULL), 0);
  int never = 0;
  run_until(&f->loop, &never, 100);
  assert_int_equal(r.fired, 0);
  uint64_t t0 = uv_now(&f->loop);
  set_offset(f, "test.stock", 2, 11);
  exec_sql(f, "NOTIFY stockflow_offsets");
  run_until(&f->loop, &r.fired, 3000);
  assert_int_equal(r.fired, 1);
  assert_int_equal(r.got, QRY_WAIT_APPLIED);
  assert_true(uv_now(&f->loop) - t0 < 1000);
  qry_waits_counters_t k;
  qry_waits_stats(f->ws, &k);
  assert_true(k.notifications >= 1);
  assert_true(k.checks <= 3); /* the first check, the notified one(s) */
}

static void test_list_needs_every_position(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  listen_ready(f);
  set_offset(f, "test.stock", 5, 170); /* stock-5-169 applied */
  set_offset(f, "test.catalog", 0, 3); /* catalog-0-7 not yet */
  open_waits_every(f, 5000, 60000);
  outcome_t r = {0};
  qry_position_t pos[3] = {{QRY_TOPIC_STOCK, 5, 169},
                           {QRY_TOPIC_CATALOG, 0, 7},
                           {QRY_TOPIC_STOCK, 1, 0}}; /* no row at all */
  assert_int_equal(qry_wait_start(f->ws, pos, 3, on_wait, &r, NULL), 0);
  int never = 0;
  run_until(&f->loop, &never, 100);
  assert_int_equal(r.fired, 0);
  set_offset(f, "test.catalog", 0, 8);
  exec_sql(f, "NOTIFY stockflow_offsets");
  run_until(&f->loop, &never, 200);
  assert_int_equal(r.fired, 0); /* stock-1-0 is still missing */
  set_offset(f, "test.stock", 1, 1);
  exec_sql(f, "NOTIFY stockflow_offsets");
  run_until(&f->loop, &r.fired, 3000);
  assert_int_equal(r.fired, 1);
  assert_int_equal(r.got, QRY_WAIT_APPLIED);
}

static void test_list_times_out(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  set_offset(f, "test.stock", 3, 100);
  open_waits_every(f, 300, 50);
  outcome_t r = {0};
  qry_position_t pos[2] = {{QRY_TOPIC_STOCK, 3, 5}, {QRY_TOPIC_STOCK, 3, 100}};
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(qry_wait_start(f->ws, pos, 2, on_wait, &r, NULL), 0);
  run_until(&f->loop, &r.fired, 3000);
  assert_int_equal(r.got, QRY_WAIT_TIMEOUT);
  uint64_t took = uv_now(&f->loop) - t0;
  assert_true(took >= 300 && took < 1500);
  qry_waits_counters_t k;
  qry_waits_stats(f->ws, &k);
  /* the slow safety poll: about 300 / 50 checks, not hundreds */
  assert_true(k.checks >= 3 && k.checks <= 10);
}

static void test_timeout(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_waits(f, 100);
  outcome_t r = {0};
  /* no row at all for this partition: not applied */
  qry_position_t pos = {QRY_TOPIC_CATALOG, 0, 0};
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &r, NULL), 0);
  run_until(&f->loop, &r.fired, 3000);
  assert_int_equal(r.fired, 1);
  assert_int_equal(r.got, QRY_WAIT_TIMEOUT);
  uint64_t took = uv_now(&f->loop) - t0;
  assert_true(took >= 100);
  assert_true(took < 1000);
  qry_waits_counters_t k;
  qry_waits_stats(f->ws, &k);
  assert_int_equal(k.timeouts, 1);
  assert_true(k.checks >= 3); /* the safety re-check ran */
}

static void test_cancel_sleeping_and_querying(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_waits(f, 5000);
  qry_position_t pos = {QRY_TOPIC_STOCK, 4, 1000};
  /* canceled right after start: the first check is in flight */
  outcome_t a = {0};
  qry_wait_t *ha = NULL;
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &a, &ha), 0);
  assert_non_null(ha);
  qry_wait_cancel(ha);
  run_until(&f->loop, &a.fired, 1000);
  assert_int_equal(a.fired, 1);
  assert_int_equal(a.got, QRY_WAIT_CANCELED);
  /* canceled later, most likely while sleeping */
  outcome_t b = {0};
  qry_wait_t *hb = NULL;
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &b, &hb), 0);
  int never = 0;
  run_until(&f->loop, &never, 35);
  assert_int_equal(b.fired, 0);
  uint64_t t0 = uv_now(&f->loop);
  qry_wait_cancel(hb);
  run_until(&f->loop, &b.fired, 1000);
  assert_int_equal(b.fired, 1);
  assert_int_equal(b.got, QRY_WAIT_CANCELED);
  assert_true(uv_now(&f->loop) - t0 < 100);
  assert_int_equal(qry_waits_pending(f->ws), 0);
}

static void on_idle(void *ud) { (*(int *)ud)++; }

static void test_cancel_all_and_idle(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_waits(f, 5000);
  int idle = 0;
  qry_waits_set_idle_cb(f->ws, on_idle, &idle);
  outcome_t r[3] = {{0}, {0}, {0}};
  qry_position_t pos = {QRY_TOPIC_STOCK, 5, 77};
  for (int i = 0; i < 3; i++)
    assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &r[i], NULL), 0);
  assert_int_equal(qry_waits_pending(f->ws), 3);
  int never = 0;
  run_until(&f->loop, &never, 25);
  qry_waits_cancel_all(f->ws);
  run_until(&f->loop, &idle, 1000);
  assert_int_equal(idle, 1);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r[i].fired, 1);
    assert_int_equal(r[i].got, QRY_WAIT_CANCELED);
  }
  assert_int_equal(qry_waits_pending(f->ws), 0);
}

static void test_pool_closing(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  open_waits(f, 5000);
  outcome_t r = {0};
  qry_position_t pos = {QRY_TOPIC_STOCK, 1, 1};
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, on_wait, &r, NULL), 0);
  /* the pool closes under the in-flight check: canceled, not an error */
  char sql[160];
  snprintf(sql, sizeof(sql),
           "DELETE FROM projector_offsets WHERE consumer_group = '%s'",
           f->group);
  exec_sql(f, sql);
  qry_waits_cancel_all(f->ws); /* as the service does before closing */
  int closed = 0;
  sf_pg_close(f->pg, on_pool_closed, &closed);
  f->pg = NULL;
  run_until(&f->loop, &r.fired, 2000);
  run_until(&f->loop, &closed, 2000);
  assert_int_equal(r.fired, 1);
  assert_int_equal(r.got, QRY_WAIT_CANCELED);
  assert_int_equal(closed, 1);
}

static void test_bad_args(void **state) {
  fixture_t *f = *state;
  need_pg(f);
  qry_waits_t *ws = NULL;
  qry_wait_opts_t o = {.group = NULL, .topic_catalog = "c", .topic_stock = "s"};
  assert_int_equal(qry_waits_new(&ws, &f->loop, f->pg, &o, f->log), SF_EINVAL);
  open_waits(f, 10);
  qry_position_t pos = {QRY_TOPIC_STOCK, 1, 1};
  assert_int_equal(qry_wait_start(f->ws, &pos, 1, NULL, NULL, NULL), SF_EINVAL);
  outcome_t r = {0};
  assert_int_equal(qry_wait_start(f->ws, &pos, 0, on_wait, &r, NULL),
                   SF_EINVAL);
  qry_position_t many[QRY_POSITIONS_MAX + 1];
  for (size_t i = 0; i < QRY_POSITIONS_MAX + 1; i++)
    many[i] = pos;
  assert_int_equal(
      qry_wait_start(f->ws, many, QRY_POSITIONS_MAX + 1, on_wait, &r, NULL),
      SF_EINVAL);
  /* the largest list and the largest numbers fit the statement's arrays */
  for (size_t i = 0; i < QRY_POSITIONS_MAX; i++)
    many[i] = (qry_position_t){QRY_TOPIC_STOCK, INT32_MAX, INT64_MAX};
  assert_int_equal(
      qry_wait_start(f->ws, many, QRY_POSITIONS_MAX, on_wait, &r, NULL), 0);
  run_until(&f->loop, &r.fired, 3000);
  assert_int_equal(r.got, QRY_WAIT_TIMEOUT);
  assert_int_equal(r.fired, 1);
  assert_int_equal(qry_waits_pending(f->ws), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_already_applied, setup, teardown),
      cmocka_unit_test_setup_teardown(test_applied_while_waiting, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_notify_wakes_the_wait, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_list_needs_every_position, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_list_times_out, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_sleeping_and_querying, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_cancel_all_and_idle, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pool_closing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
