/* Tests for services/ctl/ctl_table.c and the stock table of ctl_stock.c:
 * widths, alignment, UTF-8, cut cells, missing values, bad rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_stock.h"
#include "ctl_table.h"
#include "sf/err.h"

static char *print(const ctl_table_t *t) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  ctl_table_print(t, f);
  fclose(f);
  return buf;
}

static void test_layout(void **state) {
  (void)state;
  ctl_column_t cols[] = {{"NAME", false, 8}, {"QTY", true, 0}, {"NOTE", false, 0}};
  ctl_table_t *t = NULL;
  assert_int_equal(ctl_table_new(&t, cols, 3), 0);
  assert_int_equal(ctl_table_add(t, (const char *[]){"tea", "7", "ok"}), 0);
  assert_int_equal(
      ctl_table_add(t, (const char *[]){"caf\xc3\xa9", "12345", NULL}), 0);
  assert_int_equal(ctl_table_add(t, (const char *[]){"a very long name", "-3",
                                                     ""}),
                   0);
  assert_int_equal(ctl_table_rows(t), 3);
  char *s = print(t);
  /* NAME is 8 wide (the cut cell), QTY 5 (12345), right-aligned; no
   * trailing blanks; "café" counts 4 characters. */
  assert_string_equal(s, "NAME        QTY  NOTE\n"
                         "tea           7  ok\n"
                         "caf\xc3\xa9      12345  -\n"
                         "a ver...     -3\n");
  free(s);
  ctl_table_destroy(t);
  assert_int_equal(ctl_table_new(&t, cols, 0), SF_EINVAL);
  assert_int_equal(ctl_table_new(&t, cols, CTL_TABLE_MAX_COLS + 1), SF_EINVAL);
}

static void test_utf8(void **state) {
  (void)state;
  assert_int_equal(ctl_utf8_width(""), 0);
  assert_int_equal(ctl_utf8_width("abc"), 3);
  assert_int_equal(ctl_utf8_width("\xe6\x97\xa5\xe6\x9c\xac"), 2);
  /* A cut never splits a character. */
  ctl_column_t col = {"N", false, 5};
  ctl_table_t *t = NULL;
  assert_int_equal(ctl_table_new(&t, &col, 1), 0);
  assert_int_equal(
      ctl_table_add(t, (const char *[]){"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                        "\xc3\xa9\xc3\xa9"}),
      0);
  char *s = print(t);
  assert_string_equal(s, "N\n\xc3\xa9\xc3\xa9...\n");
  free(s);
  ctl_table_destroy(t);
}

static void test_stock_table(void **state) {
  (void)state;
  json_t *rows = json_loads(
      "[{\"product_id\":\"p1\",\"sku\":\"TEA-1\",\"name\":\"Green tea\","
      "\"on_hand\":10,\"reserved\":2,\"available\":8,\"version\":7,"
      "\"updated_at\":\"2025-03-14T09:29:00.500000Z\"},"
      "{\"product_id\":\"p2\",\"on_hand\":0,\"reserved\":0,\"available\":0,"
      "\"version\":0,\"updated_at\":null}]",
      0, NULL);
  assert_non_null(rows);
  ctl_table_t *t = NULL;
  assert_int_equal(ctl_stock_table(rows, &t), 0);
  char *s = print(t);
  assert_string_equal(
      s, "PRODUCT  SKU    NAME       ON_HAND  RESERVED  AVAILABLE  VERSION  "
         "UPDATED\n"
         "p1       TEA-1  Green tea       10         2          8        7  "
         "2025-03-14T09:29:00.500000Z\n"
         "p2       -      -                0         0          0        0  "
         "-\n");
  free(s);
  ctl_table_destroy(t);
  json_decref(rows);
  /* Not an array, or an element that is not an object. */
  rows = json_loads("[{\"product_id\":\"p1\"}, 3]", 0, NULL);
  t = NULL;
  assert_int_equal(ctl_stock_table(rows, &t), SF_EINVAL);
  assert_null(t);
  json_decref(rows);
  rows = json_object();
  assert_int_equal(ctl_stock_table(rows, &t), SF_EINVAL);
  json_decref(rows);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_stock_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
