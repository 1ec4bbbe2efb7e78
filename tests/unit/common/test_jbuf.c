/* Tests for common/src/jbuf.c: escaping, UTF-8 checking, integers at their
 * limits, growth, and sticky errors. Every text a jbuf makes is parsed back
 * with jansson, the library it stands in for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "sf/err.h"
#include "sf/jbuf.h"

/* Takes the text and parses it as JSON (any value). */
static json_t *take_json(sf_jbuf_t *b, char **text) {
  size_t len = 0;
  assert_int_equal(sf_jbuf_take(b, text, &len), 0);
  assert_int_equal(strlen(*text), len);
  json_error_t e;
  json_t *v = json_loadb(*text, len, JSON_DECODE_ANY, &e);
  assert_non_null(v);
  return v;
}

static void test_string_escapes_round_trip(void **state) {
  (void)state;
  const char s[] = "quote\" back\\slash /slash\b\f\n\r\t\x01\x1f end é € 😀";
  sf_jbuf_t b;
  sf_jbuf_init(&b, 4); /* tiny: forces growth */
  sf_jbuf_str(&b, s, sizeof(s) - 1);
  char *text = NULL;
  json_t *v = take_json(&b, &text);
  assert_true(json_is_string(v));
  assert_int_equal(json_string_length(v), sizeof(s) - 1);
  assert_memory_equal(json_string_value(v), s, sizeof(s) - 1);
  assert_non_null(strstr(text, "\\u0001"));
  assert_non_null(strstr(text, "\\n"));
  json_decref(v);
  free(text);
}

static void test_embedded_nul_is_escaped(void **state) {
  (void)state;
  sf_jbuf_t b;
  sf_jbuf_init(&b, 0);
  sf_jbuf_str(&b, "a\0b", 3);
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(sf_jbuf_take(&b, &text, &len), 0);
  assert_string_equal(text, "\"a\\u0000b\"");
  free(text);
}

static void test_invalid_utf8_fails_sticky(void **state) {
  (void)state;
  static const char *bad[] = {
      "\xff",             /* never valid */
      "\xc3",             /* truncated */
      "\xc0\xaf",         /* overlong '/' */
      "\xed\xa0\x80",     /* surrogate U+D800 */
      "\xf4\x90\x80\x80", /* above U+10FFFF */
      "ok\xe2\x82",       /* truncated at the end */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sf_jbuf_t b;
    sf_jbuf_init(&b, 0);
    sf_jbuf_lit(&b, "[");
    sf_jbuf_str(&b, bad[i], strlen(bad[i]));
    sf_jbuf_lit(&b, "]"); /* no-op after the failure */
    sf_jbuf_i64(&b, 1);
    char *text = (char *)1;
    assert_int_equal(sf_jbuf_take(&b, &text, NULL), SF_EPARSE);
    assert_ptr_equal(text, (char *)1); /* untouched */
    assert_null(b.data);
  }
}

static void test_integers(void **state) {
  (void)state;
  static const int64_t vals[] = {0, 1, -1, 9, 10, -10, 1234567890123LL,
                                 INT64_MAX, INT64_MIN};
  static const char *texts[] = {"0", "1", "-1", "9", "10", "-10",
                                "1234567890123", "9223372036854775807",
                                "-9223372036854775808"};
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    sf_jbuf_t b;
    sf_jbuf_init(&b, 1);
    sf_jbuf_i64(&b, vals[i]);
    char *text = NULL;
    assert_int_equal(sf_jbuf_take(&b, &text, NULL), 0);
    assert_string_equal(text, texts[i]);
    free(text);
  }
}

static void test_structure_and_growth(void **state) {
  (void)state;
  sf_jbuf_t b;
  sf_jbuf_init(&b, 8);
  sf_jbuf_lit(&b, "{\"items\":[");
  for (int i = 0; i < 5000; i++) {
    if (i)
      sf_jbuf_raw(&b, ",", 1);
    sf_jbuf_lit(&b, "{\"n\":");
    sf_jbuf_i64(&b, i);
    sf_jbuf_lit(&b, ",\"s\":");
    sf_jbuf_str(&b, "x\"y", 3);
    sf_jbuf_lit(&b, "}");
  }
  sf_jbuf_lit(&b, "]}");
  char *text = NULL;
  json_t *v = take_json(&b, &text);
  json_t *items = json_object_get(v, "items");
  assert_int_equal(json_array_size(items), 5000);
  json_t *last = json_array_get(items, 4999);
  assert_int_equal(json_integer_value(json_object_get(last, "n")), 4999);
  assert_string_equal(json_string_value(json_object_get(last, "s")), "x\"y");
  json_decref(v);
  free(text);
}

static void test_empty_and_free(void **state) {
  (void)state;
  sf_jbuf_t b;
  sf_jbuf_init(&b, 0);
  char *text = NULL;
  size_t len = 99;
  assert_int_equal(sf_jbuf_take(&b, &text, &len), 0);
  assert_int_equal(len, 0);
  assert_string_equal(text, "");
  free(text);
  sf_jbuf_init(&b, 0);
  sf_jbuf_lit(&b, "abandoned");
  sf_jbuf_free(&b); /* no leak (LeakSanitizer in the ASan build) */
  assert_null(b.data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_string_escapes_round_trip),
      cmocka_unit_test(test_embedded_nul_is_escaped),
      cmocka_unit_test(test_invalid_utf8_fails_sticky),
      cmocka_unit_test(test_integers),
      cmocka_unit_test(test_structure_and_growth),
      cmocka_unit_test(test_empty_and_free),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
