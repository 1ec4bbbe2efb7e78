/* uuid: UUIDv7 ids (RFC 9562): 48-bit Unix milliseconds, then random bits,
 * so ids sort by creation time. A generator keeps the last timestamp and a
 * counter so ids from one generator are strictly increasing even within one
 * millisecond. Randomness comes from libsodium (sodium_init() must have
 * succeeded). A generator is a value the caller owns; not thread-safe (one
 * per thread). Parsing and formatting are pure. */
#ifndef SF_UUID_H
#define SF_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SF_UUID_STR_LEN 36 /* without the NUL */

typedef struct sf_uuid {
  uint8_t b[16];
} sf_uuid_t;

typedef struct sf_uuidgen {
  int64_t last_ms;
  uint16_t seq; /* 12-bit rand_a counter within last_ms */
} sf_uuidgen_t;

void sf_uuidgen_init(sf_uuidgen_t *g);
/* Next id; strictly greater than the previous one from g. */
void sf_uuid_v7(sf_uuidgen_t *g, sf_uuid_t *out);
/* Same, formatted into out (SF_UUID_STR_LEN + 1 bytes). */
void sf_uuid_v7_str(sf_uuidgen_t *g, char out[SF_UUID_STR_LEN + 1]);

/* Lowercase 8-4-4-4-12 form; out has SF_UUID_STR_LEN + 1 bytes. */
void sf_uuid_format(const sf_uuid_t *u, char out[SF_UUID_STR_LEN + 1]);
/* Parses the 8-4-4-4-12 form (either case). Returns 0 or SF_EINVAL. */
int sf_uuid_parse(const char *text, sf_uuid_t *out);
/* True when text is a well-formed UUID string. */
bool sf_uuid_valid(const char *text);
/* The millisecond timestamp of a v7 id. */
int64_t sf_uuid_v7_ms(const sf_uuid_t *u);

#endif
