/* log_fixture: the text a test's modules logged into a tmpfile, for the
 * checks that no secret (a password, a token) ever reaches the log.
 * Include after <cmocka.h>. */
#ifndef SF_TEST_LOG_FIXTURE_H
#define SF_TEST_LOG_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

/* Everything written to logf so far, NUL-terminated; free() it. */
static inline char *log_fixture_text(FILE *logf) {
  assert_int_equal(fflush(logf), 0);
  long size = ftell(logf);
  assert_true(size >= 0);
  char *text = calloc(1, (size_t)size + 1);
  assert_non_null(text);
  rewind(logf);
  assert_int_equal(fread(text, 1, (size_t)size, logf), (size_t)size);
  return text;
}

#endif
