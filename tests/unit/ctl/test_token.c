/* Tests for services/ctl/ctl_token.c in a temporary folder: the default
 * path, folders created 0700 and the file 0600, a round trip, a missing
 * file, and the refusals (mode, symlink, not a token file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl_token.h"
#include "sf/err.h"

static const char *env_xdg(const char *n) {
  return strcmp(n, "XDG_CONFIG_HOME") == 0 ? "/x/cfg"
         : strcmp(n, "HOME") == 0          ? "/home/ana"
                                           : NULL;
}
static const char *env_home(const char *n) {
  return strcmp(n, "XDG_CONFIG_HOME") == 0 ? "relative" /* ignored */
         : strcmp(n, "HOME") == 0          ? "/home/ana"
                                           : NULL;
}
static const char *env_none(const char *n) {
  (void)n;
  return NULL;
}

static void test_default_path(void **state) {
  (void)state;
  char b[64];
  assert_int_equal(ctl_token_default_path(env_xdg, b, sizeof b), 0);
  assert_string_equal(b, "/x/cfg/stockflow/token");
  assert_int_equal(ctl_token_default_path(env_home, b, sizeof b), 0);
  assert_string_equal(b, "/home/ana/.config/stockflow/token");
  assert_int_equal(ctl_token_default_path(env_none, b, sizeof b),
                   SF_ENOTFOUND);
  assert_int_equal(ctl_token_default_path(env_home, b, 10), SF_ETOOBIG);
}

static int setup(void **state) {
  char *dir = strdup("/tmp/sf-ctl-token-XXXXXX");
  if (!dir || !mkdtemp(dir))
    return -1;
  *state = dir;
  return 0;
}

static int teardown(void **state) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", (char *)*state);
  int rc = system(cmd);
  free(*state);
  return rc == 0 ? 0 : -1;
}

static void test_round_trip(void **state) {
  const char *dir = *state;
  char path[512], sub[256], tok[128], err[512];
  snprintf(sub, sizeof sub, "%s/a/b", dir);
  snprintf(path, sizeof path, "%s/token", sub);
  assert_int_equal(ctl_token_load(path, tok, sizeof tok, err, sizeof err),
                   SF_ENOTFOUND);
  assert_int_equal(ctl_token_save(path, "tok-1", "ana", "http://h:1", NULL,
                                  err, sizeof err),
                   0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(stat(sub, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  assert_int_equal(ctl_token_load(path, tok, sizeof tok, err, sizeof err), 0);
  assert_string_equal(tok, "tok-1");
  /* Saved again: replaced whole, still 0600. */
  assert_int_equal(
      ctl_token_save(path, "tok-2", NULL, NULL, NULL, err, sizeof err), 0);
  assert_int_equal(ctl_token_load(path, tok, sizeof tok, err, sizeof err), 0);
  assert_string_equal(tok, "tok-2");
  /* Too small a buffer is not a truncated token. */
  assert_int_equal(ctl_token_load(path, tok, 3, err, sizeof err), SF_EPARSE);
  assert_int_equal(ctl_token_remove(path, err, sizeof err), 0);
  assert_int_equal(ctl_token_remove(path, err, sizeof err), 0);
  assert_int_equal(access(path, F_OK), -1);
}

static void write_file(const char *path, const char *text, mode_t mode) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
}

static void test_refusals(void **state) {
  const char *dir = *state;
  char path[512], link[512], tok[128], err[512];
  snprintf(path, sizeof path, "%s/token", dir);
  struct {
    const char *text;
    mode_t mode;
    int want;
    const char *says;
  } cases[] = {
      {"{\"token\":\"t\"}", 0644, SF_ESTATE, "mode 644"},
      {"{\"token\":\"t\"}", 0620, SF_ESTATE, "mode 620"},
      {"not json", 0600, SF_EPARSE, "not a stockflowctl token file"},
      {"{\"token\":\"\"}", 0600, SF_EPARSE, "not a stockflowctl"},
      {"{\"token\":7}", 0600, SF_EPARSE, "not a stockflowctl"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_file(path, cases[i].text, cases[i].mode);
    assert_int_equal(ctl_token_load(path, tok, sizeof tok, err, sizeof err),
                     cases[i].want);
    assert_non_null(strstr(err, cases[i].says));
  }
  /* A symlink is not followed. */
  write_file(path, "{\"token\":\"t\"}", 0600);
  snprintf(link, sizeof link, "%s/link", dir);
  assert_int_equal(symlink(path, link), 0);
  assert_int_equal(ctl_token_load(link, tok, sizeof tok, err, sizeof err),
                   SF_ESTATE);
  /* A folder is not a token file. */
  assert_int_equal(ctl_token_load(dir, tok, sizeof tok, err, sizeof err),
                   SF_ESTATE);
  /* Saving where a folder cannot be made fails with a reason. */
  char bad[512];
  snprintf(bad, sizeof bad, "%s/token/sub/token", dir);
  assert_int_equal(ctl_token_save(bad, "t", NULL, NULL, NULL, err, sizeof err),
                   SF_EIO);
  assert_non_null(strstr(err, "cannot create"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_path),
      cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
