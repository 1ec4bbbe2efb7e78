/* proj_sqlarr: PostgreSQL array literals in text form, for set-based writes.
 *
 * The projector writes a whole batch with one statement per table, passing
 * each column as one array parameter ($1::uuid[], $2::bigint[], ...) and
 * expanding them with unnest(). This module builds those parameters in
 * PostgreSQL's array input syntax: `{"a","b\"c",NULL}` for text and
 * `{1,-2,3}` for numbers. Every text element is double-quoted with `"` and
 * `\` backslash-escaped, so commas, braces, spaces and the word NULL inside
 * a value are data, never syntax; a NULL element is the unquoted word NULL.
 *
 * A proj_sqlarr_t is a value the caller owns (embed it, init, add, read the
 * text, free). Out of memory is sticky: after a failed add every later add
 * fails too and proj_sqlarr_text() returns NULL, so a caller may check once
 * at the end. Not thread-safe; no global state. */
#ifndef PROJ_SQLARR_H
#define PROJ_SQLARR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct proj_sqlarr {
  char *buf;  /* "{" + elements; owned */
  size_t len; /* bytes used, without the closing brace and NUL */
  size_t cap;
  size_t count; /* elements added */
  bool failed;  /* an allocation failed */
} proj_sqlarr_t;

/* Makes a an empty array (no allocation yet). */
void proj_sqlarr_init(proj_sqlarr_t *a);
/* Frees the buffer and re-inits a. */
void proj_sqlarr_free(proj_sqlarr_t *a);
/* Empties a but keeps its buffer for reuse (also clears a failure). */
void proj_sqlarr_reset(proj_sqlarr_t *a);

/* Appends a quoted text element (s is copied), or NULL when s is NULL.
 * Returns 0 or SF_ENOMEM. */
int proj_sqlarr_add_text(proj_sqlarr_t *a, const char *s);
/* Appends an integer element. Returns 0 or SF_ENOMEM. */
int proj_sqlarr_add_int(proj_sqlarr_t *a, int64_t v);
/* Appends t or f. Returns 0 or SF_ENOMEM. */
int proj_sqlarr_add_bool(proj_sqlarr_t *a, bool v);
/* Appends an unquoted NULL. Returns 0 or SF_ENOMEM. */
int proj_sqlarr_add_null(proj_sqlarr_t *a);

/* The complete literal, e.g. "{1,2}" or "{}" (borrowed from a; valid until
 * the next add, reset or free), or NULL after an allocation failure. */
const char *proj_sqlarr_text(proj_sqlarr_t *a);

#endif
