/* Tests for proj_pg against a real PostgreSQL (STOCKFLOW_TEST_PG_DSN, a
 * migrated database; skipped without it). Each test works in a private
 * schema holding copies of the read-model tables, through proj_pg's schema
 * option, so it never touches public and can run next to other tests.
 *
 * What is pinned: the change log gets one row per transactions row really
 * inserted, in plan order, with the lock and both notifications; a replay
 * of the same plan writes nothing (no rows, no changes) and offsets never
 * move back; order status is version-guarded; retention prunes a prefix of
 * ids and records it; a rebuild-style handle (no change log) writes no
 * changes. */
#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proj_batch.h"
#include "proj_pg.h"
#include "sf/err.h"

#define S1 "0190b000-0000-7000-8000-000000000001"
#define P1 "0190a000-0000-7000-8000-000000000001"
#define P2 "0190a000-0000-7000-8000-000000000002"
#define O1 "0190aa00-0000-7000-8000-000000000001"
#define STK "inventory.stock"

typedef struct fx {
  const char *dsn;
  char schema[64];
  PGconn *admin; /* default search_path: DDL and checks */
  proj_pg_t *pg;
  proj_plan_t plan;
  sf_log_t *log;
} fx_t;

static void exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
}

/* The first column of the first row as an integer. */
static long long scalar(fx_t *f, const char *fmt, ...) {
  char sql[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  char full[1200];
  snprintf(full, sizeof full, "SET search_path TO %s; %s", f->schema, sql);
  PGresult *r = PQexec(f->admin, full);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    fail_msg("%s: %s", sql, PQerrorMessage(f->admin));
  long long v = PQgetisnull(r, 0, 0) ? -1 : atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  exec_ok(f->admin, "RESET search_path");
  return v;
}

static int setup(void **state) {
  static fx_t f;
  memset(&f, 0, sizeof f);
  f.dsn = getenv("STOCKFLOW_TEST_PG_DSN");
  *state = &f;
  if (!f.dsn || !*f.dsn)
    return 0;
  f.admin = PQconnectdb(f.dsn);
  if (PQstatus(f.admin) != CONNECTION_OK)
    fail_msg("connect: %s", PQerrorMessage(f.admin));
  exec_ok(f.admin, "SET client_min_messages = warning");
  snprintf(f.schema, sizeof f.schema, "test_proj_pg_%d", (int)getpid());
  char sql[4096];
  snprintf(sql, sizeof sql,
           "DROP SCHEMA IF EXISTS %1$s CASCADE; CREATE SCHEMA %1$s;"
           "CREATE TABLE %1$s.projector_offsets (LIKE public.projector_offsets"
           " INCLUDING ALL);"
           "CREATE TABLE %1$s.products (LIKE public.products INCLUDING ALL);"
           "CREATE TABLE %1$s.stores (LIKE public.stores INCLUDING ALL);"
           "CREATE TABLE %1$s.inventory (LIKE public.inventory INCLUDING ALL);"
           "CREATE TABLE %1$s.transactions (LIKE public.transactions"
           " INCLUDING ALL);"
           "CREATE TABLE %1$s.orders (LIKE public.orders INCLUDING ALL);"
           "CREATE TABLE %1$s.stock_crossings (LIKE public.stock_crossings"
           " INCLUDING ALL);"
           "CREATE TABLE %1$s.order_lines (LIKE public.order_lines"
           " INCLUDING ALL);"
           "CREATE TABLE %1$s.changes (LIKE public.changes INCLUDING ALL"
           " EXCLUDING DEFAULTS);"
           "CREATE SEQUENCE %1$s.changes_id_seq OWNED BY %1$s.changes.id;"
           "ALTER TABLE %1$s.changes ALTER id SET DEFAULT"
           " nextval('%1$s.changes_id_seq'),"
           " ALTER recorded_at SET DEFAULT now();"
           "CREATE TABLE %1$s.changes_meta (LIKE public.changes_meta"
           " INCLUDING ALL);"
           "INSERT INTO %1$s.changes_meta DEFAULT VALUES;",
           f.schema);
  exec_ok(f.admin, sql);
  assert_int_equal(sf_log_new(&f.log, "test", SF_LOG_ERROR, stderr), 0);
  proj_plan_init(&f.plan);
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  if (!f->admin)
    return 0;
  proj_pg_destroy(f->pg);
  proj_plan_free(&f->plan);
  char sql[128];
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema);
  exec_ok(f->admin, sql);
  PQfinish(f->admin);
  sf_log_destroy(f->log);
  return 0;
}

