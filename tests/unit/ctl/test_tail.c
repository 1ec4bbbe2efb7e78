/* Tests for the pure parts of services/ctl/ctl_tail.c and ctl_http.c: the
 * line of a change, the request path with escaped filters, and the exit
 * code of each status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_http.h"
#include "ctl_tail.h"

#include "../curl_fixture.h"

static void test_format(void **state) {
  (void)state;
  json_t *c = json_loads(
      "{\"type\":\"change\",\"id\":4182,\"store_id\":\"s1\",\"product_id\":"
      "\"p1\",\"on_hand\":7,\"reserved\":0,\"available\":7,\"version\":5,"
      "\"cause\":\"sale\",\"transaction_id\":\"t\",\"occurred_at\":"
      "\"2025-03-14T09:27:01.112233Z\"}",
      0, NULL);
  assert_non_null(c);
  char b[256];
  ctl_tail_format(c, b, sizeof b);
  assert_string_equal(b, "4182 2025-03-14T09:27:01.112233Z sale store=s1 "
                         "product=p1 on_hand=7 reserved=0 available=7 "
                         "version=5");
  json_decref(c);
  /* Missing or mistyped fields are "?", never a crash. */
  c = json_loads("{\"id\":\"x\",\"on_hand\":1.5}", 0, NULL);
  ctl_tail_format(c, b, sizeof b);
  assert_string_equal(b, "? ? ? store=? product=? on_hand=? reserved=? "
                         "available=? version=?");
  json_decref(c);
}

static void test_path(void **state) {
  (void)state;
  ctl_http_t *h = NULL;
  assert_int_equal(ctl_http_new(&h, 1000), 0);
  ctl_args_t a = {0};
  char *p = ctl_tail_path(&a, h);
  assert_string_equal(p, "/v1/changes");
  free(p);
  a.store = "s 1&x=y";
  p = ctl_tail_path(&a, h);
  assert_string_equal(p, "/v1/changes?store_id=s%201%26x%3Dy");
  free(p);
  a.product = "p/2";
  p = ctl_tail_path(&a, h);
  assert_string_equal(p, "/v1/changes?store_id=s%201%26x%3Dy&product_id=p%2F2");
  free(p);
  a.store = NULL;
  p = ctl_tail_path(&a, h);
  assert_string_equal(p, "/v1/changes?product_id=p%2F2");
  free(p);
  char *e = ctl_http_escape(h, "../v1");
  assert_string_equal(e, "..%2Fv1");
  free(e);
  ctl_http_destroy(h);
}

static void test_exit_codes(void **state) {
  (void)state;
  assert_int_equal(ctl_http_exit_code(200), CTL_EXIT_OK);
  assert_int_equal(ctl_http_exit_code(204), CTL_EXIT_OK);
  assert_int_equal(ctl_http_exit_code(401), CTL_EXIT_REFUSED);
  assert_int_equal(ctl_http_exit_code(409), CTL_EXIT_REFUSED);
  assert_int_equal(ctl_http_exit_code(422), CTL_EXIT_REFUSED);
  assert_int_equal(ctl_http_exit_code(503), CTL_EXIT_UNAVAILABLE);
  assert_int_equal(ctl_http_exit_code(0), CTL_EXIT_UNAVAILABLE);
  assert_int_equal(ctl_http_exit_code(500), CTL_EXIT_FAIL);
  assert_int_equal(ctl_http_exit_code(302), CTL_EXIT_FAIL);
}

static void test_report(void **state) {
  (void)state;
  char body[] = "{\"type\":\"x\",\"status\":409,\"code\":\"insufficient_stock"
                "\",\"detail\":\"sale of 8 would take available stock below "
                "zero\"}";
  ctl_resp_t r = {.status = 409, .body = body, .len = sizeof body - 1};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(ctl_http_report(&r, "move", f), CTL_EXIT_REFUSED);
  ctl_resp_t none = {.status = 0};
  snprintf(none.error, sizeof none.error, "Connection refused");
  assert_int_equal(ctl_http_report(&none, "stock", f), CTL_EXIT_UNAVAILABLE);
  char plain[] = "<html>bad gateway</html>";
  ctl_resp_t gw = {.status = 502, .body = plain, .len = sizeof plain - 1};
  assert_int_equal(ctl_http_report(&gw, "stock", f), CTL_EXIT_FAIL);
  fclose(f);
  assert_string_equal(buf, "stockflowctl: move: 409 insufficient_stock: sale "
                           "of 8 would take available stock below zero\n"
                           "stockflowctl: stock: no answer: Connection "
                           "refused\n"
                           "stockflowctl: stock: HTTP 502: <html>bad "
                           "gateway</html>\n");
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_path),
      cmocka_unit_test(test_exit_codes),
      cmocka_unit_test(test_report),
  };
  return cmocka_run_group_tests(tests, curl_group_setup, curl_group_teardown);
}
