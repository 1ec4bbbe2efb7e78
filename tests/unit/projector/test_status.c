/* Tests for proj_status: readiness and the Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proj_status.h"

#define S1 "0190b000-0000-7000-8000-000000000001"
#define P1 "0190a000-0000-7000-8000-000000000001"

static int setup(void **state) {
  proj_status_t *st = NULL;
  assert_int_equal(proj_status_new(&st), 0);
  *state = st;
  return 0;
}

static int teardown(void **state) {
  proj_status_destroy(*state);
  return 0;
}

static void test_ready(void **state) {
  proj_status_t *st = *state;
  const char *why = NULL;
  assert_false(proj_status_ready(st, &why));
  assert_non_null(strstr(why, "postgresql"));
  assert_non_null(strstr(why, "assignment"));
  proj_status_set_pg(st, true);
  assert_false(proj_status_ready(st, &why));
  assert_null(strstr(why, "postgresql"));
  assert_non_null(strstr(why, "assignment"));
  proj_status_set_assigned(st, true);
  assert_true(proj_status_ready(st, &why));
  assert_null(why);
  proj_status_set_pg(st, false);
  assert_false(proj_status_ready(st, NULL));
}

static sf_event_t stock(int n) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = SF_EV_STOCK_MOVED;
  snprintf(e.event_id, sizeof e.event_id, "0190e000-0000-7000-8000-%012d", n);
  snprintf(e.command_id, sizeof e.command_id, "0190f000-0000-7000-8000-%012d",
           n);
  snprintf(e.store_id, sizeof e.store_id, "%s", S1);
  snprintf(e.product_id, sizeof e.product_id, "%s", P1);
  e.stream_version = n;
  e.occurred_at_us = 1;
  return e;
}

static void test_metrics(void **state) {
  proj_status_t *st = *state;
  proj_plan_t plan;
  proj_plan_init(&plan);
  sf_event_t a = stock(1), b = stock(2), o = stock(3);
  o.type = SF_EV__COUNT; /* a type this projector does not know */
  proj_input_t in[] = {{"inventory.stock", 2, 10, &a},
                       {"inventory.stock", 2, 11, &b},
                       {"inventory.stock", 2, 12, &o},
                       {"we\"ird", 0, 5, NULL}};
  assert_int_equal(proj_plan_build(&plan, "g", in, 4), 0);
  assert_int_equal(proj_status_batch_committed(st, &plan, 0.003), 0);
  assert_int_equal(proj_status_batch_committed(st, &plan, 7.0), 0);
  proj_status_batch_failed(st);
  proj_status_add_changes(st, 3);
  proj_status_add_changes(st, 4);
  proj_status_add_dead_letters(st, 2);
  proj_status_dlq_failed(st);
  proj_status_pruned(st, 9, 41);
  assert_int_equal(proj_status_set_lag(st, "inventory.stock", 2, 17), 0);
  assert_int_equal(proj_status_set_lag(st, "inventory.stock", 4, -1), 0);
  assert_int_equal(proj_status_events_applied(st), 6);

  char *m = proj_status_metrics(st, "sp");
  assert_non_null(m);
  assert_non_null(strstr(m, "\nsp_events_applied_total 6\n"));
  assert_non_null(strstr(m, "\nsp_batches_total 2\n"));
  assert_non_null(strstr(m, "\nsp_batch_failures_total 1\n"));
  assert_non_null(strstr(m, "\nsp_poison_total 2\n"));
  assert_non_null(strstr(m, "\nsp_skipped_total 2\n"));
  assert_non_null(strstr(m, "\nsp_batch_size_sum 8\n"));
  assert_non_null(strstr(m, "\nsp_batch_size_count 2\n"));
  assert_non_null(strstr(m, "sp_batch_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
  assert_non_null(strstr(m, "sp_batch_duration_seconds_bucket{le=\"0.005\"} 1\n"));
  assert_non_null(strstr(m, "sp_batch_duration_seconds_bucket{le=\"5\"} 1\n"));
  assert_non_null(strstr(m, "sp_batch_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
  assert_non_null(strstr(m, "sp_batch_duration_seconds_count 2\n"));
  assert_non_null(strstr(
      m, "sp_last_applied_offset{topic=\"inventory.stock\",partition=\"2\"} 12\n"));
  assert_non_null(
      strstr(m, "sp_last_applied_offset{topic=\"we\\\"ird\",partition=\"0\"} 5\n"));
  assert_non_null(strstr(m, "\nsp_pg_connected 0\n"));
  assert_non_null(strstr(m, "# TYPE sp_poison_total counter\n"));
  assert_non_null(strstr(m, "\nsp_changes_total 7\n"));
  assert_non_null(strstr(m, "\nsp_dlq_total 2\n"));
  assert_non_null(strstr(m, "\nsp_dlq_failures_total 1\n"));
  assert_non_null(strstr(m, "\nsp_changes_pruned_total 9\n"));
  assert_non_null(strstr(m, "\nsp_changes_pruned_through 41\n"));
  assert_non_null(strstr(m, "sp_batch_size_bucket{le=\"1\"} 0\n"));
  assert_non_null(strstr(m, "sp_batch_size_bucket{le=\"10\"} 2\n"));
  assert_non_null(strstr(m, "sp_batch_size_bucket{le=\"+Inf\"} 2\n"));
  assert_non_null(strstr(
      m, "sp_consumer_lag{topic=\"inventory.stock\",partition=\"2\"} 17\n"));
  /* unknown lag is left out */
  assert_null(strstr(m, "sp_consumer_lag{topic=\"inventory.stock\",partition=\"4\"}"));
  free(m);
  proj_status_clear_lag(st);
  m = proj_status_metrics(st, "sp");
  assert_non_null(m);
  assert_null(strstr(m, "sp_consumer_lag{"));
  assert_non_null(strstr(m, "# TYPE sp_consumer_lag gauge\n"));
  free(m);
  proj_plan_free(&plan);
}

/* A later batch with a lower offset (a replay) never moves a gauge back. */
static void test_offset_gauge_monotonic(void **state) {
  proj_status_t *st = *state;
  proj_plan_t plan;
  proj_plan_init(&plan);
  proj_input_t hi[] = {{"t", 0, 50, NULL}}, lo[] = {{"t", 0, 20, NULL}};
  assert_int_equal(proj_plan_build(&plan, "g", hi, 1), 0);
  proj_status_batch_committed(st, &plan, 0.1);
  assert_int_equal(proj_plan_build(&plan, "g", lo, 1), 0);
  proj_status_batch_committed(st, &plan, 0.1);
  char *m = proj_status_metrics(st, "x");
  assert_non_null(strstr(m, "x_last_applied_offset{topic=\"t\",partition=\"0\"} 50\n"));
  free(m);
  proj_plan_free(&plan);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ready, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_offset_gauge_monotonic, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
