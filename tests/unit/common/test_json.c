/* Tests for common/src/json.c: body parsing, typed getters and their error
 * texts, the key allow-list, RFC 3339 times and decimal prices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf/err.h"
#include "sf/json.h"

static json_t *parse(const char *text) {
  json_t *o = NULL;
  char err[256] = "";
  assert_int_equal(sf_json_parse_object(text, strlen(text), &o, err,
                                        sizeof(err)),
                   0);
  assert_non_null(o);
  return o;
}

static void expect_parse_error(const char *text, size_t len,
                               const char *needle) {
  json_t *o = (json_t *)1;
  char err[256] = "";
  assert_int_equal(sf_json_parse_object(text, len, &o, err, sizeof(err)),
                   SF_EPARSE);
  assert_null(o);
  assert_non_null(strstr(err, needle));
}

static void test_parse_object(void **state) {
  (void)state;
  json_t *o = parse("{\"a\": 1, \"b\": [true, null]}");
  assert_true(json_is_object(o));
  json_decref(o);
  expect_parse_error("[1, 2]", 6, "must be a JSON object");
  expect_parse_error("\"x\"", 3, "body: invalid JSON");
  expect_parse_error("", 0, "body: invalid JSON");
  expect_parse_error("{\"a\":1,\"a\":2}", 13, "duplicate");
  expect_parse_error("{\"a\":", 5, "body: invalid JSON");
  expect_parse_error("{\"a\":1}garbage", 14, "body: invalid JSON");
  expect_parse_error("{\"a\":99999999999999999999999}", 29, "too big");
  /* the length bounds the input: the closing brace is outside it */
  expect_parse_error("{\"a\":1}", 6, "body: invalid JSON");
  /* an embedded NUL is rejected, not truncated */
  expect_parse_error("{\"a\":\"x\\u0000y\"}", 16, "body: invalid JSON");
  json_t *out = (json_t *)1;
  assert_int_equal(sf_json_parse_object(NULL, 0, &out, NULL, 0), SF_EPARSE);
  assert_null(out);
}

static void test_get_string(void **state) {
  (void)state;
  json_t *o = parse("{\"name\":\"Widget\",\"empty\":\"\",\"n\":5,"
                    "\"nul\":null,\"ctl\":\"a\\tb\",\"del\":\"a\\u007fb\","
                    "\"utf\":\"caf\\u00e9\",\"b\":true}");
  const char *s = NULL;
  char err[128] = "";
  assert_int_equal(sf_json_get_string(o, "name", true, 64, &s, err,
                                      sizeof(err)),
                   0);
  assert_string_equal(s, "Widget");
  assert_int_equal(sf_json_get_string(o, "utf", true, 5, &s, err,
                                      sizeof(err)),
                   0); /* 5 bytes in UTF-8 */
  assert_int_equal(sf_json_get_string(o, "utf", true, 4, &s, err,
                                      sizeof(err)),
                   SF_EINVAL);
  assert_string_equal(err, "utf: must be at most 4 bytes");

  assert_int_equal(sf_json_get_string(o, "missing", true, 64, &s, err,
                                      sizeof(err)),
                   SF_ENOTFOUND);
  assert_string_equal(err, "missing: is required");
  assert_int_equal(sf_json_get_string(o, "nul", true, 64, &s, err,
                                      sizeof(err)),
                   SF_ENOTFOUND);
  s = "x";
  assert_int_equal(sf_json_get_string(o, "missing", false, 64, &s, err,
                                      sizeof(err)),
                   0);
  assert_null(s);
  s = "x";
  assert_int_equal(sf_json_get_string(o, "nul", false, 64, &s, err,
                                      sizeof(err)),
                   0);
  assert_null(s);

  assert_int_equal(sf_json_get_string(o, "n", false, 64, &s, err,
                                      sizeof(err)),
                   SF_EINVAL);
  assert_string_equal(err, "n: must be a string");
  assert_int_equal(sf_json_get_string(o, "b", false, 64, &s, err,
                                      sizeof(err)),
                   SF_EINVAL);
  assert_int_equal(sf_json_get_string(o, "empty", true, 64, &s, err,
                                      sizeof(err)),
                   SF_EINVAL);
  assert_string_equal(err, "empty: must not be empty");
  assert_int_equal(sf_json_get_string(o, "empty", false, 64, &s, err,
                                      sizeof(err)),
                   0);
  assert_string_equal(s, "");
  assert_int_equal(sf_json_get_string(o, "ctl", false, 64, &s, err,
                                      sizeof(err)),
                   SF_EINVAL);
  assert_string_equal(err, "ctl: must not contain control characters");
  assert_int_equal(sf_json_get_string(o, "del", false, 64, &s, err,
                                      sizeof(err)),
                   SF_EINVAL);
  json_decref(o);

  /* a value built in code may hold a NUL byte */
  o = json_object();
  json_object_set_new(o, "k", json_stringn("a\0b", 3));
  assert_int_equal(sf_json_get_string(o, "k", true, 64, &s, err,
                                      sizeof(err)),
                   SF_EINVAL);
  /* err may be omitted */
  assert_int_equal(sf_json_get_string(o, "zz", true, 64, &s, NULL, 0),
                   SF_ENOTFOUND);
  json_decref(o);
}

