/* jbuf: JSON text written straight into a growable buffer.
 *
 * For answers that are built from rows and sent at once (a page of 100
 * inventory rows), building a jansson tree only to dump it costs more than
 * the query: an allocation per value and a printf per number. A jbuf
 * appends the text directly. The caller writes the structure (braces,
 * commas, keys as literal text); the appenders write values: strings are
 * escaped and checked to be UTF-8 (an invalid string fails the buffer, as
 * jansson refuses it), integers are formatted without printf.
 *
 * Errors are sticky: after an out-of-memory or an invalid string every
 * append is a no-op and sf_jbuf_take returns the error, so a writer checks
 * once at the end. A value the caller owns (init, append, take or free);
 * no global state. */
#ifndef SF_JBUF_H
#define SF_JBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct sf_jbuf {
  char *data;
  size_t len, cap;
  int err; /* 0, SF_ENOMEM or SF_EPARSE (invalid UTF-8) */
} sf_jbuf_t;

/* An empty buffer with room for hint bytes (0: a default). */
void sf_jbuf_init(sf_jbuf_t *b, size_t hint);
void sf_jbuf_free(sf_jbuf_t *b);

/* Appends n bytes as they are (structure, or JSON text made elsewhere). */
void sf_jbuf_raw(sf_jbuf_t *b, const char *s, size_t n);
/* Appends a NUL-terminated literal as it is. */
void sf_jbuf_lit(sf_jbuf_t *b, const char *s);
/* Appends s[0..n) as a JSON string: quoted, with '"', '\\' and control
 * characters escaped; fails the buffer with SF_EPARSE if s is not UTF-8. */
void sf_jbuf_str(sf_jbuf_t *b, const char *s, size_t n);
/* Appends v in decimal. */
void sf_jbuf_i64(sf_jbuf_t *b, int64_t v);

/* On success hands over the text (NUL-terminated, *len without the NUL;
 * free() it) and returns 0; otherwise frees the buffer and returns its
 * error. The buffer is empty afterwards either way. */
int sf_jbuf_take(sf_jbuf_t *b, char **out, size_t *len);

#endif
