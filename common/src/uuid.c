/* uuid: UUIDv7 generation (RFC 9562, section 6.2 method 1: a 12-bit counter
 * in rand_a), formatting and parsing. The counter restarts at a random value
 * below 2048 in each new millisecond, leaving at least 2048 ids per
 * millisecond before it overflows; on overflow, or when the clock steps
 * back, the generator moves its own millisecond forward so ids stay strictly
 * increasing. rand_b (62 bits) is fresh randomness from libsodium. */
#include "sf/uuid.h"
#include "sf/err.h"

#include <sodium.h>
#include <string.h>
#include <time.h>

void sf_uuidgen_init(sf_uuidgen_t *g) {
  g->last_ms = -1;
  g->seq = 0;
}

static int64_t now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return 0; /* cannot fail for CLOCK_REALTIME; monotonicity still holds */
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sf_uuid_v7(sf_uuidgen_t *g, sf_uuid_t *out) {
  uint8_t rnd[10];
  randombytes_buf(rnd, sizeof(rnd));
  int64_t ms = now_ms();
  if (ms > g->last_ms) {
    g->last_ms = ms;
    g->seq = (uint16_t)(((rnd[8] << 8) | rnd[9]) & 0x7ff);
  } else if (g->seq < 0xfff) {
    g->seq++;
  } else {
    g->last_ms++; /* counter exhausted: borrow the next millisecond */
    g->seq = 0;
  }
  uint64_t t = (uint64_t)g->last_ms & UINT64_C(0xffffffffffff);
  for (int i = 0; i < 6; i++)
    out->b[i] = (uint8_t)(t >> (40 - 8 * i));
  out->b[6] = (uint8_t)(0x70 | (g->seq >> 8));
  out->b[7] = (uint8_t)(g->seq & 0xff);
  out->b[8] = (uint8_t)(0x80 | (rnd[0] & 0x3f)); /* variant 10 */
  memcpy(&out->b[9], &rnd[1], 7);
}

void sf_uuid_v7_str(sf_uuidgen_t *g, char out[SF_UUID_STR_LEN + 1]) {
  sf_uuid_t u;
  sf_uuid_v7(g, &u);
  sf_uuid_format(&u, out);
}

void sf_uuid_format(const sf_uuid_t *u, char out[SF_UUID_STR_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = hex[u->b[i] >> 4];
    out[o++] = hex[u->b[i] & 0xf];
  }
  out[o] = '\0';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int sf_uuid_parse(const char *text, sf_uuid_t *out) {
  if (!text)
    return SF_EINVAL;
  sf_uuid_t u;
  size_t i = 0;
  for (int b = 0; b < 16; b++) {
    if (b == 4 || b == 6 || b == 8 || b == 10) {
      if (text[i++] != '-')
        return SF_EINVAL;
    }
    /* text[i] is checked before text[i + 1] is read: no overrun at a NUL */
    int hi = hexval(text[i]);
    if (hi < 0)
      return SF_EINVAL;
    int lo = hexval(text[i + 1]);
    if (lo < 0)
      return SF_EINVAL;
    u.b[b] = (uint8_t)(hi << 4 | lo);
    i += 2;
  }
  if (text[i] != '\0')
    return SF_EINVAL;
  *out = u;
  return 0;
}

bool sf_uuid_valid(const char *text) {
  sf_uuid_t u;
  return sf_uuid_parse(text, &u) == 0;
}

int64_t sf_uuid_v7_ms(const sf_uuid_t *u) {
  int64_t ms = 0;
  for (int i = 0; i < 6; i++)
    ms = (ms << 8) | u->b[i];
  return ms;
}