static void test_get_int(void **state) {
  (void)state;
  json_t *o = parse("{\"q\":5,\"neg\":-3,\"real\":1.5,\"whole_real\":2.0,"
                    "\"str\":\"5\",\"t\":true,\"nul\":null,"
                    "\"big\":9223372036854775807}");
  int64_t x = 42;
  bool present = true;
  char err[128] = "";
  assert_int_equal(sf_json_get_int(o, "q", true, 1, 2147483647, &x, &present,
                                   err, sizeof(err)),
                   0);
  assert_true(x == 5);
  assert_true(present);
  assert_int_equal(sf_json_get_int(o, "neg", true, 1, 2147483647, &x,
                                   &present, err, sizeof(err)),
                   SF_EINVAL);
  assert_string_equal(err, "neg: must be an integer between 1 and 2147483647");
  assert_false(present);
  assert_int_equal(sf_json_get_int(o, "neg", true, INT64_MIN, INT64_MAX, &x,
                                   NULL, err, sizeof(err)),
                   0);
  assert_true(x == -3);
  static const char *const wrong[] = {"real", "whole_real", "str", "t"};
  for (size_t i = 0; i < 4; i++) {
    x = 42;
    assert_int_equal(sf_json_get_int(o, wrong[i], true, 0, 100, &x, &present,
                                     err, sizeof(err)),
                     SF_EINVAL);
    assert_true(x == 42);
    assert_non_null(strstr(err, "must be an integer between 0 and 100"));
  }
  assert_int_equal(sf_json_get_int(o, "big", true, 0, INT64_MAX, &x, NULL,
                                   err, sizeof(err)),
                   0);
  assert_true(x == INT64_MAX);
  assert_int_equal(sf_json_get_int(o, "big", true, 0, INT64_MAX - 1, &x, NULL,
                                   err, sizeof(err)),
                   SF_EINVAL);
  x = 42;
  present = true;
  assert_int_equal(sf_json_get_int(o, "nul", false, 0, 9, &x, &present, err,
                                   sizeof(err)),
                   0);
  assert_false(present);
  assert_true(x == 42);
  assert_int_equal(sf_json_get_int(o, "nope", true, 0, 9, &x, &present, err,
                                   sizeof(err)),
                   SF_ENOTFOUND);
  assert_string_equal(err, "nope: is required");
  assert_true(x == 42);
  json_decref(o);
}

static void test_only_keys(void **state) {
  (void)state;
  static const char *const allowed[] = {"sku", "name", "price", NULL};
  char err[128] = "";
  json_t *o = parse("{\"sku\":\"a\",\"price\":\"1\"}");
  assert_int_equal(sf_json_only_keys(o, allowed, err, sizeof(err)), 0);
  json_decref(o);
  o = parse("{\"sku\":\"a\",\"colour\":\"red\",\"size\":1}");
  assert_int_equal(sf_json_only_keys(o, allowed, err, sizeof(err)),
                   SF_EINVAL);
  assert_string_equal(err, "colour: unknown field");
  json_decref(o);
  o = parse("{}");
  assert_int_equal(sf_json_only_keys(o, allowed, err, sizeof(err)), 0);
  json_decref(o);
}

static void test_dumps(void **state) {
  (void)state;
  json_t *o = json_pack("{s:i,s:s,s:[b,n]}", "z", 1, "a", "x\"y", "l", 1);
  char *s = sf_json_dumps(o);
  assert_string_equal(s, "{\"z\":1,\"a\":\"x\\\"y\",\"l\":[true,null]}");
  free(s);
  json_decref(o);
  json_t *str = json_string("plain");
  s = sf_json_dumps(str);
  assert_string_equal(s, "\"plain\"");
  free(s);
  json_decref(str);
  assert_null(sf_json_dumps(NULL));
}

static void test_format_time(void **state) {
  (void)state;
  char out[40];
  sf_json_format_time(0, out, sizeof(out));
  assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
  sf_json_format_time(INT64_C(1795705200123456), out, sizeof(out));
  assert_string_equal(out, "2026-11-26T15:00:00.123456Z");
  sf_json_format_time(-1, out, sizeof(out));
  assert_string_equal(out, "1969-12-31T23:59:59.999999Z");
  sf_json_format_time(INT64_C(951782400000000), out, sizeof(out)); /* leap */
  assert_string_equal(out, "2000-02-29T00:00:00.000000Z");
  sf_json_format_time(INT64_C(253402300799999999), out, sizeof(out));
  assert_string_equal(out, "9999-12-31T23:59:59.999999Z");
  char small[8];
  sf_json_format_time(0, small, sizeof(small));
  assert_string_equal(small, "1970-01"); /* truncated, still terminated */
}

