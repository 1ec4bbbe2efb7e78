/* Tests for common/src/progress.c: the rate (first sample, moving average,
 * samples too close together), the ETA (unknown, finished, a stall), totals
 * that grow, and the rendering of durations and lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sf/progress.h"

static void test_rate_and_eta(void **state) {
  (void)state;
  sf_progress_t p;
  sf_progress_start(&p, 10000, 1000);
  assert_true(sf_progress_eta_s(&p) < 0); /* no rate yet */
  assert_true(sf_progress_fraction(&p) == 0.0);
  /* Too soon after the start for a sample: no rate. */
  sf_progress_update(&p, 100, 10000, 1000 + SF_PROGRESS_SAMPLE_MS - 1);
  assert_true(p.rate == 0.0);
  assert_int_equal(p.done, 100);
  /* First sample: the average since the start, 1000 per second. */
  sf_progress_update(&p, 1000, 10000, 2000);
  assert_true(p.rate > 999.9 && p.rate < 1000.1);
  assert_true(sf_progress_eta_s(&p) > 8.99 && sf_progress_eta_s(&p) < 9.01);
  assert_true(sf_progress_fraction(&p) > 0.0999 &&
              sf_progress_fraction(&p) < 0.1001);
  /* Twice the pace for one second: the average moves by ALPHA. */
  sf_progress_update(&p, 3000, 10000, 3000);
  double want = (1.0 - SF_PROGRESS_ALPHA) * 1000.0 + SF_PROGRESS_ALPHA * 2000.0;
  assert_true(p.rate > want - 0.01 && p.rate < want + 0.01);
  assert_true(sf_progress_elapsed_s(&p, 3000) == 2.0);
  assert_true(sf_progress_elapsed_s(&p, 0) == 0.0);
}

static void test_stall_and_finish(void **state) {
  (void)state;
  sf_progress_t p;
  sf_progress_start(&p, 1000, 0);
  sf_progress_update(&p, 500, 1000, 1000); /* 500/s, ETA 1 s */
  double eta1 = sf_progress_eta_s(&p);
  sf_progress_update(&p, 500, 1000, 2000); /* nothing in a second */
  sf_progress_update(&p, 500, 1000, 3000);
  assert_true(sf_progress_eta_s(&p) > eta1); /* a stall makes it grow */
  sf_progress_update(&p, 1000, 1000, 3100);
  assert_true(sf_progress_eta_s(&p) == 0.0);
  assert_true(sf_progress_fraction(&p) == 1.0);
}

static void test_totals(void **state) {
  (void)state;
  sf_progress_t p;
  sf_progress_start(&p, 0, 0);
  assert_true(sf_progress_fraction(&p) == 1.0); /* nothing to do */
  assert_true(sf_progress_eta_s(&p) == 0.0);
  /* done passes the total: the total follows. */
  sf_progress_update(&p, 50, 40, 10);
  assert_int_equal(p.total, 50);
  /* done never moves back; a larger total is taken. */
  sf_progress_update(&p, 20, 80, 20);
  assert_int_equal(p.done, 50);
  assert_int_equal(p.total, 80);
  /* 0 done: rate 0 after a sample, ETA unknown. */
  sf_progress_start(&p, 10, 0);
  sf_progress_update(&p, 0, 10, 1000);
  assert_true(sf_progress_eta_s(&p) < 0);
}

static void test_duration(void **state) {
  (void)state;
  char b[32];
  struct {
    double s;
    const char *want;
  } cases[] = {{-1.0, "?"}, {0.0, "0ms"}, {0.25, "250ms"}, {1.0, "1s"}, {59.4, "59s"}, {59.6, "1m00s"}, {65.0, "1m05s"}, {3599.0, "59m59s"}, {3600.0, "1h00m"}, {7440.0, "2h04m"}, {1e30, ">99999h"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sf_progress_duration(cases[i].s, b, sizeof b);
    assert_string_equal(b, cases[i].want);
  }
  /* Truncated, still terminated. */
  assert_true(sf_progress_duration(7440.0, b, 3) > 2);
  assert_string_equal(b, "2h");
}

static void test_format(void **state) {
  (void)state;
  char b[128];
  sf_progress_t p;
  sf_progress_start(&p, 50000, 0);
  sf_progress_format(&p, "offsets", b, sizeof b);
  assert_string_equal(b, "0/50000 offsets (0.0 %), 0/s, ETA ?");
  sf_progress_update(&p, 12345, 50000, 1000);
  sf_progress_format(&p, "offsets", b, sizeof b);
  assert_string_equal(b, "12345/50000 offsets (24.6 %), 12345/s, ETA 3s");
  /* 99.99 % is not shown as 100. */
  sf_progress_update(&p, 49999, 50000, 2000);
  sf_progress_format(&p, "offsets", b, sizeof b);
  assert_non_null(strstr(b, "(99.9 %)"));
  sf_progress_update(&p, 50000, 50000, 2100);
  sf_progress_format(&p, "events", b, sizeof b);
  assert_non_null(strstr(b, "50000/50000 events (100.0 %)"));
  assert_null(strstr(b, "ETA"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rate_and_eta),
      cmocka_unit_test(test_stall_and_finish),
      cmocka_unit_test(test_totals),
      cmocka_unit_test(test_duration),
      cmocka_unit_test(test_format),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
