/* proj_sqlarr: builds PostgreSQL array literals (see proj_sqlarr.h).
 *
 * The buffer always holds "{" followed by the elements separated by commas;
 * proj_sqlarr_text() appends the closing brace and NUL in the spare room it
 * keeps, then takes them back off on the next add. */
#include "proj_sqlarr.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

void proj_sqlarr_init(proj_sqlarr_t *a) { memset(a, 0, sizeof *a); }

void proj_sqlarr_free(proj_sqlarr_t *a) {
  free(a->buf);
  proj_sqlarr_init(a);
}

void proj_sqlarr_reset(proj_sqlarr_t *a) {
  a->len = 0;
  a->count = 0;
  a->failed = false;
}

/* Makes room for extra more bytes plus the closing "}\0". */
static int reserve(proj_sqlarr_t *a, size_t extra) {
  if (a->failed)
    return SF_ENOMEM;
  if (a->len == 0)
    extra += 1; /* the opening brace */
  size_t need = a->len + extra + 2;
  if (need <= a->cap)
    return 0;
  size_t cap = a->cap ? a->cap : 64;
  while (cap < need)
    cap *= 2;
  char *nb = realloc(a->buf, cap);
  if (!nb) {
    a->failed = true;
    return SF_ENOMEM;
  }
  a->buf = nb;
  a->cap = cap;
  return 0;
}

/* Starts a new element: the opening brace or a separating comma. */
static void begin_elem(proj_sqlarr_t *a) {
  if (a->len == 0)
    a->buf[a->len++] = '{';
  else if (a->count > 0)
    a->buf[a->len++] = ',';
}

static int add_raw(proj_sqlarr_t *a, const char *s, size_t n) {
  int rc = reserve(a, n + 1);
  if (rc)
    return rc;
  begin_elem(a);
  memcpy(a->buf + a->len, s, n);
  a->len += n;
  a->count++;
  return 0;
}

int proj_sqlarr_add_text(proj_sqlarr_t *a, const char *s) {
  if (!s)
    return proj_sqlarr_add_null(a);
  size_t n = strlen(s), esc = 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] == '"' || s[i] == '\\')
      esc++;
  int rc = reserve(a, n + esc + 3); /* comma and two quotes */
  if (rc)
    return rc;
  begin_elem(a);
  a->buf[a->len++] = '"';
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\')
      a->buf[a->len++] = '\\';
    a->buf[a->len++] = s[i];
  }
  a->buf[a->len++] = '"';
  a->count++;
  return 0;
}

int proj_sqlarr_add_int(proj_sqlarr_t *a, int64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
  return add_raw(a, tmp, (size_t)n);
}

int proj_sqlarr_add_bool(proj_sqlarr_t *a, bool v) {
  return add_raw(a, v ? "t" : "f", 1);
}

int proj_sqlarr_add_null(proj_sqlarr_t *a) { return add_raw(a, "NULL", 4); }

const char *proj_sqlarr_text(proj_sqlarr_t *a) {
  if (reserve(a, 0))
    return NULL;
  if (a->len == 0)
    a->buf[a->len++] = '{'; /* empty array: "{}" */
  a->buf[a->len] = '}';
  a->buf[a->len + 1] = '\0';
  return a->buf;
}
