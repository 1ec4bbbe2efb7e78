/* Unit tests for services/query/qry_parse.c: Parse's error body (the one
 * that every facade error answer, with or without Retry-After, is made
 * of), and the session token's "r:" prefix, the one place that knows it. Stripped on the way in (once, and
 * only at the start), added on the way out, and the two directions undo
 * each other. qry_parse_client_token (the request-memory form) needs a
 * live request: the integration tests cover it (/users/me, GraphQL's
 * viewer); it shares the prefix with the JSON form tested here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_parse.h"

#define TOKEN "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG" /* 43 chars */

static void test_bare_token_strips_the_prefix(void **state) {
  (void)state;
  const char *with = "r:" TOKEN;
  assert_ptr_equal(qry_parse_bare_token(with), with + 2);
  assert_string_equal(qry_parse_bare_token(with), TOKEN);
  /* without the prefix: the same pointer */
  const char *bare = TOKEN;
  assert_ptr_equal(qry_parse_bare_token(bare), bare);
  /* once only, at the start only */
  assert_string_equal(qry_parse_bare_token("r:r:x"), "r:x");
  assert_string_equal(qry_parse_bare_token("xr:y"), "xr:y");
  assert_string_equal(qry_parse_bare_token("R:x"), "R:x");
  /* short and empty texts */
  assert_string_equal(qry_parse_bare_token("r:"), "");
  assert_string_equal(qry_parse_bare_token("r"), "r");
  assert_string_equal(qry_parse_bare_token(""), "");
  assert_null(qry_parse_bare_token(NULL));
}

static void test_client_token_adds_the_prefix(void **state) {
  (void)state;
  json_t *t = qry_parse_client_token_json(TOKEN);
  assert_non_null(t);
  assert_string_equal(json_string_value(t), "r:" TOKEN);
  /* the way back gives the bearer token again */
  assert_string_equal(qry_parse_bare_token(json_string_value(t)), TOKEN);
  json_decref(t);
  assert_null(qry_parse_client_token_json(NULL));
}

static void test_error_body(void **state) {
  (void)state;
  json_t *b = qry_parse_error_body(QRY_PARSE_CONNECTION_FAILED, "down");
  assert_non_null(b);
  assert_int_equal(json_object_size(b), 2);
  assert_int_equal(json_integer_value(json_object_get(b, "code")), 100);
  assert_string_equal(json_string_value(json_object_get(b, "error")), "down");
  json_decref(b);
  /* no message: an empty one, still Parse's shape */
  b = qry_parse_error_body(QRY_PARSE_INVALID_SESSION_TOKEN, NULL);
  assert_non_null(b);
  assert_int_equal(json_integer_value(json_object_get(b, "code")), 209);
  assert_string_equal(json_string_value(json_object_get(b, "error")), "");
  json_decref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_body),
      cmocka_unit_test(test_bare_token_strips_the_prefix),
      cmocka_unit_test(test_client_token_adds_the_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