static bool skip_without_pg(fx_t *f) {
  if (f->admin)
    return false;
  print_message("STOCKFLOW_TEST_PG_DSN not set: skipping\n");
  return true;
}

static void open_pg(fx_t *f, bool change_log) {
  proj_pg_opts_t o = {.dsn = f->dsn, .group = "g", .schema = f->schema, .change_log = change_log};
  assert_int_equal(proj_pg_new(&f->pg, &o, f->log), 0);
  proj_pg_error_t err;
  int rc = proj_pg_connect(f->pg, &err);
  if (rc)
    fail_msg("connect: %s: %s", err.stmt, err.message);
}

static sf_event_t stock_ev(const char *product, int64_t ver, int n,
                           int64_t on_hand) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = SF_EV_STOCK_MOVED;
  snprintf(e.event_id, sizeof e.event_id, "0190e000-0000-7000-8000-%012d", n);
  snprintf(e.command_id, sizeof e.command_id, "0190f000-0000-7000-8000-%012d",
           n);
  snprintf(e.store_id, sizeof e.store_id, "%s", S1);
  snprintf(e.product_id, sizeof e.product_id, "%s", product);
  e.stream_version = ver;
  e.occurred_at_us = 1700000000000000 + n;
  e.stock.movement = SF_MOVE_RECEIPT;
  e.stock.quantity = e.stock.delta = 5;
  e.stock.on_hand = on_hand;
  return e;
}

static sf_event_t order_ev(sf_event_type_t t, int64_t ver, int n,
                           const sf_order_line_t *lines, size_t nl) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = t;
  /* distinct above the last four hex digits, which carry the line index */
  snprintf(e.event_id, sizeof e.event_id, "0190e0%02d-0000-7000-8000-%012d",
           n, 0);
  snprintf(e.command_id, sizeof e.command_id, "0190f000-0000-7000-8000-%012d",
           n);
  snprintf(e.store_id, sizeof e.store_id, "%s", S1);
  snprintf(e.order.order_id, sizeof e.order.order_id, "%s", O1);
  e.stream_version = ver;
  e.occurred_at_us = 1700000000000000 + n;
  e.order.lines = lines;
  e.order.n_lines = nl;
  return e;
}

static int apply(fx_t *f, const proj_input_t *in, size_t n,
                 proj_pg_result_t *res) {
  assert_int_equal(proj_plan_build(&f->plan, "g", in, n), 0);
  proj_pg_error_t err;
  int rc = proj_pg_apply(f->pg, &f->plan, res, &err);
  if (rc)
    print_message("apply: %s: %s %s\n", err.stmt, err.sqlstate, err.message);
  return rc;
}

