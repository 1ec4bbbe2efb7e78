/* Tests for services/ctl/ctl_sse.c: the event stream format as the query
 * service writes it, split at every byte, CR/LF/CRLF line ends (also a CRLF
 * split across chunks), comments, multi-line data, ids kept across events,
 * stopping from the callback, and oversized lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_sse.h"
#include "sf/err.h"

typedef struct seen {
  char log[4096];
  int n;
  int stop_after; /* 0: never */
} seen_t;

static bool record(void *ud, const char *id, const char *type,
                   const char *data) {
  seen_t *s = ud;
  size_t len = strlen(s->log);
  snprintf(s->log + len, sizeof s->log - len, "[%s|%s|%s]", id, type, data);
  s->n++;
  return !(s->stop_after && s->n >= s->stop_after);
}

static const char k_stream[] =
    ": ping\n\n"
    "id: 4182\nevent: change\ndata: {\"id\":4182}\n\n"
    "event: overflow\ndata: {\"last_id\":4182}\n\n"
    "data:a\ndata: b\ndata\n\n"
    "retry: 10\nunknown: x\n\n" /* no data: nothing dispatched */
    "id:7\ndata: x\n\n";
static const char k_want[] =
    "[4182|change|{\"id\":4182}][4182|overflow|{\"last_id\":4182}]"
    "[4182|message|a\nb\n][7|message|x]";

static void test_whole_and_bytewise(void **state) {
  (void)state;
  ctl_sse_t p;
  seen_t s = {0};
  ctl_sse_init(&p);
  assert_int_equal(ctl_sse_feed(&p, k_stream, strlen(k_stream), record, &s),
                   0);
  assert_string_equal(s.log, k_want);
  assert_string_equal(p.last_id, "7");
  ctl_sse_free(&p);
  /* One byte at a time gives the same events. */
  memset(&s, 0, sizeof s);
  ctl_sse_init(&p);
  for (size_t i = 0; i < strlen(k_stream); i++)
    assert_int_equal(ctl_sse_feed(&p, k_stream + i, 1, record, &s), 0);
  assert_string_equal(s.log, k_want);
  ctl_sse_free(&p);
}

static void test_line_ends(void **state) {
  (void)state;
  ctl_sse_t p;
  seen_t s = {0};
  ctl_sse_init(&p);
  const char *a = "id: 1\r\ndata: x\r";
  const char *b = "\n\r\ndata: y\r\rdata: z\n\n";
  assert_int_equal(ctl_sse_feed(&p, a, strlen(a), record, &s), 0);
  assert_int_equal(ctl_sse_feed(&p, b, strlen(b), record, &s), 0);
  assert_string_equal(s.log, "[1|message|x][1|message|y][1|message|z]");
  /* A reset drops the partial event but keeps the id. */
  memset(&s, 0, sizeof s);
  const char *c = "data: half";
  assert_int_equal(ctl_sse_feed(&p, c, strlen(c), record, &s), 0);
  ctl_sse_reset(&p);
  const char *d = "\ndata: whole\n\n";
  assert_int_equal(ctl_sse_feed(&p, d, strlen(d), record, &s), 0);
  assert_string_equal(s.log, "[1|message|whole]");
  ctl_sse_free(&p);
}

static void test_stop_and_limits(void **state) {
  (void)state;
  ctl_sse_t p;
  seen_t s = {.stop_after = 1};
  ctl_sse_init(&p);
  assert_int_equal(ctl_sse_feed(&p, k_stream, strlen(k_stream), record, &s),
                   1);
  assert_int_equal(s.n, 1);
  ctl_sse_free(&p);
  /* A line over the limit is refused, not grown without end. */
  size_t n = CTL_SSE_LINE_MAX + 10;
  char *big = malloc(n);
  assert_non_null(big);
  memset(big, 'x', n);
  memcpy(big, "data: ", 6);
  ctl_sse_init(&p);
  memset(&s, 0, sizeof s);
  assert_int_equal(ctl_sse_feed(&p, big, n, record, &s), SF_ETOOBIG);
  assert_int_equal(s.n, 0);
  ctl_sse_free(&p);
  free(big);
  /* An id too long for the buffer is ignored, the last good one kept. */
  ctl_sse_init(&p);
  char line[200];
  snprintf(line, sizeof line, "id: 5\ndata: a\n\nid: %0100d\ndata: b\n\n", 1);
  memset(&s, 0, sizeof s);
  assert_int_equal(ctl_sse_feed(&p, line, strlen(line), record, &s), 0);
  assert_string_equal(s.log, "[5|message|a][5|message|b]");
  ctl_sse_free(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole_and_bytewise),
      cmocka_unit_test(test_line_ends),
      cmocka_unit_test(test_stop_and_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
