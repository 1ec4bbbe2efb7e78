/* Tests for common/src/metrics.c: the exact exposition text of counters,
 * gauges and histograms (HELP and TYPE lines, prefixes, label and HELP
 * escaping, cumulative buckets, +Inf, _sum and _count, float forms), and a
 * text long enough to make the buffer grow many times. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf/metrics.h"

static void expect_text(sf_metrics_t *m, const char *want) {
  size_t len = 0;
  char *got = sf_metrics_take(m, &len);
  assert_non_null(got);
  assert_string_equal(got, want);
  assert_int_equal(len, strlen(want));
  free(got);
}

static void test_counter_gauge(void **state) {
  (void)state;
  sf_metrics_t m;
  sf_metrics_init(&m, "sf_x");
  sf_metrics_counter(&m, "hits_total", "Hits.", UINT64_MAX);
  sf_metrics_gauge(&m, "depth", "Depth now.", -3);
  sf_metrics_family(&m, "bare", SF_METRIC_GAUGE, NULL); /* no HELP line */
  sf_metrics_u64(&m, "bare", NULL, 0, 0);
  expect_text(&m, "# HELP sf_x_hits_total Hits.\n"
                  "# TYPE sf_x_hits_total counter\n"
                  "sf_x_hits_total 18446744073709551615\n"
                  "# HELP sf_x_depth Depth now.\n"
                  "# TYPE sf_x_depth gauge\n"
                  "sf_x_depth -3\n"
                  "# TYPE sf_x_bare gauge\n"
                  "sf_x_bare 0\n");
  /* m is empty and usable again after take; no prefix */
  sf_metrics_init(&m, NULL);
  sf_metrics_family(&m, "s", SF_METRIC_SUMMARY, "");
  sf_metrics_i64(&m, "s_count", NULL, 0, INT64_MIN);
  expect_text(&m, "# HELP s \n# TYPE s summary\ns_count -9223372036854775808\n");
  sf_metrics_init(&m, "");
  expect_text(&m, ""); /* nothing written is an empty text, not NULL */
}

static void test_escaping(void **state) {
  (void)state;
  sf_metrics_t m;
  sf_metrics_init(&m, "p");
  sf_metrics_family(&m, "f", SF_METRIC_COUNTER,
                    "a \"quoted\" back\\slash\nnew line");
  const sf_metric_label_t labels[] = {{"route", "/v1/\"x\"\\y\nz"},
                                      {"method", "GET"}};
  sf_metrics_u64(&m, "f", labels, 2, 7);
  expect_text(&m, "# HELP p_f a \"quoted\" back\\\\slash\\nnew line\n"
                  "# TYPE p_f counter\n"
                  "p_f{route=\"/v1/\\\"x\\\"\\\\y\\nz\",method=\"GET\"} 7\n");
}

static void test_floats(void **state) {
  (void)state;
  sf_metrics_t m;
  sf_metrics_init(&m, NULL);
  sf_metrics_f64(&m, "a", NULL, 0, 0.1);
  sf_metrics_f64(&m, "b", NULL, 0, 1234.0);
  sf_metrics_f64(&m, "c", NULL, 0, 0.1 + 0.2); /* needs 17 digits */
  sf_metrics_f64(&m, "d", NULL, 0, INFINITY);
  sf_metrics_f64(&m, "e", NULL, 0, -INFINITY);
  sf_metrics_f64(&m, "f", NULL, 0, NAN);
  sf_metrics_f64(&m, "g", NULL, 0, 1e21);
  expect_text(&m, "a 0.1\nb 1234\nc 0.30000000000000004\nd +Inf\ne -Inf\n"
                  "f NaN\ng 1e+21\n");
}

static void test_histogram(void **state) {
  (void)state;
  static const double bounds[] = {0.005, 0.1, 1, 2.5};
  static const uint64_t counts[] = {1, 0, 3, 2}; /* not cumulative */
  sf_metrics_t m;
  sf_metrics_init(&m, "svc");
  sf_metrics_family(&m, "dur_seconds", SF_METRIC_HISTOGRAM, "Durations.");
  const sf_metric_label_t route[] = {{"route", "/a"}};
  /* 8 observations: 6 in buckets, 2 above the last bound */
  sf_metrics_histogram(&m, "dur_seconds", route, 1, bounds, counts, 4, 8,
                       12.5);
  sf_metrics_histogram(&m, "dur_seconds", NULL, 0, bounds, counts, 0, 0, 0);
  expect_text(&m, "# HELP svc_dur_seconds Durations.\n"
                  "# TYPE svc_dur_seconds histogram\n"
                  "svc_dur_seconds_bucket{route=\"/a\",le=\"0.005\"} 1\n"
                  "svc_dur_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"
                  "svc_dur_seconds_bucket{route=\"/a\",le=\"1\"} 4\n"
                  "svc_dur_seconds_bucket{route=\"/a\",le=\"2.5\"} 6\n"
                  "svc_dur_seconds_bucket{route=\"/a\",le=\"+Inf\"} 8\n"
                  "svc_dur_seconds_sum{route=\"/a\"} 12.5\n"
                  "svc_dur_seconds_count{route=\"/a\"} 8\n"
                  "svc_dur_seconds_bucket{le=\"+Inf\"} 0\n"
                  "svc_dur_seconds_sum 0\n"
                  "svc_dur_seconds_count 0\n");
}

static void test_grows_and_raw(void **state) {
  (void)state;
  sf_metrics_t m;
  sf_metrics_init(&m, "g");
  sf_metrics_raw(&m, "# from another module\n");
  char value[64];
  for (int i = 0; i < 5000; i++) {
    snprintf(value, sizeof(value), "label-%d", i);
    sf_metrics_u64(&m, "n", &(sf_metric_label_t){"l", value}, 1,
                   (uint64_t)i);
  }
  size_t len = 0;
  char *text = sf_metrics_take(&m, &len);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  assert_true(strncmp(text, "# from another module\ng_n{l=\"label-0\"} 0\n",
                      41) == 0);
  assert_non_null(strstr(text, "\ng_n{l=\"label-4999\"} 4999\n"));
  free(text);
  /* release without taking frees the text */
  sf_metrics_init(&m, "g");
  sf_metrics_counter(&m, "x", "X.", 1);
  sf_metrics_release(&m);
  assert_null(m.buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_gauge),
      cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_floats),
      cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_grows_and_raw),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