static void test_change_log_and_replay(void **state) {
  fx_t *f = *state;
  if (skip_without_pg(f))
    return;
  open_pg(f, true);
  char listen[128];
  snprintf(listen, sizeof listen, "LISTEN stockflow_changes; LISTEN "
                                  "stockflow_offsets");
  exec_ok(f->admin, listen);

  sf_event_t a = stock_ev(P1, 1, 1, 5), b = stock_ev(P2, 1, 2, 5),
             c = stock_ev(P1, 2, 3, 10);
  sf_order_line_t lines[] = {{P1, 4, 10, 4, 3}, {P2, 1, 5, 1, 2}};
  sf_event_t o = order_ev(SF_EV_ORDER_PLACED, 1, 4, lines, 2);
  proj_input_t in[] = {{STK, 1, 10, &a}, {STK, 1, 11, &b}, {STK, 1, 12, &c}, {STK, 1, 13, &o}};
  proj_pg_result_t res;
  assert_int_equal(apply(f, in, 4, &res), 0);
  assert_int_equal(res.changes, 5);
  assert_true(res.max_change > 0);
  assert_int_equal(scalar(f, "SELECT count(*) FROM changes"), 5);
  /* ids follow plan order: the three movements, then line 0 and line 1 */
  assert_int_equal(
      scalar(f, "SELECT count(*) FROM (SELECT row_number() OVER (ORDER BY id)"
                " AS k, transaction_id::text AS t FROM changes) x WHERE (k, t)"
                " IN ((1, '0190e000-0000-7000-8000-000000000001'),"
                " (2, '0190e000-0000-7000-8000-000000000002'),"
                " (3, '0190e000-0000-7000-8000-000000000003'),"
                " (4, '0190e004-0000-7000-8000-000000000000'),"
                " (5, '0190e004-0000-7000-8000-000000000001'))"),
      5);
  assert_int_equal(scalar(f, "SELECT max(id) FROM changes"), res.max_change);
  assert_int_equal(scalar(f, "SELECT version FROM changes WHERE id = %lld",
                          (long long)res.max_change),
                   2);
  assert_int_equal(scalar(f, "SELECT count(*) FROM changes WHERE cause ="
                             " 'order_placed' AND reserved > 0"),
                   2);
  assert_int_equal(scalar(f, "SELECT reserved FROM inventory WHERE"
                             " product_id = '" P1 "'"),
                   4);
  assert_int_equal(scalar(f, "SELECT next_offset FROM projector_offsets"),
                   14);
  /* both notifications, delivered at commit */
  PQconsumeInput(f->admin);
  PGnotify *nt;
  int seen_changes = 0, seen_offsets = 0;
  while ((nt = PQnotifies(f->admin))) {
    if (strcmp(nt->relname, "stockflow_changes") == 0) {
      assert_int_equal(atoll(nt->extra), res.max_change);
      seen_changes++;
    } else if (strcmp(nt->relname, "stockflow_offsets") == 0) {
      seen_offsets++;
    }
    PQfreemem(nt);
  }
  assert_int_equal(seen_changes, 1);
  assert_int_equal(seen_offsets, 1);

  /* the same batch again (a redelivery): nothing new, offsets kept */
  assert_int_equal(apply(f, in, 4, &res), 0);
  assert_int_equal(res.changes, 0);
  assert_int_equal(res.max_change, 0);
  assert_int_equal(scalar(f, "SELECT count(*) FROM changes"), 5);
  assert_int_equal(scalar(f, "SELECT count(*) FROM transactions"), 5);
  proj_input_t older[] = {{STK, 1, 3, &a}};
  assert_int_equal(apply(f, older, 1, &res), 0);
  assert_int_equal(scalar(f, "SELECT next_offset FROM projector_offsets"),
                   14);
  /* no changes: only the offsets notification */
  PQconsumeInput(f->admin);
  seen_changes = seen_offsets = 0;
  while ((nt = PQnotifies(f->admin))) {
    if (strcmp(nt->relname, "stockflow_changes") == 0)
      seen_changes++;
    else
      seen_offsets++;
    PQfreemem(nt);
  }
  assert_int_equal(seen_changes, 0);
  assert_int_equal(seen_offsets, 2);
}

