/* Tests for services/ctl/ctl_config.c: commands, options before and after
 * the command, --name=value, --, negative quantities, environment
 * defaults, and every usage error (each must name the problem). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_config.h"

#define ARGV(...) ((char *[]){"stockflowctl", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"stockflowctl", __VA_ARGS__}) / \
                         sizeof(char *)))
#define PARSE(a, err, ...)                                                   \
  ctl_args_parse((a), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), test_env, (err), \
                 sizeof(err))

static const char *test_env(const char *name) {
  if (strcmp(name, "STOCKFLOW_QUERY_URL") == 0)
    return "http://10.0.0.2:9082";
  if (strcmp(name, "STOCKFLOW_TOKEN_FILE") == 0)
    return ""; /* empty: unset */
  return NULL;
}

static void test_move(void **state) {
  (void)state;
  ctl_args_t a;
  char err[256];
  assert_int_equal(PARSE(&a, err, "--command-url", "http://h:1", "move", "S",
                         "P", "adjustment", "-5", "--reason=broken", "--key",
                         "k1", "--json"),
                   CTL_EXIT_OK);
  assert_int_equal(a.cmd, CTL_CMD_MOVE);
  assert_string_equal(a.store, "S");
  assert_string_equal(a.product, "P");
  assert_string_equal(a.type, "adjustment");
  assert_true(a.quantity == -5);
  assert_string_equal(a.reason, "broken");
  assert_string_equal(a.key, "k1");
  assert_null(a.reference);
  assert_true(a.json);
  assert_string_equal(a.command_url, "http://h:1");
  /* From the environment, and the default. */
  assert_string_equal(a.query_url, "http://10.0.0.2:9082");
  assert_null(a.token_file);
  /* After --, an argument that looks like an option is one. */
  assert_int_equal(PARSE(&a, err, "move", "--", "--S", "P", "sale", "1"),
                   CTL_EXIT_OK);
  assert_string_equal(a.store, "--S");
}

static void test_defaults_and_others(void **state) {
  (void)state;
  ctl_args_t a;
  char err[256];
  assert_int_equal(PARSE(&a, err, "stock", "S"), CTL_EXIT_OK);
  assert_string_equal(a.command_url, CTL_DEFAULT_COMMAND_URL);
  assert_null(a.product);
  assert_int_equal(PARSE(&a, err, "stock", "S", "P", "--below-reorder"),
                   CTL_EXIT_OK);
  assert_string_equal(a.product, "P");
  assert_true(a.below_reorder);
  assert_int_equal(PARSE(&a, err, "tail", "--store", "S", "--after", "42",
                         "--count=3"),
                   CTL_EXIT_OK);
  assert_int_equal(a.cmd, CTL_CMD_TAIL);
  assert_string_equal(a.store, "S");
  assert_true(a.has_after && a.after == 42);
  assert_true(a.count == 3);
  assert_int_equal(PARSE(&a, err, "--token-file", "/t", "login", "ana"),
                   CTL_EXIT_OK);
  assert_string_equal(a.username, "ana");
  assert_string_equal(a.token_file, "/t");
  assert_int_equal(PARSE(&a, err, "rebuild", "--verbose", "--projector-bin",
                         "/bin/p"),
                   CTL_EXIT_OK);
  assert_true(a.verbose);
  assert_string_equal(a.projector_bin, "/bin/p");
  /* --help anywhere skips the checks of arguments. */
  assert_int_equal(PARSE(&a, err, "move", "-h"), CTL_EXIT_OK);
  assert_true(a.help);
  assert_int_equal(a.cmd, CTL_CMD_MOVE);
  assert_int_equal(PARSE(&a, err, "--help"), CTL_EXIT_OK);
  assert_int_equal(a.cmd, CTL_CMD_NONE);
}

static void expect_usage(int rc, const char *err, const char *want) {
  assert_int_equal(rc, CTL_EXIT_USAGE);
  if (!strstr(err, want))
    fail_msg("error \"%s\" does not say \"%s\"", err, want);
}

static void test_usage_errors(void **state) {
  (void)state;
  ctl_args_t a;
  char err[256];
  expect_usage(ctl_args_parse(&a, 1, ARGV("x"), test_env, err, sizeof err),
               err, "no command");
  expect_usage(PARSE(&a, err, "frobnicate"), err, "unknown command");
  expect_usage(PARSE(&a, err, "stock"), err, "stock takes");
  expect_usage(PARSE(&a, err, "stock", "a", "b", "c"), err, "got 3");
  expect_usage(PARSE(&a, err, "logout", "x"), err, "no arguments");
  expect_usage(PARSE(&a, err, "move", "S", "P", "sale", "1.5"), err,
               "not an integer");
  expect_usage(PARSE(&a, err, "move", "S", "P", "sale", " 1"), err,
               "not an integer");
  expect_usage(PARSE(&a, err, "move", "S", "P", "sale",
                     "99999999999999999999"),
               err, "not an integer");
  expect_usage(PARSE(&a, err, "move", "", "P", "sale", "1"), err, "empty");
  expect_usage(PARSE(&a, err, "move", "S", "P", "sale", "1", "--reason"), err,
               "needs a value");
  expect_usage(PARSE(&a, err, "stock", "S", "--json=yes"), err,
               "takes no value");
  expect_usage(PARSE(&a, err, "stock", "S", "--nope"), err,
               "unknown option --nope");
  expect_usage(PARSE(&a, err, "stock", "S", "-x"), err, "unknown option -x");
  expect_usage(PARSE(&a, err, "--reason", "r", "stock", "S"), err,
               "--reason is not an option of stock");
  expect_usage(PARSE(&a, err, "tail", "--after", "x"), err, "--after");
  expect_usage(PARSE(&a, err, "tail", "--count", "0"), err, "--count");
  expect_usage(PARSE(&a, err, "rebuild", "--json"), err,
               "not an option of rebuild");
  expect_usage(PARSE(&a, err, "move", "a", "b", "c", "1", "e"), err,
               "too many");
}

static void test_parse_int(void **state) {
  (void)state;
  long long v;
  assert_int_equal(ctl_parse_int("-2147483648", INT32_MIN, INT32_MAX, &v), 0);
  assert_true(v == INT32_MIN);
  assert_int_equal(ctl_parse_int("2147483648", INT32_MIN, INT32_MAX, &v), -1);
  assert_int_equal(ctl_parse_int("", 0, 10, &v), -1);
  assert_int_equal(ctl_parse_int(NULL, 0, 10, &v), -1);
  assert_int_equal(ctl_parse_int("7 ", 0, 10, &v), -1);
  assert_int_equal(ctl_parse_int("0x10", 0, 100, &v), -1);
}

static void test_usage_text(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  ctl_usage(CTL_CMD_NONE, f);
  ctl_usage(CTL_CMD_TAIL, f);
  fclose(f);
  assert_non_null(strstr(buf, "  rebuild  "));
  assert_non_null(strstr(buf, "[env STOCKFLOW_COMMAND_URL]"));
  assert_non_null(strstr(buf, "usage: stockflowctl tail [options]"));
  assert_non_null(strstr(buf, "--after ID"));
  free(buf);
  assert_string_equal(ctl_cmd_name(CTL_CMD_REBUILD), "rebuild");
  assert_string_equal(ctl_cmd_name(CTL_CMD_NONE), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_move),
      cmocka_unit_test(test_defaults_and_others),
      cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_parse_int),
      cmocka_unit_test(test_usage_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