static void expect_time(const char *text, int64_t us) {
  int64_t got = 0;
  assert_int_equal(sf_json_parse_time(text, &got), 0);
  assert_true(got == us);
}

static void test_parse_time(void **state) {
  (void)state;
  expect_time("2026-11-26T15:00:00.123456Z", INT64_C(1795705200123456));
  expect_time("2026-11-26T15:00:00Z", INT64_C(1795705200000000));
  expect_time("2026-11-26t15:00:00z", INT64_C(1795705200000000));
  expect_time("2026-11-26T16:30:00+01:30", INT64_C(1795705200000000));
  expect_time("2026-11-26T10:00:00-05:00", INT64_C(1795705200000000));
  expect_time("2026-11-26T15:00:00.1Z", INT64_C(1795705200100000));
  expect_time("2026-11-26T15:00:00.123456789Z", INT64_C(1795705200123456));
  expect_time("1969-12-31T23:59:59.5Z", INT64_C(-500000));
  expect_time("2024-02-29T00:00:00Z", INT64_C(1709164800000000));
  expect_time("2000-02-29T00:00:00+00:00", INT64_C(951782400000000));
  expect_time("0001-01-01T00:00:00Z", INT64_C(-62135596800000000));

  /* round trips across a spread of times, before and after 1970 */
  for (int64_t us = INT64_C(-62135596800000000);
       us < INT64_C(253402300799000000); us += INT64_C(7777777777777)) {
    char buf[40];
    int64_t back = 0;
    sf_json_format_time(us, buf, sizeof(buf));
    assert_int_equal(sf_json_parse_time(buf, &back), 0);
    assert_true(back == us);
  }

  static const char *const bad[] = {
      "",
      "2026-02-30T00:00:00Z", /* Feb 30 */
      "2025-02-29T00:00:00Z", /* not a leap year */
      "1900-02-29T00:00:00Z", /* century, not a leap year */
      "2026-04-31T00:00:00Z",
      "2026-13-01T00:00:00Z",
      "2026-00-10T00:00:00Z",
      "2026-01-00T00:00:00Z",
      "2026-01-01T24:00:00Z", /* hour 24 */
      "2026-01-01T23:60:00Z",
      "2026-01-01T23:59:60Z",      /* leap second: not representable */
      "2026-01-01T00:00:00",       /* no offset */
      "2026-01-01T00:00:00+0100",  /* offset without colon */
      "2026-01-01T00:00:00+24:00", /* offset hour */
      "2026-01-01T00:00:00+01:60", /* offset minute */
      "2026-01-01T00:00:00+1:00",
      "2026-01-01T00:00:00.Z",           /* empty fraction */
      "2026-01-01T00:00:00.1234567891Z", /* 10 fraction digits */
      "2026-01-01 00:00:00Z",            /* space separator */
      "2026-1-01T00:00:00Z",
      "26-01-01T00:00:00Z",
      "2026-01-01T00:00:00ZZ",
      "2026-01-01T00:00:00Z ",
      "2026-01-01T00:00Z",
      "2026-01-01",
      "+2026-01-01T00:00:00Z",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int64_t us = 42;
    assert_int_equal(sf_json_parse_time(bad[i], &us), SF_EINVAL);
    assert_true(us == 42);
  }
  int64_t us = 0;
  assert_int_equal(sf_json_parse_time(NULL, &us), SF_EINVAL);
}

static void test_check_decimal(void **state) {
  (void)state;
  static const char *const good[] = {"0", "19.99", "19.9999", "5",
                                     "123456789012345", "0.5", "007.10"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    assert_int_equal(sf_json_check_decimal(good[i]), 0);
  static const char *const bad[] = {
      "",
      "-1",
      "+1",
      "1.",
      ".5",
      "19.99999",
      "1e5",
      "1,5",
      " 1",
      "1 ",
      "abc",
      "1.2.3",
      "1234567890123456",
      "NaN",
      "0x10",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(sf_json_check_decimal(bad[i]), SF_EINVAL);
  assert_int_equal(sf_json_check_decimal(NULL), SF_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_object),
      cmocka_unit_test(test_get_string),
      cmocka_unit_test(test_get_int),
      cmocka_unit_test(test_only_keys),
      cmocka_unit_test(test_dumps),
      cmocka_unit_test(test_format_time),
      cmocka_unit_test(test_parse_time),
      cmocka_unit_test(test_check_decimal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
