/* Tests for common/src/config.c: a table mixing the service's own settings
 * with shared ones (SF_CFG_SHARED) parses defaults, environment and flags
 * into the right fields, a shared entry takes the shared key, variable and
 * default with the service's description when it gives one, ranges and bad
 * values are refused, and --help and --print-config name every setting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf/config.h"

typedef struct settings {
  const char *listen;
  const char *brokers;
  const char *dsn;
  const char *level;
  long long pool;
  bool flag;
} settings_t;

#define F(field) offsetof(settings_t, field)

static const sf_cfg_entry_t entries[] = {
    {"test-listen", SF_CFG_STRING, "127.0.0.1:1", 0, 0, "STOCKFLOW_TEST_LISTEN",
     "where to listen", F(listen), SF_CFG_OWN},
    SF_CFG_SHARED(SF_CFG_KAFKA_BROKERS, NULL, F(brokers)),
    SF_CFG_SHARED(SF_CFG_PG_DSN, "the test's own words", F(dsn)),
    SF_CFG_SHARED(SF_CFG_LOG_LEVEL, NULL, F(level)),
    {"test-pool", SF_CFG_INT, "2", 1, 8, "STOCKFLOW_TEST_POOL", "pool size",
     F(pool), SF_CFG_OWN},
    {"test-flag", SF_CFG_BOOL, "false", 0, 0, "STOCKFLOW_TEST_FLAG", "a flag",
     F(flag), SF_CFG_OWN},
};

static const sf_cfg_spec_t spec = {"test-prog", "a test", entries,
                                   sizeof(entries) / sizeof(entries[0])};

static FILE *devnull(void) {
  FILE *f = fopen("/dev/null", "w");
  assert_non_null(f);
  return f;
}

static void clear_env(void) {
  unsetenv("STOCKFLOW_KAFKA_BROKERS");
  unsetenv("STOCKFLOW_PG_DSN");
  unsetenv("STOCKFLOW_LOG_LEVEL");
  unsetenv("STOCKFLOW_TEST_POOL");
}

static void test_shared_entries(void **state) {
  (void)state;
  sf_cfg_entry_t e = sf_config_entry(&spec, 1);
  assert_string_equal(e.key, "kafka-brokers");
  assert_string_equal(e.env, "STOCKFLOW_KAFKA_BROKERS");
  assert_string_equal(e.def, "127.0.0.1:9092");
  assert_int_equal(e.type, SF_CFG_STRING);
  assert_int_equal(e.offset, F(brokers));
  assert_non_null(e.help);
  e = sf_config_entry(&spec, 2);
  assert_string_equal(e.key, "pg-dsn");
  assert_string_equal(e.help, "the test's own words");
  e = sf_config_entry(&spec, 4); /* an own entry is returned as it is */
  assert_string_equal(e.key, "test-pool");
  assert_int_equal(e.max, 8);
}

static void test_parse(void **state) {
  (void)state;
  clear_env();
  FILE *out = devnull();
  settings_t s;
  memset(&s, 0, sizeof(s));
  char *plain[] = {"p", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 1, plain, out, out), SF_CFG_RUN);
  assert_string_equal(s.brokers, "127.0.0.1:9092");
  assert_string_equal(s.level, "info");
  assert_int_equal(s.pool, 2);
  assert_false(s.flag);
  /* environment, then flags: later wins */
  setenv("STOCKFLOW_KAFKA_BROKERS", "env:1", 1);
  setenv("STOCKFLOW_LOG_LEVEL", "debug", 1);
  char *args[] = {"p", "--log-level=warn", "--pg-dsn", "dbname=x",
                  "--test-flag", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 5, args, out, out), SF_CFG_RUN);
  assert_string_equal(s.brokers, "env:1");
  assert_string_equal(s.level, "warn");
  assert_string_equal(s.dsn, "dbname=x");
  assert_true(s.flag);
  /* bad values, unknown flags and stray arguments are refused */
  setenv("STOCKFLOW_TEST_POOL", "9", 1);
  assert_int_equal(sf_config_parse(&spec, &s, 1, plain, out, out),
                   SF_CFG_EXIT_USAGE);
  unsetenv("STOCKFLOW_TEST_POOL");
  char *range[] = {"p", "--test-pool=0", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 2, range, out, out),
                   SF_CFG_EXIT_USAGE);
  char *unknown[] = {"p", "--kafka-broker=x", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 2, unknown, out, out),
                   SF_CFG_EXIT_USAGE);
  char *stray[] = {"p", "x", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 2, stray, out, out),
                   SF_CFG_EXIT_USAGE);
  char *missing[] = {"p", "--pg-dsn", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 2, missing, out, out),
                   SF_CFG_EXIT_USAGE);
  clear_env();
  fclose(out);
}

static void test_help_and_dump(void **state) {
  (void)state;
  clear_env();
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  settings_t s;
  char *help[] = {"p", "--help", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 2, help, out, out),
                   SF_CFG_EXIT_OK);
  char *dump[] = {"p", "--print-config", "--test-pool", "3", NULL};
  assert_int_equal(sf_config_parse(&spec, &s, 4, dump, out, out),
                   SF_CFG_EXIT_OK);
  sf_config_print_markdown(&spec, out);
  fclose(out);
  assert_non_null(strstr(text, "--kafka-brokers=<string>"));
  assert_non_null(strstr(text, "(env STOCKFLOW_PG_DSN, default"));
  assert_non_null(strstr(text, "the test's own words"));
  assert_non_null(strstr(text, "\nkafka-brokers=127.0.0.1:9092\n"));
  assert_non_null(strstr(text, "\ntest-pool=3\n"));
  assert_non_null(strstr(text, "| `--log-level` | `STOCKFLOW_LOG_LEVEL` |"));
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_entries),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_help_and_dump),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
