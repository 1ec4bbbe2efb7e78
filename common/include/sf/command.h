/* command: the Avro codec of the bus intake's StockCommand
 * (schemas/command.avsc), single-object encoded like the events.
 *
 * The record is flat (strings, a long, an enum, nullable strings), so it is
 * read by a small bounded reader rather than avro-c: every length is checked
 * against the bytes that remain and against the field's limit before it is
 * used, nothing is allocated, strings are copied into fixed buffers. Pure
 * and thread-safe once the codec is created. */
#ifndef SF_COMMAND_H
#define SF_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/event.h"

#define SF_COMMAND_MAX_TEXT 500 /* reason, reference */
#define SF_COMMAND_MAX_CORR 255

typedef struct sf_command {
  char command_id[SF_ID_LEN];
  char store_id[SF_ID_LEN];
  char product_id[SF_ID_LEN];
  sf_movement_t movement;
  int64_t quantity;
  bool has_reason, has_reference, has_correlation_id;
  char reason[SF_COMMAND_MAX_TEXT + 1];
  char reference[SF_COMMAND_MAX_TEXT + 1];
  char actor[SF_ID_LEN]; /* "" when none */
  char correlation_id[SF_COMMAND_MAX_CORR + 1];
} sf_command_t;

/* The fingerprint of the compiled-in schemas/command.avsc. Returns 0 or
 * SF_ESCHEMA. */
int sf_command_fingerprint(uint64_t *out);

/* Decodes buf (len bytes, borrowed) written with the schema whose
 * fingerprint is fp. Returns 0, SF_EPARSE (marker, varint, union or enum
 * index, a string that is not UTF-8 text, an id that is not a UUID,
 * trailing bytes), SF_ESCHEMA (another fingerprint), SF_ETRUNCATED (a length
 * beyond the input), SF_ETOOBIG (a string over its field's limit). */
int sf_command_decode(const uint8_t *buf, size_t len, uint64_t fp,
                      sf_command_t *out);

/* Encodes c into out (cap bytes). Returns 0 with *len set, SF_ETOOBIG when
 * cap is too small, SF_EINVAL for an invalid id or movement. */
int sf_command_encode(const sf_command_t *c, uint64_t fp, uint8_t *out,
                      size_t cap, size_t *len);

#endif
