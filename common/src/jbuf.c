/* jbuf: JSON text appended to a growable buffer. See sf/jbuf.h. */
#include "sf/jbuf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

#define DEFAULT_CAP 256

void sf_jbuf_init(sf_jbuf_t *b, size_t hint) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->err = 0;
  b->data = malloc(hint ? hint : DEFAULT_CAP);
  if (!b->data)
    b->err = SF_ENOMEM;
  else
    b->cap = hint ? hint : DEFAULT_CAP;
}

void sf_jbuf_free(sf_jbuf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Makes room for n more bytes plus the final NUL; false once failed. */
static bool reserve(sf_jbuf_t *b, size_t n) {
  if (b->err)
    return false;
  if (b->len + n + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : DEFAULT_CAP;
  while (cap < b->len + n + 1) {
    if (cap > SIZE_MAX / 2) {
      b->err = SF_ENOMEM;
      return false;
    }
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (!p) {
    b->err = SF_ENOMEM;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

void sf_jbuf_raw(sf_jbuf_t *b, const char *s, size_t n) {
  if (!reserve(b, n))
    return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

void sf_jbuf_lit(sf_jbuf_t *b, const char *s) { sf_jbuf_raw(b, s, strlen(s)); }

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
      (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

void sf_jbuf_str(sf_jbuf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  /* worst case: every byte a \u00XX escape */
  if (n > (SIZE_MAX - 2) / 6) {
    if (!b->err)
      b->err = SF_ENOMEM;
    return;
  }
  if (!reserve(b, n * 6 + 2))
    return;
  const unsigned char *p = (const unsigned char *)s;
  char *o = b->data + b->len;
  *o++ = '"';
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c >= 0x80) {
      size_t k = utf8_len(p + i, n - i);
      if (!k) {
        b->err = SF_EPARSE;
        return;
      }
      memcpy(o, p + i, k);
      o += k;
      i += k;
      continue;
    }
    i++;
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
    } else if (c < 0x20) {
      *o++ = '\\';
      switch (c) {
      case '\b': *o++ = 'b'; break;
      case '\f': *o++ = 'f'; break;
      case '\n': *o++ = 'n'; break;
      case '\r': *o++ = 'r'; break;
      case '\t': *o++ = 't'; break;
      default:
        *o++ = 'u';
        *o++ = '0';
        *o++ = '0';
        *o++ = hex[c >> 4];
        *o++ = hex[c & 0xF];
      }
    } else {
      *o++ = (char)c;
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->data);
}

void sf_jbuf_i64(sf_jbuf_t *b, int64_t v) {
  char tmp[24];
  size_t n = 0;
  /* through uint64_t so that INT64_MIN negates without overflow */
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    tmp[n++] = '-';
  if (!reserve(b, n))
    return;
  for (size_t i = 0; i < n; i++)
    b->data[b->len + i] = tmp[n - 1 - i];
  b->len += n;
}

int sf_jbuf_take(sf_jbuf_t *b, char **out, size_t *len) {
  int err = b->err;
  if (!err && !reserve(b, 0))
    err = b->err;
  if (err) {
    sf_jbuf_free(b);
    b->err = 0;
    return err;
  }
  b->data[b->len] = '\0';
  *out = b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return 0;
}
