/* Tests for proj_sqlarr: PostgreSQL array literal building and escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "proj_sqlarr.h"
#include "sf/err.h"

static void test_empty(void **state) {
  (void)state;
  proj_sqlarr_t a;
  proj_sqlarr_init(&a);
  assert_string_equal(proj_sqlarr_text(&a), "{}");
  assert_int_equal(a.count, 0);
  proj_sqlarr_free(&a);
}

static void test_ints_and_bools(void **state) {
  (void)state;
  proj_sqlarr_t a;
  proj_sqlarr_init(&a);
  assert_int_equal(proj_sqlarr_add_int(&a, 1), 0);
  assert_int_equal(proj_sqlarr_add_int(&a, -2), 0);
  assert_int_equal(proj_sqlarr_add_int(&a, INT64_MAX), 0);
  assert_int_equal(proj_sqlarr_add_int(&a, INT64_MIN), 0);
  assert_int_equal(proj_sqlarr_add_null(&a), 0);
  assert_string_equal(proj_sqlarr_text(&a),
                      "{1,-2,9223372036854775807,-9223372036854775808,NULL}");
  proj_sqlarr_reset(&a);
  proj_sqlarr_add_bool(&a, true);
  proj_sqlarr_add_bool(&a, false);
  assert_string_equal(proj_sqlarr_text(&a), "{t,f}");
  assert_int_equal(a.count, 2);
  proj_sqlarr_free(&a);
}

static void test_text_escaping(void **state) {
  (void)state;
  proj_sqlarr_t a;
  proj_sqlarr_init(&a);
  const char *vals[] = {"plain", "a\"b", "c\\d", "x,y", "{}", "NULL", "",
                        " sp ", "\\\"", "é"};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    assert_int_equal(proj_sqlarr_add_text(&a, vals[i]), 0);
  assert_int_equal(proj_sqlarr_add_text(&a, NULL), 0);
  assert_string_equal(proj_sqlarr_text(&a),
                      "{\"plain\",\"a\\\"b\",\"c\\\\d\",\"x,y\",\"{}\","
                      "\"NULL\",\"\",\" sp \",\"\\\\\\\"\",\"é\",NULL}");
  assert_int_equal(a.count, 11);
  proj_sqlarr_free(&a);
}

/* Reading the text in the middle must not disturb later additions. */
static void test_text_then_add(void **state) {
  (void)state;
  proj_sqlarr_t a;
  proj_sqlarr_init(&a);
  assert_string_equal(proj_sqlarr_text(&a), "{}");
  proj_sqlarr_add_text(&a, "a");
  assert_string_equal(proj_sqlarr_text(&a), "{\"a\"}");
  proj_sqlarr_add_int(&a, 5);
  assert_string_equal(proj_sqlarr_text(&a), "{\"a\",5}");
  proj_sqlarr_free(&a);
  assert_null(a.buf);
}

/* Growth across many reallocations keeps every element. */
static void test_growth(void **state) {
  (void)state;
  proj_sqlarr_t a;
  proj_sqlarr_init(&a);
  for (int i = 0; i < 5000; i++)
    assert_int_equal(proj_sqlarr_add_text(&a, "0123456789\"\\"), 0);
  const char *t = proj_sqlarr_text(&a);
  assert_non_null(t);
  /* each element: quote + 10 digits + 2 escaped chars (4 bytes) + quote */
  assert_int_equal(strlen(t), 2 + 5000 * 16 + 4999);
  assert_int_equal(a.count, 5000);
  proj_sqlarr_free(&a);
}

/* Once an allocation failed, the array stays failed until reset. */
static void test_sticky_failure(void **state) {
  (void)state;
  proj_sqlarr_t a;
  proj_sqlarr_init(&a);
  proj_sqlarr_add_int(&a, 1);
  a.failed = true; /* as after a failed realloc */
  assert_int_equal(proj_sqlarr_add_int(&a, 2), SF_ENOMEM);
  assert_null(proj_sqlarr_text(&a));
  proj_sqlarr_reset(&a);
  assert_int_equal(proj_sqlarr_add_int(&a, 3), 0);
  assert_string_equal(proj_sqlarr_text(&a), "{3}");
  proj_sqlarr_free(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_ints_and_bools),
      cmocka_unit_test(test_text_escaping),
      cmocka_unit_test(test_text_then_add),
      cmocka_unit_test(test_growth),
      cmocka_unit_test(test_sticky_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
