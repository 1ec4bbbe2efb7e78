/* Tests for proj_config: the table is complete and consistent, and parsing
 * honours defaults, environment, flags and ranges. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proj_config.h"

/* Every key is documented, has an environment variable, and the flag is
 * the variable's name in kebab case (without STOCKFLOW_). */
static void test_table_consistent(void **state) {
  (void)state;
  const sf_cfg_spec_t *spec = proj_config_spec();
  assert_string_equal(spec->prog, "stockflow-projector");
  assert_true(spec->n_entries >= 9);
  for (size_t i = 0; i < spec->n_entries; i++) {
    const sf_cfg_entry_t ent = sf_config_entry(spec, i), *e = &ent;
    assert_non_null(e->help);
    assert_true(strlen(e->help) > 10);
    assert_non_null(e->env);
    assert_int_equal(strncmp(e->env, "STOCKFLOW_", 10), 0);
    char kebab[128];
    size_t n = 0;
    for (const char *c = e->env + 10; *c && n + 1 < sizeof kebab; c++)
      kebab[n++] = *c == '_' ? '-' : (char)tolower((unsigned char)*c);
    kebab[n] = '\0';
    assert_string_equal(e->key, kebab);
  }
}

static FILE *devnull(void) {
  FILE *f = fopen("/dev/null", "w");
  assert_non_null(f);
  return f;
}

static void test_defaults_and_overrides(void **state) {
  (void)state;
  unsetenv("STOCKFLOW_PROJECTOR_BATCH_MAX");
  unsetenv("STOCKFLOW_PROJECTOR_BATCH_WAIT_MS");
  unsetenv("STOCKFLOW_PROJECTOR_GROUP");
  unsetenv("STOCKFLOW_TOPIC_STOCK");
  setenv("STOCKFLOW_PROJECTOR_GROUP", "from-env", 1);
  FILE *out = devnull();
  proj_config_t c;
  char *argv[] = {"p", "--projector-batch-wait-ms=5", NULL};
  assert_int_equal(sf_config_parse(proj_config_spec(), &c, 2, argv, out, out),
                   SF_CFG_RUN);
  assert_int_equal(c.batch_max, 1000);
  assert_int_equal(c.batch_wait_ms, 5);
  /* no extra wait by default: a change is applied as soon as it is read */
  char *plain[] = {"p", NULL};
  assert_int_equal(sf_config_parse(proj_config_spec(), &c, 1, plain, out, out),
                   SF_CFG_RUN);
  assert_int_equal(c.batch_wait_ms, 0);
  assert_string_equal(c.group, "from-env");
  assert_string_equal(c.topic_stock, "inventory.stock");
  assert_string_equal(c.topic_catalog, "inventory.catalog");
  assert_string_equal(c.listen, "127.0.0.1:8083");
  unsetenv("STOCKFLOW_PROJECTOR_GROUP");
  fclose(out);
}

static void test_ranges(void **state) {
  (void)state;
  FILE *out = devnull();
  proj_config_t c;
  char *zero[] = {"p", "--projector-batch-max=0", NULL};
  assert_int_equal(sf_config_parse(proj_config_spec(), &c, 2, zero, out, out),
                   SF_CFG_EXIT_USAGE);
  char *huge[] = {"p", "--projector-batch-max=10001", NULL};
  assert_int_equal(sf_config_parse(proj_config_spec(), &c, 2, huge, out, out),
                   SF_CFG_EXIT_USAGE);
  char *neg[] = {"p", "--projector-batch-wait-ms=-1", NULL};
  assert_int_equal(sf_config_parse(proj_config_spec(), &c, 2, neg, out, out),
                   SF_CFG_EXIT_USAGE);
  char *unknown[] = {"p", "--batch-max=5", NULL};
  assert_int_equal(
      sf_config_parse(proj_config_spec(), &c, 2, unknown, out, out),
      SF_CFG_EXIT_USAGE);
  fclose(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_consistent),
      cmocka_unit_test(test_defaults_and_overrides),
      cmocka_unit_test(test_ranges),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