static void test_order_status_guarded(void **state) {
  fx_t *f = *state;
  if (skip_without_pg(f))
    return;
  open_pg(f, true);
  sf_order_line_t placed[] = {{P1, 2, 10, 2, 2}};
  sf_order_line_t done[] = {{P1, 2, 8, 0, 3}};
  sf_event_t p = order_ev(SF_EV_ORDER_PLACED, 1, 1, placed, 1);
  p.order.reference = "PO-9";
  sf_event_t d = order_ev(SF_EV_ORDER_FULFILLED, 2, 2, done, 1);
  proj_input_t first[] = {{STK, 0, 0, &p}, {STK, 0, 1, &d}};
  assert_int_equal(apply(f, first, 2, NULL), 0);
  assert_int_equal(scalar(f, "SELECT count(*) FROM orders WHERE status ="
                             " 'fulfilled' AND version = 2 AND reference ="
                             " 'PO-9'"),
                   1);
  /* the placing replayed alone later must not move the status back */
  proj_input_t again[] = {{STK, 0, 0, &p}};
  assert_int_equal(apply(f, again, 1, NULL), 0);
  assert_int_equal(scalar(f, "SELECT count(*) FROM orders WHERE status ="
                             " 'fulfilled'"),
                   1);
  assert_int_equal(scalar(f, "SELECT count(*) FROM order_lines"), 1);
  assert_int_equal(scalar(f, "SELECT on_hand * 100 + reserved FROM"
                             " inventory"),
                   800);
  assert_int_equal(scalar(f, "SELECT sum(delta) * 100 + sum(reserved_delta)"
                             " FROM transactions"),
                   -200);
}

static void test_prune_and_no_change_log(void **state) {
  fx_t *f = *state;
  if (skip_without_pg(f))
    return;
  open_pg(f, true);
  sf_event_t a = stock_ev(P1, 1, 1, 5), b = stock_ev(P1, 2, 2, 10);
  proj_input_t in1[] = {{STK, 2, 0, &a}};
  proj_input_t in2[] = {{STK, 2, 1, &b}};
  proj_pg_result_t r1, r2;
  assert_int_equal(apply(f, in1, 1, &r1), 0);
  assert_int_equal(apply(f, in2, 1, &r2), 0);
  int64_t deleted = -1, through = -1;
  proj_pg_error_t err;
  /* a long retention deletes nothing */
  assert_int_equal(proj_pg_prune(f->pg, 3600, &deleted, &through, &err), 0);
  assert_int_equal(deleted, 0);
  assert_int_equal(through, 0);
  /* retention 0: every earlier transaction's rows are old enough */
  assert_int_equal(proj_pg_prune(f->pg, 0, &deleted, &through, &err), 0);
  assert_int_equal(deleted, 2);
  assert_int_equal(through, r2.max_change);
  assert_int_equal(scalar(f, "SELECT pruned_through FROM changes_meta"),
                   r2.max_change);
  assert_int_equal(scalar(f, "SELECT count(*) FROM changes"), 0);

  /* a handle without the change log (the rebuild) writes no changes */
  proj_pg_destroy(f->pg);
  f->pg = NULL;
  open_pg(f, false);
  sf_event_t c = stock_ev(P2, 1, 3, 5);
  proj_input_t in3[] = {{STK, 2, 2, &c}};
  proj_pg_result_t r3;
  assert_int_equal(apply(f, in3, 1, &r3), 0);
  assert_int_equal(r3.changes, 0);
  assert_int_equal(scalar(f, "SELECT count(*) FROM changes"), 0);
  assert_int_equal(scalar(f, "SELECT count(*) FROM transactions"), 3);
}

static void test_bad_args_and_connection(void **state) {
  (void)state;
  proj_pg_t *pg = NULL;
  proj_pg_opts_t o = {.dsn = NULL, .group = "g"};
  assert_int_equal(proj_pg_new(&pg, &o, NULL), SF_EINVAL);
  o.dsn = "host=127.0.0.1 port=1 connect_timeout=1";
  assert_int_equal(proj_pg_new(&pg, &o, NULL), 0);
  proj_pg_error_t err;
  assert_int_equal(proj_pg_connect(pg, &err), SF_EPG);
  assert_string_equal(err.stmt, "connect");
  assert_false(proj_pg_connected(pg));
  assert_null(proj_pg_conn(pg));
  proj_plan_t plan;
  proj_plan_init(&plan);
  assert_int_equal(proj_pg_apply_open(pg, &plan, NULL, &err), SF_EPG);
  proj_plan_free(&plan);
  proj_pg_destroy(pg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_change_log_and_replay, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_order_status_guarded, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_prune_and_no_change_log, setup,
                                      teardown),
      cmocka_unit_test(test_bad_args_and_connection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
