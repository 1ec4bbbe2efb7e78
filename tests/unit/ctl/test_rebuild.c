/* Tests for the pure parts of services/ctl/ctl_rebuild.c: reading the
 * projector's progress lines (and refusing other lines), drawing the bar
 * (never full before the end, ETA unknown or known, phases without
 * totals), and the exit code for each way a rebuild ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_rebuild.h"

static void test_parse(void **state) {
  (void)state;
  ctl_rebuild_report_t r;
  assert_int_equal(
      ctl_rebuild_parse("{\"phase\":\"replay\",\"done\":1234,\"total\":5678,"
                        "\"rate\":9900.5,\"eta_s\":0.45,\"elapsed_s\":1.5}",
                        &r),
      0);
  assert_string_equal(r.phase, "replay");
  assert_true(r.done == 1234 && r.total == 5678);
  assert_true(r.rate > 9900.4 && r.rate < 9900.6);
  assert_true(r.eta_s > 0.44 && r.eta_s < 0.46);
  /* An unknown ETA is null; a total below done is raised. */
  assert_int_equal(ctl_rebuild_parse("{\"phase\":\"catch-up\",\"done\":9,"
                                     "\"total\":3,\"rate\":0,\"eta_s\":null}",
                                     &r),
                   0);
  assert_true(r.eta_s < 0);
  assert_true(r.total == 9);
  assert_int_equal(
      ctl_rebuild_parse("{\"phase\":\"done\",\"messages\":40,\"applied\":38,"
                        "\"poison\":2,\"batches\":3,\"replay_s\":1.25,"
                        "\"switch_s\":0.125}",
                        &r),
      0);
  assert_true(r.messages == 40 && r.applied == 38 && r.poison == 2 &&
              r.batches == 3);
  assert_true(r.switch_s == 0.125);
  assert_int_equal(ctl_rebuild_parse("{\"phase\":\"failed\",\"error\":"
                                     "\"SF_ESTATE\",\"message\":\"invalid "
                                     "state\"}",
                                     &r),
                   0);
  assert_string_equal(r.error, "SF_ESTATE");
  assert_string_equal(r.message, "invalid state");
  /* Not reports: a log line, garbage, a phase that is not a string; a
   * negative count is read as 0. */
  assert_int_equal(ctl_rebuild_parse("{\"level\":\"info\",\"msg\":\"x\"}", &r),
                   -1);
  assert_int_equal(ctl_rebuild_parse("replay 3/4", &r), -1);
  assert_int_equal(ctl_rebuild_parse("{\"phase\":3}", &r), -1);
  assert_int_equal(ctl_rebuild_parse("{\"phase\":\"replay\",\"done\":-5}", &r),
                   0);
  assert_true(r.done == 0);
}

static void test_render(void **state) {
  (void)state;
  ctl_rebuild_report_t r = {.phase = "replay", .done = 25, .total = 100, .rate = 50.0, .eta_s = 1.5};
  char b[256];
  ctl_rebuild_render(&r, 20, b, sizeof b);
  assert_string_equal(b, "replay    [#####---------------]  25/100 offsets  "
                         "25.0 %  50/s  ETA 2s");
  /* 99.9 %: one cell short, not 100. */
  r.done = 999;
  r.total = 1000;
  r.eta_s = -1;
  ctl_rebuild_render(&r, 10, b, sizeof b);
  assert_string_equal(b, "replay    [#########-]  999/1000 offsets  99.9 %  "
                         "50/s  ETA ?");
  r.done = 1000;
  ctl_rebuild_render(&r, 10, b, sizeof b);
  assert_string_equal(b, "replay    [##########]  1000/1000 offsets  100.0 %  "
                         "50/s");
  /* Phases without a count say what they do. */
  ctl_rebuild_report_t l = {.phase = "lock"};
  ctl_rebuild_render(&l, 10, b, sizeof b);
  assert_string_equal(b, "lock      taking the rebuild lock");
  ctl_rebuild_report_t e = {.phase = "replay"}; /* empty log */
  ctl_rebuild_render(&e, 10, b, sizeof b);
  assert_string_equal(b, "replay    ");
  /* The bar width is bounded; a short buffer is cut, terminated. */
  ctl_rebuild_render(&r, 100000, b, sizeof b);
  assert_int_equal(strchr(b, ']') - strchr(b, '[') - 1, 200);
  ctl_rebuild_render(&r, 20, b, 8);
  assert_string_equal(b, "replay ");
}

static void test_exit_codes(void **state) {
  (void)state;
  assert_int_equal(ctl_rebuild_exit_code(0, NULL), CTL_EXIT_OK);
  assert_int_equal(ctl_rebuild_exit_code(1, "SF_ECANCELED"),
                   CTL_EXIT_INTERRUPTED);
  assert_int_equal(ctl_rebuild_exit_code(1, "SF_ESTATE"), CTL_EXIT_REFUSED);
  assert_int_equal(ctl_rebuild_exit_code(1, "SF_EPG"), CTL_EXIT_UNAVAILABLE);
  assert_int_equal(ctl_rebuild_exit_code(1, "SF_EKAFKA"),
                   CTL_EXIT_UNAVAILABLE);
  assert_int_equal(ctl_rebuild_exit_code(1, "SF_ECONFIG"), CTL_EXIT_FAIL);
  assert_int_equal(ctl_rebuild_exit_code(2, NULL), CTL_EXIT_FAIL);
  assert_int_equal(ctl_rebuild_exit_code(-1, ""), CTL_EXIT_FAIL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_render),
      cmocka_unit_test(test_exit_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
