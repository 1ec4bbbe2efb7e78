/* command: bounded Avro reader and writer of StockCommand. See
 * sf/command.h. Binary layout (Avro spec): longs and lengths are zig-zag
 * varints; a string is a length then bytes; a nullable string is a union
 * index (0 null, 1 string) then the string; the enum is its index. */
#include "sf/command.h"

#include <string.h>

#include "sf/avro.h"
#include "sf/err.h"
#include "sf/uuid.h"

extern const char sf_schema_command[];

int sf_command_fingerprint(uint64_t *out) {
  return sf_avro_schema_fingerprint(sf_schema_command,
                                    strlen(sf_schema_command), out);
}

typedef struct reader {
  const uint8_t *p, *end;
} reader_t;

static int read_long(reader_t *r, int64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (r->p >= r->end)
      return SF_ETRUNCATED;
    uint8_t b = *r->p++;
    if (shift == 63 && (b & 0x7e))
      return SF_EPARSE; /* more than 64 bits */
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
      return 0;
    }
  }
  return SF_EPARSE;
}

/* Valid UTF-8 without NUL or other control characters. */
static bool text_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x20 || c == 0x7f)
      return false;
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2
                            : (c >> 4) == 14  ? 3
                            : (c >> 3) == 30  ? 4
                                              : 0;
    if (!len || i + len > n || (len == 2 && c < 0xc2) ||
        (len == 4 && c > 0xf4))
      return false;
    for (size_t k = 1; k < len; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
    if (len == 3 && ((c == 0xe0 && s[i + 1] < 0xa0) ||
                     (c == 0xed && s[i + 1] >= 0xa0)))
      return false; /* overlong, surrogate */
    if (len == 4 && ((c == 0xf0 && s[i + 1] < 0x90) ||
                     (c == 0xf4 && s[i + 1] >= 0x90)))
      return false;
    i += len;
  }
  return true;
}

/* Reads a string of at most max bytes into out (max + 1 bytes). */
static int read_string(reader_t *r, char *out, size_t max) {
  int64_t n;
  int rc = read_long(r, &n);
  if (rc)
    return rc;
  if (n < 0)
    return SF_EPARSE;
  if ((uint64_t)n > (uint64_t)(r->end - r->p))
    return SF_ETRUNCATED;
  if ((uint64_t)n > max)
    return SF_ETOOBIG;
  if (!text_ok(r->p, (size_t)n))
    return SF_EPARSE;
  memcpy(out, r->p, (size_t)n);
  out[n] = '\0';
  r->p += n;
  return 0;
}

static int read_id(reader_t *r, char out[SF_ID_LEN]) {
  int rc = read_string(r, out, SF_ID_LEN - 1);
  if (rc == SF_ETOOBIG)
    return SF_EPARSE;
  return rc ? rc : (sf_uuid_valid(out) ? 0 : SF_EPARSE);
}

static int read_opt(reader_t *r, char *out, size_t max, bool *present) {
  int64_t branch;
  int rc = read_long(r, &branch);
  if (rc)
    return rc;
  if (branch == 0) {
    *present = false;
    out[0] = '\0';
    return 0;
  }
  if (branch != 1)
    return SF_EPARSE;
  *present = true;
  return read_string(r, out, max);
}

int sf_command_decode(const uint8_t *buf, size_t len, uint64_t fp,
                      sf_command_t *out) {
  memset(out, 0, sizeof(*out));
  if (len < 10)
    return len >= 2 && (buf[0] != 0xC3 || buf[1] != 0x01) ? SF_EPARSE
                                                          : SF_ETRUNCATED;
  if (buf[0] != 0xC3 || buf[1] != 0x01)
    return SF_EPARSE;
  uint64_t got = 0;
  for (int i = 7; i >= 0; i--)
    got = (got << 8) | buf[2 + i];
  if (got != fp)
    return SF_ESCHEMA;
  reader_t r = {buf + 10, buf + len};
  int64_t movement;
  bool has_actor = false;
  int rc;
  if ((rc = read_id(&r, out->command_id)) || (rc = read_id(&r, out->store_id)) ||
      (rc = read_id(&r, out->product_id)) || (rc = read_long(&r, &movement)) ||
      (rc = read_long(&r, &out->quantity)) ||
      (rc = read_opt(&r, out->reason, SF_COMMAND_MAX_TEXT, &out->has_reason)) ||
      (rc = read_opt(&r, out->reference, SF_COMMAND_MAX_TEXT,
                     &out->has_reference)) ||
      (rc = read_opt(&r, out->actor, SF_ID_LEN - 1, &has_actor)) ||
      (rc = read_opt(&r, out->correlation_id, SF_COMMAND_MAX_CORR,
                     &out->has_correlation_id)))
    return rc;
  if (movement < 0 || movement >= SF_MOVE__COUNT)
    return SF_EPARSE;
  out->movement = (sf_movement_t)movement;
  if (has_actor && !sf_uuid_valid(out->actor))
    return SF_EPARSE;
  if (r.p != r.end)
    return SF_EPARSE; /* trailing bytes */
  return 0;
}

typedef struct writer {
  uint8_t *p, *end;
  bool overflow;
} writer_t;

static void put_byte(writer_t *w, uint8_t b) {
  if (w->p >= w->end) {
    w->overflow = true;
    return;
  }
  *w->p++ = b;
}

static void put_long(writer_t *w, int64_t v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  do {
    uint8_t b = z & 0x7f;
    z >>= 7;
    put_byte(w, (uint8_t)(b | (z ? 0x80 : 0)));
  } while (z);
}

static void put_string(writer_t *w, const char *s) {
  size_t n = strlen(s);
  put_long(w, (int64_t)n);
  if ((size_t)(w->end - w->p) < n) {
    w->overflow = true;
    return;
  }
  memcpy(w->p, s, n);
  w->p += n;
}

static void put_opt(writer_t *w, bool present, const char *s) {
  put_long(w, present ? 1 : 0);
  if (present)
    put_string(w, s);
}

int sf_command_encode(const sf_command_t *c, uint64_t fp, uint8_t *out,
                      size_t cap, size_t *len) {
  if (!sf_uuid_valid(c->command_id) || !sf_uuid_valid(c->store_id) ||
      !sf_uuid_valid(c->product_id) || (int)c->movement < 0 ||
      c->movement >= SF_MOVE__COUNT ||
      (c->actor[0] && !sf_uuid_valid(c->actor)))
    return SF_EINVAL;
  writer_t w = {out, out + cap, false};
  put_byte(&w, 0xC3);
  put_byte(&w, 0x01);
  for (int i = 0; i < 8; i++)
    put_byte(&w, (uint8_t)(fp >> (8 * i)));
  put_string(&w, c->command_id);
  put_string(&w, c->store_id);
  put_string(&w, c->product_id);
  put_long(&w, (int64_t)c->movement);
  put_long(&w, c->quantity);
  put_opt(&w, c->has_reason, c->reason);
  put_opt(&w, c->has_reference, c->reference);
  put_opt(&w, c->actor[0] != '\0', c->actor);
  put_opt(&w, c->has_correlation_id, c->correlation_id);
  if (w.overflow)
    return SF_ETOOBIG;
  *len = (size_t)(w.p - out);
  return 0;
}
